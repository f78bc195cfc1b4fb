"""Supervisors on a real local Ray: strategies, escalation, rebuild, and bounded crash loops.

Children are small `Worker` actors (tests/integration/supervised.py) that die for real
(``os._exit``) when told to.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import ray

from actors.core.supervision import RestartIntensity, Strategy
from actors.supervisor import SupervisorSpec
from protocols.rows import SupervisorStatusRow
from tests.integration.supervised import Supervised, WorkerStarter, start_supervision

pytestmark = [pytest.mark.ray, pytest.mark.chaos]

_namespaces = itertools.count()


def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def incarnations(names: list[str], namespace: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in names:
        try:
            found[name] = ray.get(ray.get_actor(name, namespace=namespace).ping.remote(),
                                  timeout=2)[0]
        except Exception:
            found[name] = ""
    return found


def all_up(supervisor: Supervised) -> bool:
    """Tell whether the supervisor itself has seen every child up."""
    return all(child.up for child in supervisor.status().children)


def start_tree(
    strategy: Strategy, intensity: RestartIntensity, crash_file: str = "",
    root_intensity: RestartIntensity | None = None, restart_timeout_s: float = 30.0,
) -> tuple[str, list[str], Supervised, Supervised]:
    namespace = f"supervision-{next(_namespaces)}"
    names = ["first", "second", "third"]
    starter = WorkerStarter(names, namespace, crash_file)
    ray.get([worker.ping.remote() for worker in starter.start()])  # type: ignore[attr-defined]
    # both supervisors in one tree's process, as in a cluster: the root reaches the subtree
    # in-process, the subtree its workers through Ray
    tree = start_supervision("tree", namespace, [
        SupervisorSpec(name="root", children=("subtree",),
                       intensity=root_intensity or RestartIntensity(max_restarts=3, within_s=60),
                       timing={"tick_s": 0.2}),
        SupervisorSpec(name="subtree", children=tuple(names), strategy=strategy,
                       intensity=intensity, parent="root", rebuild=starter,
                       timing={"tick_s": 0.2, "restart_timeout_s": restart_timeout_s}),
    ])
    root, subtree = Supervised(tree, "root"), Supervised(tree, "subtree")
    wait_until(lambda: all_up(subtree))
    return namespace, names, root, subtree


def stop_tree(namespace: str, names: list[str]) -> None:
    for name in ["tree", *names]:
        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)


def crash(name: str, namespace: str) -> None:
    ray.get_actor(name, namespace=namespace).crash.remote()


@pytest.mark.parametrize(
    ("strategy", "crashed", "restarted"),
    [
        (Strategy.ONE_FOR_ONE, "second", {"second"}),
        (Strategy.REST_FOR_ONE, "second", {"second", "third"}),
        (Strategy.ONE_FOR_ALL, "second", {"first", "second", "third"}),
    ],
)
def test_each_strategy_restarts_the_right_children(
    ray_session: None, strategy: Strategy, crashed: str, restarted: set[str]
) -> None:
    """A real process death restarts exactly the children the strategy names."""
    namespace, names, _, subtree = start_tree(strategy, RestartIntensity(max_restarts=5))
    try:
        before = incarnations(names, namespace)
        crash(crashed, namespace)

        def settled() -> bool:
            now = incarnations(names, namespace)
            return all(now.values()) and {n for n in names if now[n] != before[n]} == restarted

        wait_until(settled)
        # the supervisor sees the death at its next tick, which may come after the restart
        wait_until(lambda: subtree.status().history != [])
        status = subtree.status()
        assert isinstance(status, SupervisorStatusRow)  # a typed row crosses Ray as it is
        assert status.state == "running"
        assert status.history[0].child == crashed
        time.sleep(1.0)  # nothing else restarts afterwards
        assert {n for n, i in incarnations(names, namespace).items() if i != before[n]} == restarted
    finally:
        stop_tree(namespace, names)


def test_the_tree_comes_back_after_its_process_is_killed_and_supervises_again(
    ray_session: None,
) -> None:
    """Every supervisor runs in the tree's one process: SIGKILL it, Ray starts it again from
    the same specs, and the fresh supervisors find their children running (none restarted)
    and restart the next one that dies."""
    namespace, names, _, subtree = start_tree(Strategy.ONE_FOR_ONE, RestartIntensity())
    try:
        tree = subtree.tree
        before, children = ray.get(tree.ping.remote())[0], incarnations(names, namespace)
        os.kill(ray.get(tree.pid.remote()), signal.SIGKILL)

        def back() -> bool:
            try:
                return bool(ray.get(tree.ping.remote(), timeout=2)[0] != before)
            except Exception:
                return False

        wait_until(back, timeout_s=60)
        wait_until(lambda: all_up(subtree))
        assert incarnations(names, namespace) == children  # nothing restarted by the rebirth
        assert subtree.status().history == []
        crash("third", namespace)
        wait_until(lambda: subtree.status().history != [])
        assert subtree.status().history[0].child == "third"
        wait_until(lambda: incarnations(names, namespace)["third"] not in ("", children["third"]))
    finally:
        stop_tree(namespace, names)


def test_a_live_child_that_fails_its_health_checks_is_restarted(ray_session: None) -> None:
    """A child that is alive but answers pings with errors (say, a shard that stopped serving
    after a journal failure) is killed and restarted: Ray alone would never restart it."""
    namespace, names, _, subtree = start_tree(Strategy.ONE_FOR_ONE, RestartIntensity())
    try:
        before = incarnations(names, namespace)
        ray.get(ray.get_actor("second", namespace=namespace).fail_pings.remote())
        wait_until(lambda: incarnations(names, namespace)["second"] not in ("", before["second"]))
        assert subtree.status().history[0].child == "second"
        assert incarnations(names, namespace)["first"] == before["first"]
    finally:
        stop_tree(namespace, names)


def test_too_many_failures_escalate_and_the_parent_rebuilds(ray_session: None) -> None:
    """Past its restart intensity a supervisor stops its children and escalates; the root,
    within its own intensity, has the subtree rebuild fresh children."""
    namespace, names, root, subtree = start_tree(
        Strategy.ONE_FOR_ONE, RestartIntensity(max_restarts=1, within_s=60)
    )
    try:
        crash("first", namespace)
        wait_until(lambda: subtree.status().history != [])
        # failures closer together than a health-check tick count once: let it see the restart
        wait_until(lambda: all_up(subtree))
        crash("first", namespace)
        wait_until(lambda: any("escalated" in h.reason
                               for h in root.status().history))
        wait_until(lambda: subtree.status().state == "running"
                   and all(incarnations(names, namespace).values()))
        assert subtree.status().recent_failures == 0
    finally:
        stop_tree(namespace, names)


def test_a_crash_loop_stops_after_a_bounded_number_of_tries(
    ray_session: None, tmp_path: Path
) -> None:
    """A child whose constructor always fails is given up on: the subtree escalates, the root
    gives up too (intensity 0), and the children are stopped for good, not restarted forever."""
    crash_file = tmp_path / "fail-at-start"
    namespace, names, root, subtree = start_tree(
        Strategy.ONE_FOR_ONE, RestartIntensity(max_restarts=2, within_s=60), str(crash_file),
        root_intensity=RestartIntensity(max_restarts=0, within_s=60), restart_timeout_s=2.0,
    )
    try:
        crash_file.touch()
        crash("third", namespace)
        wait_until(lambda: root.status().state == "failed", timeout_s=60)
        assert subtree.status().state == "escalated"

        def stopped() -> bool:
            try:
                ray.get(ray.get_actor("third", namespace=namespace).ping.remote(), timeout=2)
            except Exception:
                return True
            return False

        wait_until(stopped)
    finally:
        stop_tree(namespace, names)
