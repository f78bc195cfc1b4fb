"""The supervision policy, without Ray: strategies, restart intensity, escalation, and the
child transition table."""

from __future__ import annotations

import pytest

from actors.core.supervision import (
    TRANSITIONS,
    Action,
    ChildState,
    ChildWatch,
    Observation,
    Outcome,
    Ping,
    RestartIntensity,
    Strategy,
    SupervisorPolicy,
    format_transitions,
)

CHILDREN = ["book", "risk", "positions"]


@pytest.mark.parametrize(
    ("strategy", "failed", "restarted"),
    [
        (Strategy.ONE_FOR_ONE, "risk", ("risk",)),
        (Strategy.REST_FOR_ONE, "risk", ("risk", "positions")),
        (Strategy.REST_FOR_ONE, "book", ("book", "risk", "positions")),
        (Strategy.REST_FOR_ONE, "positions", ("positions",)),
        (Strategy.ONE_FOR_ALL, "positions", ("book", "risk", "positions")),
    ],
)
def test_each_strategy_restarts_its_children(
    strategy: Strategy, failed: str, restarted: tuple[str, ...]
) -> None:
    """One-for-one restarts the failed child, rest-for-one it and the ones started after it,
    one-for-all every child, in start order."""
    policy = SupervisorPolicy(CHILDREN, strategy)
    decision = policy.on_failure(failed, "died", now_s=0.0)
    assert decision.restart == restarted and not decision.escalate


def test_more_failures_than_the_intensity_allows_escalate() -> None:
    """At most max_restarts failures within within_s; the next one escalates."""
    policy = SupervisorPolicy(CHILDREN, intensity=RestartIntensity(max_restarts=3, within_s=10))
    for second in range(3):
        assert not policy.on_failure("book", "died", now_s=float(second)).escalate
    assert policy.on_failure("risk", "died", now_s=3.0).escalate
    assert policy.escalated
    assert [failure.action for failure in policy.history][-1] == "escalate"


def test_old_failures_leave_the_window() -> None:
    """Failures older than within_s no longer count: a slow trickle never escalates."""
    policy = SupervisorPolicy(CHILDREN, intensity=RestartIntensity(max_restarts=2, within_s=10))
    for second in range(0, 100, 6):
        assert not policy.on_failure("book", "died", now_s=float(second)).escalate
    assert policy.recent_failures(now_s=96.0) == 2


def test_an_escalated_supervisor_stays_escalated_until_reset() -> None:
    """After escalating, every further failure escalates; a rebuild by the parent resets."""
    policy = SupervisorPolicy(CHILDREN, intensity=RestartIntensity(max_restarts=0, within_s=10))
    assert policy.on_failure("book", "died", now_s=0.0).escalate
    assert policy.on_failure("risk", "died", now_s=100.0).escalate
    policy.reset()
    assert policy.on_failure("risk", "died", now_s=100.0).escalate  # max_restarts=0: always
    relaxed = SupervisorPolicy(CHILDREN, intensity=RestartIntensity(max_restarts=1, within_s=1))
    relaxed.on_failure("book", "died", 0.0)
    assert relaxed.on_failure("book", "died", 0.5).escalate
    relaxed.reset()
    assert relaxed.on_failure("book", "died", 0.6).restart == ("book",)


def test_a_crash_loop_is_bounded() -> None:
    """A child failing as fast as it restarts costs max_restarts restarts, then escalation."""
    policy = SupervisorPolicy(CHILDREN, intensity=RestartIntensity(max_restarts=5, within_s=60))
    decisions = [policy.on_failure("book", "constructor raised", now_s=i * 0.1) for i in range(50)]
    assert sum(1 for decision in decisions if decision.restart) == 5
    assert all(decision.escalate for decision in decisions[5:])


def test_unknown_children_and_duplicate_names_are_refused() -> None:
    """A failure of a stranger is a bug; children need distinct names."""
    policy = SupervisorPolicy(CHILDREN)
    with pytest.raises(KeyError):
        policy.on_failure("gateway", "died", 0.0)
    with pytest.raises(ValueError, match="distinct"):
        SupervisorPolicy(["a", "a"])


# ------------------------------------------------------------------------------ the child table


def test_the_table_has_a_row_for_every_state_and_observation() -> None:
    """Every (state, observation) pair has exactly one entry, and the printed table shows each."""
    pairs = {(state, observation) for state in ChildState for observation in Observation}
    assert set(TRANSITIONS) == pairs
    printed = format_transitions().splitlines()
    assert len(printed) == 1 + len(pairs)
    assert printed[0].split() == ["state", "observation", "next", "state", "action"]


def test_only_a_live_child_is_killed_and_only_waiting_states_wait() -> None:
    """A kill is for a child that is alive (failing or hung) and always leads to RESTARTING;
    answering from a new incarnation always ends up UP."""
    for (state, observation), (after, action) in TRANSITIONS.items():
        if action is Action.COUNT_AND_KILL:
            assert observation in (Observation.FAILING, Observation.STUCK), (state, observation)
            assert after is ChildState.RESTARTING
        if observation is Observation.RESTARTED:
            assert after is ChildState.UP


def answered(incarnation: str, restarts: int | None = None) -> Ping:
    return Ping(outcome=Outcome.ANSWERED, incarnation=incarnation, restarts=restarts)


def test_a_ping_is_classified_with_the_clock() -> None:
    """A new incarnation is RESTARTED; failing or timing out, or down, for longer than
    restart_timeout_s since the child stopped serving is STUCK, or DOWN_TOO_LONG."""
    watch = ChildWatch("book", restart_timeout_s=10.0)
    assert watch.observe(answered("a"), 0.0).observation is Observation.RESTARTED  # first sight
    assert watch.observe(answered("a"), 1.0).observation is Observation.ANSWERED
    assert watch.observe(Ping(outcome=Outcome.TIMEOUT), 2.0).after is ChildState.SLOW
    assert watch.classify(Ping(outcome=Outcome.TIMEOUT), 12.0) is Observation.TIMEOUT
    assert watch.classify(Ping(outcome=Outcome.TIMEOUT), 12.5) is Observation.STUCK
    assert watch.classify(Ping(outcome=Outcome.FAILING), 12.5) is Observation.STUCK
    assert watch.classify(Ping(outcome=Outcome.DOWN), 12.5) is Observation.DOWN_TOO_LONG
    assert watch.classify(answered("b"), 12.5) is Observation.RESTARTED


def test_a_count_or_a_kill_starts_the_timeout_again() -> None:
    """A child down longer than restart_timeout_s counts once, then again only after another
    full timeout."""
    watch = ChildWatch("book", restart_timeout_s=10.0)
    watch.observe(answered("a"), 0.0)
    down = Ping(outcome=Outcome.DOWN)
    steps = [watch.observe(down, float(second)) for second in range(1, 30)]
    counted_at = [second for second, step in enumerate(steps, start=1) if step.failures]
    assert counted_at == [1, 12, 23]


def test_the_outage_clock_runs_from_the_first_sight_down_until_the_child_serves() -> None:
    """``down_for`` measures one outage: from the first ping that saw the child down (or our
    kill) until it answers again; counts, kills and a slow (SLOW) child do not touch it."""
    watch = ChildWatch("book", restart_timeout_s=10.0)
    watch.observe(answered("a"), 0.0)
    watch.observe(Ping(outcome=Outcome.TIMEOUT), 1.0)
    assert watch.state is ChildState.SLOW and watch.down_for(2.0) is None
    watch.observe(Ping(outcome=Outcome.DOWN), 3.0)
    for second in range(4, 30):  # counted again at 14 and 25: the clock keeps running
        watch.observe(Ping(outcome=Outcome.DOWN), float(second))
    assert watch.down_for(30.0) == 27.0
    watch.killed(30.0)
    assert watch.down_for(31.0) == 28.0
    back = watch.observe(answered("b"), 32.0)
    assert back.after is ChildState.UP and watch.down_for(33.0) is None
    watch.killed(40.0)
    assert watch.down_for(45.0) == 5.0


def test_ray_restarts_beyond_what_was_counted_or_caused_are_failures() -> None:
    """Ray's restart count is reconciled with the deaths the table counted and the kills the
    supervisor made: only the rest are new failures."""
    watch = ChildWatch("book", restart_timeout_s=10.0)
    watch.observe(answered("a", restarts=7), 0.0)  # first sight: the count is a baseline
    assert watch.observe(answered("b", restarts=10), 1.0).failures == 3
    watch.killed(2.0)
    assert watch.observe(answered("c", restarts=11), 3.0).failures == 0  # our own kill
    assert watch.observe(Ping(outcome=Outcome.DOWN, restarts=12), 4.0).failures == 1
    assert watch.observe(answered("d", restarts=12), 5.0).failures == 0  # that death, back
    assert watch.observe(answered("d", restarts=13), 6.0).observation is Observation.RESTARTED
