"""An idle cluster costs little (issue 10), on a real local Ray: supervisors ping healthy
children rarely and still see a death at once, and Ray runs with raytrade's idle settings.

Children are `CountingWorker` actors (below) that count the pings they answer and die for real
(``os._exit``) when told to.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from actors.supervisor import SupervisorSpec
from cluster.edge.handles import LOG_MONITOR_ENV, RAY_SYSTEM_CONFIG
from tests.integration.supervised import Supervised, start_supervision

pytestmark = [pytest.mark.ray]

NAMES = ["first", "second", "third"]
TICK_S = 0.1
_namespaces = itertools.count()


class CountingWorker:
    """A child that answers pings with its incarnation, counts them, and can be told to die."""

    def __init__(self) -> None:
        self.incarnation = f"{os.getpid()}-{time.time_ns()}"
        self.pings = 0

    def ping(self) -> tuple[str, int]:
        self.pings += 1
        return self.incarnation, 0

    def pings_answered(self) -> int:
        return self.pings

    def crash(self) -> None:
        os._exit(1)


def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@contextlib.contextmanager
def supervised(ping_every_s: float) -> Iterator[tuple[str, Supervised]]:
    """Start three counting workers and a supervisor over them (a fast tick, the given ping
    period); stop them all afterwards."""
    namespace = f"idle-cost-{next(_namespaces)}"
    options: dict[str, Any] = {"namespace": namespace, "num_cpus": 0, "lifetime": "detached"}
    workers = [ray.remote(CountingWorker).options(name=name, max_restarts=-1,
                                                  max_task_retries=0, **options).remote()
               for name in NAMES]
    tree = start_supervision("supervisor", namespace, [SupervisorSpec(
        name="supervisor", children=tuple(NAMES),
        timing={"tick_s": TICK_S, "ping_every_s": ping_every_s})])
    supervisor = Supervised(tree, "supervisor")
    try:
        ray.get([worker.pings_answered.remote() for worker in workers])

        def all_up() -> bool:
            return all(child.up for child in supervisor.status().children)

        wait_until(all_up)
        yield namespace, supervisor
    finally:
        for name in ["supervisor", *NAMES]:
            with contextlib.suppress(ValueError):
                ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)


def pings(namespace: str) -> dict[str, int]:
    return {name: ray.get(ray.get_actor(name, namespace=namespace).pings_answered.remote())
            for name in NAMES}


def test_healthy_children_are_pinged_once_per_ping_period_not_per_tick(
    ray_session: None,
) -> None:
    """With every child up and alive in Ray's view, a 0.1 s tick pings each child about once
    per 2 s ping period: over 3 s, 1 or 2 pings each rather than ~30."""
    with supervised(ping_every_s=2.0) as (namespace, _):
        before = pings(namespace)
        time.sleep(3.0)
        grown = {name: count - before[name] for name, count in pings(namespace).items()}
        assert all(1 <= count <= 2 for count in grown.values()), grown


def test_a_death_is_seen_without_waiting_for_the_ping_period(ray_session: None) -> None:
    """A child that dies is seen through Ray's pushed actor state at the next tick and counted,
    long before the next ping of the (here 120 s) ping period would have found it."""
    with supervised(ping_every_s=120.0) as (namespace, supervisor):
        ray.get_actor("second", namespace=namespace).crash.remote()
        started = time.monotonic()
        wait_until(lambda: supervisor.status().history != [], timeout_s=60.0)
        seen_after_s = time.monotonic() - started
        status = supervisor.status()
        assert [entry.child for entry in status.history] == ["second"]
        assert seen_after_s < 60.0  # (1.7 s here: until the restarted worker answers)
        wait_until(lambda: all(child.up for child in
                               supervisor.status().children))
        assert supervisor.status().recent_failures == 1


def test_ray_runs_with_the_idle_settings(ray_session: None) -> None:
    """The Ray that `start_ray` starts carries raytrade's system config, and its log monitor
    the environment that slows its folder scans."""
    from ray._private import state

    config = json.loads(state.state._connect_and_get_accessor().get_system_config())
    assert {key: config.get(key) for key in RAY_SYSTEM_CONFIG} == RAY_SYSTEM_CONFIG
    monitors = [entry for entry in Path("/proc").iterdir() if entry.name.isdigit()
                and b"log_monitor.py" in _read(entry / "cmdline")
                and _parent(entry) == os.getpid()]
    assert len(monitors) == 1, "this session's Ray has one log monitor, started by this process"
    environment = dict(item.split(b"=", 1) for item in _read(monitors[0] / "environ").split(b"\0")
                       if b"=" in item)
    for name in LOG_MONITOR_ENV:
        assert environment[name.encode()] == os.environ[name].encode()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _parent(entry: Path) -> int:
    stat = _read(entry / "stat").decode(errors="replace")
    return int(stat.rsplit(")", 1)[1].split()[1]) if ")" in stat else -1
