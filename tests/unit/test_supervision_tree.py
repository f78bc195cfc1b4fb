"""Every supervisor of a tree in one process (`SupervisionTree`), without Ray.

The children are `FakeCluster`'s in-memory actors (tests/unit/test_supervisor.py); the child
supervisors are the tree's own, reached in-process, with their messages on the tree's mailbox.
"""

from __future__ import annotations

import threading

import pytest

from actors.core.supervision import Outcome, RestartIntensity, Strategy
from actors.supervisor import SupervisionTree, SupervisorSpec
from tests.unit.test_supervisor import CHILDREN, FakeActor, FakeClock, FakeCluster


def settle(tree: SupervisionTree) -> None:
    """Wait until the mailbox has delivered everything posted so far."""
    done = threading.Event()
    tree.post(done.set)
    assert done.wait(5.0), "the mailbox did not deliver within 5 s"


def cluster_tree(cluster: FakeCluster, clock: FakeClock, *, root_restarts: int = 1,
                 topology: bytes = b"") -> SupervisionTree:
    """A root over one subtree of CHILDREN (no restarts allowed: its first failure escalates)."""
    specs = [
        SupervisorSpec(name="root", children=("subtree",),
                       intensity=RestartIntensity(max_restarts=root_restarts, within_s=60)),
        SupervisorSpec(name="subtree", children=tuple(CHILDREN), strategy=Strategy.ONE_FOR_ONE,
                       intensity=RestartIntensity(max_restarts=0, within_s=60), parent="root",
                       rebuild=lambda: cluster.actors.update({n: FakeActor() for n in CHILDREN})),
    ]
    tree = SupervisionTree(specs, cluster, topology=topology, clock=clock, start_loops=False)
    for name in ("root", "subtree"):
        supervisor = tree.supervisor(name)
        assert supervisor is not None
        supervisor.reconcile()  # first sight of every child
    return tree


def reconcile(tree: SupervisionTree, name: str, clock: FakeClock) -> None:
    clock.now += 0.5
    supervisor = tree.supervisor(name)
    assert supervisor is not None
    supervisor.reconcile()


def test_an_escalation_reaches_the_parent_in_process_and_the_subtree_is_rebuilt() -> None:
    """The subtree's escalation and the root's answer travel by the tree's mailbox: the
    subtree's children are stopped, then started fresh, and the subtree runs again."""
    cluster, clock = FakeCluster(CHILDREN), FakeClock()
    tree = cluster_tree(cluster, clock)
    root_status = tree.status("root")
    assert [child.up for child in root_status.children] == [True]  # pinged in-process
    cluster.actors["first"].go_down()
    reconcile(tree, "subtree", clock)
    settle(tree)  # escalated -> the root decides -> rebuild, two messages in order
    settle(tree)
    assert tree.status("subtree").state == "running"
    assert set(cluster.actors) == set(CHILDREN)
    assert tree.status("root").history[0].reason.startswith("escalated: first:")
    assert cluster.mail == []  # nothing went through the actor probe's mail
    tree.stop()


def test_a_root_past_its_intensity_gives_up_and_the_subtree_stays_to_report() -> None:
    cluster, clock = FakeCluster(CHILDREN), FakeClock()
    tree = cluster_tree(cluster, clock, root_restarts=0)
    cluster.actors["second"].outcome = Outcome.FAILING
    reconcile(tree, "subtree", clock)
    settle(tree)
    assert tree.status("root").state == "failed"
    assert tree.status("subtree").state == "escalated"
    assert cluster.actors == {}
    tree.stop()


def test_a_child_supervisor_the_root_restarts_is_a_fresh_one_over_the_same_children() -> None:
    """The root's kill of a child supervisor replaces it (restart) or stops it for good; the
    children themselves are not touched."""
    cluster, clock = FakeCluster(CHILDREN), FakeClock()
    tree = cluster_tree(cluster, clock)
    old = tree.supervisor("subtree")
    tree._probe.kill("subtree", restart=True)
    settle(tree)
    fresh = tree.supervisor("subtree")
    assert fresh is not None and fresh is not old
    assert tree._probe.ping("subtree", 1.0).incarnation != old.ping()[0]  # type: ignore[union-attr]
    tree._probe.kill("subtree", restart=False)
    settle(tree)
    assert tree.supervisor("subtree") is None
    assert tree._probe.alive("subtree") is False
    assert tree._probe.ping("subtree", 1.0).outcome is Outcome.DOWN
    assert tree.status("subtree").state == "stopped"
    assert cluster.kills == [] and set(cluster.actors) == set(CHILDREN)
    tree.stop()


def test_statuses_come_root_first_and_the_tree_answers_as_the_directory() -> None:
    cluster, clock = FakeCluster(CHILDREN), FakeClock()
    tree = cluster_tree(cluster, clock, topology=b"\x81\xa1k\x01")
    assert [row.name for row in tree.statuses()] == ["root", "subtree"]
    assert tree.topology() == b"\x81\xa1k\x01"
    assert tree.ping()[1] == 2
    with pytest.raises(LookupError):
        tree.status("nobody")
    with pytest.raises(LookupError):
        SupervisionTree([], cluster, start_loops=False).topology()
    tree.stop()


def test_a_tree_names_each_supervisor_once() -> None:
    spec = SupervisorSpec(name="root", children=("a",))
    with pytest.raises(ValueError, match="once"):
        SupervisionTree([spec, spec], FakeCluster(["a"]), start_loops=False)


def test_the_loops_run_on_their_own_threads() -> None:
    """Started for real (0.05 s ticks), the subtree sees a death and escalates, and the root
    has it rebuilt, with no one calling reconcile."""
    cluster = FakeCluster(CHILDREN)
    rebuilt = threading.Event()

    def rebuild() -> None:
        cluster.actors.update({n: FakeActor() for n in CHILDREN})
        rebuilt.set()

    tree = SupervisionTree([
        SupervisorSpec(name="root", children=("subtree",), timing={"tick_s": 0.05}),
        SupervisorSpec(name="subtree", children=tuple(CHILDREN), parent="root", rebuild=rebuild,
                       intensity=RestartIntensity(max_restarts=0, within_s=60),
                       timing={"tick_s": 0.05, "ping_every_s": 0.0}),
    ], cluster)
    try:
        cluster.actors["third"].go_down()
        assert rebuilt.wait(10.0), "the subtree was not rebuilt"
    finally:
        tree.stop()
