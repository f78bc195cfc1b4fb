"""What a supervisor costs while all is well, and how soon it still sees each kind of failure.

The probe here knows Ray's view of each child (`FakeCluster(knows_state=True)`, as
`cluster.edge.handles.RayProbe.alive` reads it), so a healthy child is pinged only every
``ping_every_s``; the other supervisor tests run with a probe that never knows, which pings
every child at every tick.
"""

from __future__ import annotations

import pytest

from actors.core.supervision import ChildState, ChildWatch, Outcome, Ping, RestartIntensity
from actors.supervisor import Supervisor
from tests.unit.test_supervisor import CHILDREN, FakeActor, FakeClock, FakeCluster, child, tick

TICK_S = 0.5
PING_EVERY_S = 5.0


class CountingCluster(FakeCluster):
    """A `FakeCluster` that counts the pings of each child."""

    def __init__(self, names: list[str], **options: bool) -> None:
        super().__init__(names, **options)
        self.pings_of: dict[str, int] = dict.fromkeys(names, 0)

    def ping(self, name: str, timeout_s: float) -> Ping:
        if name in self.pings_of:
            self.pings_of[name] += 1
        return super().ping(name, timeout_s)


def watched(cluster: FakeCluster, clock: FakeClock, *, restart_timeout_s: float = 30.0,
            intensity: RestartIntensity | None = None) -> Supervisor:
    supervisor = Supervisor(
        "subtree", CHILDREN, probe=cluster, clock=clock, start_loop=False, tick_s=TICK_S,
        ping_every_s=PING_EVERY_S, restart_timeout_s=restart_timeout_s,
        intensity=intensity or RestartIntensity(max_restarts=5, within_s=60),
        rebuild=lambda: cluster.actors.update({name: FakeActor() for name in CHILDREN}),
    )
    cluster.supervisors["subtree"] = supervisor
    supervisor.reconcile()
    assert all(row.up for row in supervisor.status().children)
    return supervisor


def test_a_healthy_child_is_pinged_once_per_ping_period_not_per_tick() -> None:
    """While every child is up and Ray holds it alive, a minute of ticks pings each child once
    per ping period (12 + the first), not once per tick (121)."""
    cluster, clock = CountingCluster(CHILDREN, knows_state=True), FakeClock()
    supervisor = watched(cluster, clock)
    tick(supervisor, clock, TICK_S, times=120)
    assert cluster.pings_of == dict.fromkeys(CHILDREN, 13)
    assert supervisor.status().history == []


def test_without_ray_state_every_tick_pings_every_child() -> None:
    """A probe that cannot tell whether a child is alive keeps the old cadence: a ping per child
    per tick."""
    cluster, clock = CountingCluster(CHILDREN), FakeClock()
    supervisor = watched(cluster, clock)
    tick(supervisor, clock, TICK_S, times=10)
    assert cluster.pings_of == dict.fromkeys(CHILDREN, 11)


def test_a_death_is_seen_at_the_next_tick() -> None:
    """A child whose process died is one Ray no longer holds alive: it is pinged, found down and
    counted at the next tick, not at the next ping period."""
    cluster, clock = CountingCluster(CHILDREN, knows_state=True), FakeClock()
    supervisor = watched(cluster, clock)
    tick(supervisor, clock, TICK_S, times=2)
    cluster.actors["second"].go_down()
    tick(supervisor, clock, TICK_S)
    status = supervisor.status()
    assert [entry.child for entry in status.history] == ["second"]
    assert child(status, "second").state == "down"
    # while it is down it is pinged at every tick, until it answers again
    pinged = cluster.pings_of["second"]
    tick(supervisor, clock, TICK_S, times=4)
    assert cluster.pings_of["second"] == pinged + 4
    cluster.actors["second"].come_back()
    tick(supervisor, clock, TICK_S)
    assert child(supervisor.status(), "second").up
    assert len(supervisor.status().history) == 1


def test_deaths_between_two_ticks_count_at_the_next_ping_with_rays_count() -> None:
    """A child that died and came back between two ticks looks alive; the next ping, within the
    ping period, sees the new incarnation, and Ray's restart count makes each death count."""
    cluster, clock = CountingCluster(CHILDREN, knows_state=True), FakeClock()
    supervisor = watched(cluster, clock)
    cluster.actors["first"].die_and_come_back(times=2)
    tick(supervisor, clock, TICK_S, times=9)  # 4.5 s: no ping due yet
    assert supervisor.status().history == []
    tick(supervisor, clock, TICK_S)  # 5 s: the ping period
    status = supervisor.status()
    assert status.recent_failures == 2
    assert child(status, "first").restarts == 2


def test_a_child_failing_its_pings_is_killed_within_the_ping_period() -> None:
    """Alive but failing shows only in a ping: it is killed at the next ping, within
    ping_every_s, and its restart is not counted again."""
    cluster, clock = CountingCluster(CHILDREN, knows_state=True), FakeClock()
    supervisor = watched(cluster, clock)
    cluster.actors["third"].outcome = Outcome.FAILING
    seconds = 0.0
    while not cluster.kills:
        tick(supervisor, clock, TICK_S)
        seconds += TICK_S
        assert seconds <= PING_EVERY_S
    assert cluster.kills == [("third", True)]
    tick(supervisor, clock, TICK_S, times=4)
    assert len(supervisor.status().history) == 1 and child(supervisor.status(), "third").up


def test_a_hung_child_is_killed_restart_timeout_after_its_first_timeout() -> None:
    """A child whose pings time out is seen slow at the next ping (within ping_every_s), then
    pinged at every tick, and killed once it has not answered for restart_timeout_s."""
    cluster, clock = CountingCluster(CHILDREN, knows_state=True), FakeClock()
    supervisor = watched(cluster, clock, restart_timeout_s=10.0)
    cluster.actors["second"].outcome = Outcome.TIMEOUT
    tick(supervisor, clock, TICK_S, times=10)  # 5 s: its first timeout
    assert child(supervisor.status(), "second").state == "slow"
    tick(supervisor, clock, TICK_S, times=20)  # 15 s: slow for 10 s, not longer
    assert cluster.kills == []
    tick(supervisor, clock, TICK_S)
    assert cluster.kills == [("second", True)]
    assert supervisor.status().history[0].reason.startswith("hung")


class RaisingState(CountingCluster):
    """A probe that breaks its promise: asking whether ``first`` is alive raises."""

    def alive(self, name: str) -> bool | None:
        if name == "first":
            raise RuntimeError("probe bug")
        return super().alive(name)


def test_a_probe_whose_alive_raises_pings_that_child_at_every_tick() -> None:
    """Not knowing whether a child is alive, for whatever reason, means pinging it."""
    cluster, clock = RaisingState(CHILDREN, knows_state=True), FakeClock()
    supervisor = watched(cluster, clock)
    tick(supervisor, clock, TICK_S, times=4)
    assert cluster.pings_of == {"first": 5, "second": 1, "third": 1}


def test_a_rebuilt_subtree_pings_every_new_child_at_once() -> None:
    """After a rebuild the children are new: each is pinged at the next tick, whatever the ping
    period."""
    cluster, clock = CountingCluster(CHILDREN, knows_state=True), FakeClock()
    supervisor = watched(cluster, clock, intensity=RestartIntensity(max_restarts=0, within_s=60))
    cluster.actors["first"].go_down()
    tick(supervisor, clock, TICK_S)
    assert supervisor.status().state == "failed"
    supervisor.rebuild()
    before = dict(cluster.pings_of)
    tick(supervisor, clock, TICK_S)
    assert {name: cluster.pings_of[name] - before[name] for name in CHILDREN} == dict.fromkeys(
        CHILDREN, 1)
    assert all(row.up for row in supervisor.status().children)


@pytest.mark.parametrize(
    ("state", "alive", "since_ping_s", "due"),
    [
        (ChildState.UP, True, 1.0, False),  # healthy, pinged lately: skip
        (ChildState.UP, True, 5.0, True),  # the ping period is up
        (ChildState.UP, None, 0.0, True),  # the probe cannot tell
        (ChildState.UP, False, 0.0, True),  # Ray says restarting or dead
        (ChildState.SLOW, True, 0.0, True),  # not up: every tick
        (ChildState.DOWN, True, 0.0, True),
        (ChildState.RESTARTING, True, 0.0, True),
    ],
)
def test_ping_due(state: ChildState, alive: bool | None, since_ping_s: float,
                  due: bool) -> None:
    """A ping is skipped only for a child that is up, that Ray holds alive and that answered
    within the ping period."""
    watch = ChildWatch("book", restart_timeout_s=30.0)
    watch.observe(Ping(outcome=Outcome.ANSWERED, incarnation="1"), 100.0)
    watch.state = state
    assert watch.ping_due(100.0 + since_ping_s, alive, every_s=5.0) is due


def test_a_child_never_pinged_is_due() -> None:
    """Before its first ping (and after a reset) a child is due, whatever Ray says."""
    watch = ChildWatch("book", restart_timeout_s=30.0)
    assert watch.ping_due(0.0, True, every_s=5.0)
    watch.observe(Ping(outcome=Outcome.ANSWERED, incarnation="1"), 0.0)
    assert not watch.ping_due(1.0, True, every_s=5.0)
    watch.reset()
    assert watch.ping_due(1.0, True, every_s=5.0)
