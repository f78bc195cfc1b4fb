"""The supervisor's reconcile loop without Ray: a fake probe over in-memory actors, a fake clock.

`FakeCluster` is the injected `ChildProbe`: it plays Ray's part for actors started with
``max_restarts=-1`` (a kill with ``restart=True`` brings a fresh incarnation back at once, one
for good leaves the name absent) and delivers the supervisors' fire-and-forget messages when a
test says so, as Ray would deliver them later.
"""

from __future__ import annotations

import logging
import threading

import pytest

from actors.core.supervision import Outcome, Ping, RestartIntensity, Strategy
from actors.supervisor import Supervisor
from protocols.rows import SupervisedChildRow, SupervisorStatusRow

CHILDREN = ["first", "second", "third"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeActor:
    """A named actor as Ray runs it: an incarnation, Ray's restart count, how it answers."""

    def __init__(self) -> None:
        self.incarnation = 1
        self.restarts = 0
        self.outcome = Outcome.ANSWERED

    def die_and_come_back(self, times: int = 1) -> None:
        """Die ``times`` times between two pings; Ray brings it back each time."""
        self.restarts += times
        self.incarnation += times

    def go_down(self) -> None:
        """Die; Ray is restarting it (a ping sees it down until `come_back`)."""
        self.restarts += 1
        self.outcome = Outcome.DOWN

    def come_back(self) -> None:
        self.incarnation += 1
        self.outcome = Outcome.ANSWERED


class FakeCluster:
    """Children, child supervisors and the mail between supervisors, in memory."""

    def __init__(self, names: list[str], *, report_restarts: bool = True,
                 knows_state: bool = False) -> None:
        self.actors = {name: FakeActor() for name in names}
        self.supervisors: dict[str, Supervisor] = {}
        self.report_restarts = report_restarts
        self.knows_state = knows_state
        """Whether `alive` answers (as Ray's pushed actor state does); else it never knows,
        and the supervisor pings every child at every tick."""
        self.kills: list[tuple[str, bool]] = []
        self.mail: list[tuple[str, str, str]] = []
        self.pings = 0

    def ping(self, name: str, timeout_s: float) -> Ping:
        self.pings += 1
        if name in self.supervisors:
            incarnation, offset = self.supervisors[name].ping()
            return Ping(outcome=Outcome.ANSWERED, incarnation=incarnation, offset=offset)
        actor = self.actors.get(name)
        if actor is None:
            return Ping(outcome=Outcome.DOWN, detail=f"no actor named {name}")
        restarts = actor.restarts if self.report_restarts else None
        if actor.outcome is Outcome.ANSWERED:
            return Ping(outcome=Outcome.ANSWERED, incarnation=f"{name}-{actor.incarnation}",
                        offset=actor.incarnation * 10, restarts=restarts)
        return Ping(outcome=actor.outcome, detail=f"{name} is {actor.outcome}", restarts=restarts)

    def alive(self, name: str) -> bool | None:
        if not self.knows_state or name in self.supervisors:
            return None
        actor = self.actors.get(name)
        return actor is not None and actor.outcome is not Outcome.DOWN

    def kill(self, name: str, *, restart: bool) -> None:
        self.kills.append((name, restart))
        if name not in self.actors:
            return
        if restart:
            self.actors[name].go_down()
            self.actors[name].come_back()
        else:
            del self.actors[name]

    def tell_escalated(self, parent: str, child: str, reason: str) -> None:
        self.mail.append(("escalated", parent, f"{child}|{reason}"))

    def tell_rebuild(self, child: str) -> None:
        self.mail.append(("rebuild", child, ""))

    def deliver(self) -> None:
        """Hand every message sent so far to its supervisor, as Ray would, a moment later."""
        while self.mail:
            kind, to, body = self.mail.pop(0)
            if kind == "escalated":
                child, reason = body.split("|", 1)
                self.supervisors[to].on_child_escalated(child, reason)
            else:
                self.supervisors[to].rebuild()

    def restarted(self) -> set[str]:
        return {name for name, restart in self.kills if restart}


def supervise(
    cluster: FakeCluster, clock: FakeClock, *, strategy: Strategy = Strategy.ONE_FOR_ONE,
    intensity: RestartIntensity | None = None, parent: str | None = None,
    restart_timeout_s: float = 30.0, name: str = "subtree",
) -> Supervisor:
    supervisor = Supervisor(
        name, CHILDREN, probe=cluster, strategy=strategy,
        intensity=intensity or RestartIntensity(max_restarts=5, within_s=60), parent=parent,
        rebuild=lambda: cluster.actors.update({n: FakeActor() for n in CHILDREN}),
        restart_timeout_s=restart_timeout_s, clock=clock, start_loop=False,
    )
    cluster.supervisors[name] = supervisor
    supervisor.reconcile()  # first sight of every child
    assert all(child.up for child in supervisor.status().children)
    return supervisor


def child(status: SupervisorStatusRow, name: str) -> SupervisedChildRow:
    """Return the named child's row of a supervisor's status."""
    return next(row for row in status.children if row.name == name)


def tick(supervisor: Supervisor, clock: FakeClock, seconds: float = 0.5, times: int = 1) -> None:
    for _ in range(times):
        clock.now += seconds
        supervisor.reconcile()


@pytest.mark.parametrize(
    ("strategy", "killed"),
    [
        (Strategy.ONE_FOR_ONE, set()),
        (Strategy.REST_FOR_ONE, {"third"}),
        (Strategy.ONE_FOR_ALL, {"first", "third"}),
    ],
)
def test_each_strategy_restarts_the_siblings_it_names(strategy: Strategy, killed: set[str]) -> None:
    """A child that died and came back between two pings counts once; the strategy's siblings
    are killed for Ray to restart, the child itself is not (Ray already restarted it), and the
    restarts we caused are not counted again."""
    cluster, clock = FakeCluster(CHILDREN), FakeClock()
    supervisor = supervise(cluster, clock, strategy=strategy)
    cluster.actors["second"].die_and_come_back()
    tick(supervisor, clock)
    assert cluster.restarted() == killed
    tick(supervisor, clock, times=5)
    status = supervisor.status()
    assert [entry.child for entry in status.history] == ["second"]
    assert status.history[0].reason == "restarted between health checks"
    assert status.recent_failures == 1
    assert all(child.up for child in status.children)
    assert child(status, "second").restarts == 1


def test_a_down_child_is_counted_once_and_left_to_ray() -> None:
    """A dead child counts when first seen down, not again while Ray brings it back, and is not
    killed: it is Ray's to restart."""
    cluster, clock = FakeCluster(CHILDREN), FakeClock()
    supervisor = supervise(cluster, clock)
    cluster.actors["first"].go_down()
    tick(supervisor, clock, times=10)
    assert child(supervisor.status(), "first") == SupervisedChildRow(
        name="first", state="down", up=False, restarts=1, offset=10,
        last_error="first is down", down_s=4.5)
    cluster.actors["first"].come_back()
    tick(supervisor, clock, times=3)
    status = supervisor.status()
    assert len(status.history) == 1 and cluster.kills == []
    assert child(status, "first").up and child(status, "first").offset == 20


def test_a_live_child_failing_its_pings_is_killed_for_ray_to_restart() -> None:
    """Alive but failing: counted and killed (restart=True), since Ray restarts only a dead
    actor; its new incarnation is the restart we asked for and is not counted again."""
    cluster, clock = FakeCluster(CHILDREN), FakeClock()
    supervisor = supervise(cluster, clock)
    cluster.actors["second"].outcome = Outcome.FAILING
    tick(supervisor, clock)
    assert cluster.kills == [("second", True)]
    tick(supervisor, clock, times=5)
    status = supervisor.status()
    assert len(status.history) == 1
    assert status.history[0].reason.startswith("alive but failing")
    assert child(status, "second").up


def test_a_slow_child_is_not_counted_and_a_hung_one_is_killed_only_after_the_timeout() -> None:
    """A ping timeout may be a busy child: it counts as hung, and is killed, only once its
    pings have timed out for longer than restart_timeout_s."""
    cluster, clock = FakeCluster(CHILDREN), FakeClock()
    supervisor = supervise(cluster, clock, restart_timeout_s=30.0)
    cluster.actors["third"].outcome = Outcome.TIMEOUT
    tick(supervisor, clock, seconds=5.0, times=3)
    cluster.actors["third"].outcome = Outcome.ANSWERED  # it was only busy
    tick(supervisor, clock)
    assert supervisor.status().history == [] and cluster.kills == []

    cluster.actors["third"].outcome = Outcome.TIMEOUT
    tick(supervisor, clock, seconds=5.0, times=7)  # slow for 30 s: not longer than the timeout
    assert supervisor.status().history == [] and cluster.kills == []
    assert not child(supervisor.status(), "third").up
    tick(supervisor, clock, seconds=5.0)
    assert cluster.kills == [("third", True)]
    assert supervisor.status().history[0].reason.startswith("hung")


def test_more_failures_than_the_intensity_allows_stop_the_children_and_escalate() -> None:
    """Past its restart intensity a supervisor stops every child for good, stops supervising,
    and tells its parent."""
    cluster, clock = FakeCluster(CHILDREN), FakeClock()
    supervisor = supervise(cluster, clock, intensity=RestartIntensity(max_restarts=1, within_s=60),
                           parent="root")
    cluster.actors["first"].die_and_come_back()
    tick(supervisor, clock)
    cluster.actors["second"].die_and_come_back()
    tick(supervisor, clock)
    assert supervisor.status().state == "escalated"
    assert cluster.kills == [(name, False) for name in CHILDREN]
    reason = "subtree|second: restarted between health checks"
    assert cluster.mail == [("escalated", "root", reason)]
    pings = cluster.pings
    tick(supervisor, clock, times=3)
    assert cluster.pings == pings  # an escalated supervisor waits for its parent


def test_failures_and_escalations_are_logged_with_fields(caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    """A child's failure and the escalation are log lines with structured fields (event,
    supervisor, child, reason, action), which `cluster.logs` prints as JSON keys."""
    cluster, clock = FakeCluster(CHILDREN), FakeClock()
    supervisor = supervise(cluster, clock, intensity=RestartIntensity(max_restarts=1, within_s=60),
                           parent="root")
    with caplog.at_level(logging.INFO, logger="actors.supervisor"):
        cluster.actors["first"].die_and_come_back()
        tick(supervisor, clock)
        cluster.actors["second"].die_and_come_back()
        tick(supervisor, clock)
    logged = [record.fields for record in caplog.records if hasattr(record, "fields")]
    failed = [line for line in logged if line["event"] == "child_failed"]
    assert [(line["child"], line["action"]) for line in failed] == [
        ("first", "restart"), ("second", "escalate")]
    assert all(line["supervisor"] == supervisor.name and line["reason"] for line in failed)
    (escalated,) = [line for line in logged if line["event"] == "supervisor_escalated"]
    assert escalated["parent"] == "root" and "second" in escalated["reason"]


def test_a_root_past_its_intensity_gives_up() -> None:
    """A supervisor without a parent that escalates marks itself failed; nobody is told."""
    cluster, clock = FakeCluster(CHILDREN), FakeClock()
    supervisor = supervise(cluster, clock, intensity=RestartIntensity(max_restarts=0, within_s=60))
    cluster.actors["third"].go_down()
    tick(supervisor, clock)
    assert supervisor.status().state == "failed"
    assert cluster.mail == [] and set(cluster.actors) == set()


def tree(
    cluster: FakeCluster, clock: FakeClock, root_restarts: int
) -> tuple[Supervisor, Supervisor]:
    subtree = supervise(cluster, clock, parent="root",
                        intensity=RestartIntensity(max_restarts=0, within_s=60))
    root = Supervisor("root", ["subtree"], probe=cluster, clock=clock, start_loop=False,
                      intensity=RestartIntensity(max_restarts=root_restarts, within_s=60))
    cluster.supervisors["root"] = root
    root.reconcile()
    return root, subtree


def test_the_parent_rebuilds_an_escalated_subtree_within_its_intensity() -> None:
    """An escalation the parent's policy can afford has the subtree rebuild fresh children,
    forget its failures and supervise them anew."""
    cluster, clock = FakeCluster(CHILDREN), FakeClock()
    root, subtree = tree(cluster, clock, root_restarts=1)
    cluster.actors["first"].go_down()
    tick(subtree, clock)
    assert subtree.status().state == "escalated" and cluster.actors == {}
    cluster.deliver()
    assert cluster.mail == []
    status = subtree.status()
    assert status.state == "running" and status.recent_failures == 0
    assert set(cluster.actors) == set(CHILDREN)
    tick(subtree, clock, times=3)
    assert all(child.up for child in subtree.status().children)
    assert root.status().history[0].reason.startswith("escalated: first: not answering")
    assert root.status().state == "running"


def test_a_parent_past_its_intensity_gives_up_on_the_subtree() -> None:
    """An escalation beyond the parent's intensity is not rebuilt: the root gives up, and the
    subtree supervisor stays up (escalated) to report."""
    cluster, clock = FakeCluster(CHILDREN), FakeClock()
    root, subtree = tree(cluster, clock, root_restarts=0)
    cluster.actors["second"].outcome = Outcome.FAILING
    tick(subtree, clock)
    cluster.deliver()
    assert root.status().state == "failed"
    assert subtree.status().state == "escalated"
    assert ("subtree", False) not in cluster.kills and cluster.actors == {}


def test_every_restart_ray_reports_counts() -> None:
    """Five deaths between two pings are five failures when the probe knows Ray's restart
    count (issue 9: five deaths within 12 s counted as two), so the intensity holds."""
    cluster, clock = FakeCluster(CHILDREN), FakeClock()
    supervisor = supervise(cluster, clock, intensity=RestartIntensity(max_restarts=4, within_s=60))
    cluster.actors["first"].die_and_come_back(times=4)
    tick(supervisor, clock)
    status = supervisor.status()
    assert status.state == "running" and status.recent_failures == 4
    assert child(status, "first").restarts == 4
    cluster.actors["first"].die_and_come_back()
    tick(supervisor, clock)
    assert supervisor.status().state == "failed"


def test_without_a_restart_count_a_new_incarnation_counts_once() -> None:
    """A probe that does not know Ray's count falls back to incarnation changes: several deaths
    between two pings are one failure."""
    cluster, clock = FakeCluster(CHILDREN, report_restarts=False), FakeClock()
    supervisor = supervise(cluster, clock)
    cluster.actors["first"].die_and_come_back(times=4)
    tick(supervisor, clock)
    assert supervisor.status().recent_failures == 1


def test_restarts_we_caused_are_not_counted() -> None:
    """Siblings killed by the strategy raise Ray's restart count by one each: that is the
    restart we asked for, not a failure."""
    cluster, clock = FakeCluster(CHILDREN), FakeClock()
    supervisor = supervise(cluster, clock, strategy=Strategy.ONE_FOR_ALL)
    cluster.actors["third"].outcome = Outcome.FAILING
    tick(supervisor, clock)
    assert cluster.restarted() == set(CHILDREN)
    tick(supervisor, clock, times=5)
    assert supervisor.status().recent_failures == 1
    assert all(child.up for child in supervisor.status().children)


@pytest.mark.parametrize("report_restarts", [True, False])
def test_a_crash_loop_in_a_constructor_escalates(report_restarts: bool) -> None:
    """A child whose constructor always fails never comes up: it counts again every
    restart_timeout_s (and at every restart, when Ray's count is known) until the supervisor
    escalates, rather than being restarted forever."""
    cluster, clock = FakeCluster(CHILDREN, report_restarts=report_restarts), FakeClock()
    supervisor = supervise(cluster, clock, intensity=RestartIntensity(max_restarts=2, within_s=60),
                           restart_timeout_s=10.0)
    cluster.actors["second"].go_down()
    seconds = 0.0
    while supervisor.status().state == "running":
        cluster.actors["second"].restarts += 1  # Ray tries again; the constructor raises again
        tick(supervisor, clock, seconds=1.0)
        seconds += 1.0
        assert seconds < 60, "the crash loop never escalated"
    assert supervisor.status().state == "failed"
    # with the count, every death is seen: the third (max_restarts + 1) comes at 2 s; without,
    # one more failure counts every restart_timeout_s after the first: 1 s, 12 s, 23 s
    assert seconds == (2.0 if report_restarts else 23.0)
    reasons = [entry.reason for entry in supervisor.status().history]
    assert reasons[0].startswith("not answering (second is down)")


def test_a_child_that_comes_back_broken_is_killed_after_the_timeout() -> None:
    """A child that Ray restarted but that fails its pings counted when it went down; it is
    killed (and counted again) only once it has not served for restart_timeout_s."""
    cluster, clock = FakeCluster(CHILDREN), FakeClock()
    supervisor = supervise(cluster, clock, restart_timeout_s=10.0)
    cluster.actors["first"].go_down()
    tick(supervisor, clock)
    cluster.actors["first"].outcome = Outcome.FAILING
    tick(supervisor, clock, seconds=1.0, times=10)
    assert cluster.kills == [] and len(supervisor.status().history) == 1
    tick(supervisor, clock, seconds=1.0)
    assert cluster.kills == [("first", True)] and len(supervisor.status().history) == 2


class BrokenProbe(FakeCluster):
    """A probe that breaks its promise: pinging ``first`` raises."""

    def ping(self, name: str, timeout_s: float) -> Ping:
        if name == "first":
            self.pings += 1
            raise RuntimeError("probe bug")
        return super().ping(name, timeout_s)


def test_a_probe_that_raises_does_not_stop_the_others_being_watched() -> None:
    """One child's probe raising is logged; the other children are still observed."""
    cluster, clock = BrokenProbe(CHILDREN), FakeClock()
    supervisor = Supervisor("subtree", CHILDREN, probe=cluster, clock=clock, start_loop=False)
    supervisor.reconcile()
    cluster.actors["third"].outcome = Outcome.FAILING
    tick(supervisor, clock)
    assert cluster.kills == [("third", True)]
    assert not child(supervisor.status(), "first").up


def test_the_loop_survives_every_exception() -> None:
    """The reconcile loop logs what raises and tries again next tick: a supervisor outlives
    what it supervises."""
    cluster = BrokenProbe(CHILDREN)
    failures = iter([True, True])
    ticked = threading.Event()

    def clock() -> float:
        if next(failures, False):
            raise RuntimeError("clock bug")  # raises out of reconcile itself
        if cluster.pings > 20:
            ticked.set()
        return 0.0

    supervisor = Supervisor("subtree", CHILDREN, probe=cluster, clock=clock, tick_s=0.001)
    try:
        assert ticked.wait(timeout=5)
        assert child(supervisor.status(), "third").up
    finally:
        supervisor.stop()


def _slow_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.levelno == logging.WARNING and ("not back" in record.getMessage()
                                                      or "back after" in record.getMessage())]


def test_a_child_slow_to_come_back_is_logged_once_and_once_more_when_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A child down for longer than slow_start_s gets one WARNING naming it and Ray's worker
    start, however many ticks it stays down, and one more saying how long it was gone (issue
    9: a book took 40.6 s to come back, with nothing in the log to say why)."""
    cluster, clock = FakeCluster(CHILDREN), FakeClock()
    supervisor = supervise(cluster, clock, restart_timeout_s=120.0)
    cluster.actors["first"].go_down()
    with caplog.at_level(logging.WARNING, logger="actors.supervisor"):
        tick(supervisor, clock, seconds=1.0, times=10)  # down at 1 s: 9 s so far
        assert _slow_lines(caplog) == []
        tick(supervisor, clock, seconds=1.0, times=30)
        assert _slow_lines(caplog) == [
            "supervisor subtree: first still not back after 11 s; Ray's worker start may be "
            "slow (its raylet waits up to worker_register_timeout_seconds on a hung worker "
            "start); last error: first is down"]
        assert child(supervisor.status(), "first").down_s == 39.0
        cluster.actors["first"].come_back()
        tick(supervisor, clock, seconds=1.0, times=5)
    assert _slow_lines(caplog)[1:] == ["supervisor subtree: first back after 40.0 s"]
    assert child(supervisor.status(), "first").down_s is None


def test_a_restart_of_ours_slow_to_land_is_logged_and_a_quick_one_is_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The clock runs from our kill while the child is RESTARTING, and a counted failure in
    between does not start it again; a child back within slow_start_s logs nothing."""
    cluster, clock = FakeCluster(CHILDREN), FakeClock()
    supervisor = supervise(cluster, clock, restart_timeout_s=8.0)
    with caplog.at_level(logging.WARNING, logger="actors.supervisor"):
        cluster.actors["second"].outcome = Outcome.FAILING
        tick(supervisor, clock)  # killed; FakeCluster brings it back at once, still failing
        cluster.actors["second"].outcome = Outcome.DOWN
        tick(supervisor, clock, seconds=1.0, times=5)
        assert _slow_lines(caplog) == []
        cluster.actors["second"].come_back()
        tick(supervisor, clock)
        assert _slow_lines(caplog) == []

        cluster.actors["third"].outcome = Outcome.FAILING
        tick(supervisor, clock)
        cluster.actors["third"].outcome = Outcome.DOWN
        tick(supervisor, clock, seconds=1.0, times=12)  # counted again at 8 s (down too long)
        assert [line.split(";")[0] for line in _slow_lines(caplog)] == [
            "supervisor subtree: third still not back after 11 s"]
