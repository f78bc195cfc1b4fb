"""The supervision policy, without Ray: strategies, restart intensity, escalation."""

from __future__ import annotations

import pytest

from actors.core.supervision import RestartIntensity, Strategy, SupervisorPolicy

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
