"""Supervision policy: which children restart after a failure, and when to give up.

A supervisor owns an ordered list of children and applies one strategy (the names are
Erlang/OTP's):

* ``ONE_FOR_ONE`` — restart only the child that failed;
* ``REST_FOR_ONE`` — restart it and every child started after it;
* ``ONE_FOR_ALL`` — restart every child.

Restart intensity bounds how hard it tries: at most ``max_restarts`` failures within
``within_s`` seconds. One more and the supervisor stops its children and escalates to its
parent, which applies its own policy to the whole subtree; a root that gives up marks the
subtree failed. So a crash loop costs a bounded number of restarts, never a spin.

How a supervisor sees a failure is here too, as data: a `ChildProbe` pings a child and answers
a `Ping`; a `ChildWatch` turns each ping (and the time) into an `Observation` and follows the
child through `TRANSITIONS`, one ``{(state, observation): (next state, action)}`` table::

    python -m actors.core.supervision      # print the table

Pings cost a call on both sides, so a child that is up is not pinged at every tick: between
pings the probe says, for free, whether Ray still holds it alive (`ChildProbe.alive`), and
`ChildWatch.ping_due` decides when a ping is needed (the child is not up, Ray says it is not
alive or does not know, or its last ping is older than the ping period). The table sees only
pings, so skipping one changes when a row is taken, never which.

This module is pure (time comes in as an argument), so every rule is tested without Ray; the
shell that runs the reconcile loop and carries out the decisions is `actors.supervisor`, and
the Ray side of the probe is `cluster.edge.handles.RayProbe`.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from typing import Protocol

import msgspec


class Strategy(enum.StrEnum):
    """Which children restart when one fails."""

    ONE_FOR_ONE = "one_for_one"
    REST_FOR_ONE = "rest_for_one"
    ONE_FOR_ALL = "one_for_all"


class RestartIntensity(msgspec.Struct, frozen=True, kw_only=True):
    """At most ``max_restarts`` failures within ``within_s`` seconds, then escalate."""

    max_restarts: int = 5
    within_s: float = 60.0


class Failure(msgspec.Struct, frozen=True, kw_only=True):
    """One failure a supervisor saw, for its history."""

    at_s: float
    child: str
    reason: str
    action: str
    """What the supervisor did: ``restart [names]`` or ``escalate``."""


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """What to do about a failure."""

    restart: tuple[str, ...] = ()
    """Children to restart, in start order (the failed one included)."""
    escalate: bool = False
    """Stop every child and hand the failure to the parent."""


class SupervisorPolicy:
    """Decide restarts for an ordered list of children under one strategy and intensity."""

    def __init__(
        self,
        children: Sequence[str],
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        intensity: RestartIntensity | None = None,
        history_size: int = 100,
    ) -> None:
        if len(set(children)) != len(children):
            raise ValueError(f"children must have distinct names: {list(children)}")
        self.children = list(children)
        self.strategy = strategy
        self.intensity = intensity or RestartIntensity()
        self._recent: deque[float] = deque()
        self.history: deque[Failure] = deque(maxlen=history_size)
        self.escalated = False

    def on_failure(self, child: str, reason: str, now_s: float) -> Decision:
        """Record that ``child`` failed at ``now_s``; return what to do about it."""
        if child not in self.children:
            raise KeyError(f"{child!r} is not a child of this supervisor")
        if self.escalated:
            return Decision(escalate=True)
        self._recent.append(now_s)
        while self._recent and self._recent[0] < now_s - self.intensity.within_s:
            self._recent.popleft()
        if len(self._recent) > self.intensity.max_restarts:
            self.escalated = True
            self.history.append(Failure(at_s=now_s, child=child, reason=reason, action="escalate"))
            return Decision(escalate=True)
        if self.strategy is Strategy.ONE_FOR_ONE:
            restart: tuple[str, ...] = (child,)
        elif self.strategy is Strategy.REST_FOR_ONE:
            restart = tuple(self.children[self.children.index(child) :])
        else:
            restart = tuple(self.children)
        self.history.append(
            Failure(at_s=now_s, child=child, reason=reason, action=f"restart {list(restart)}")
        )
        return Decision(restart=restart)

    def reset(self) -> None:
        """Forget recent failures (after the parent rebuilt this subtree)."""
        self._recent.clear()
        self.escalated = False

    def recent_failures(self, now_s: float) -> int:
        """Return how many failures count against the intensity at ``now_s``."""
        return sum(1 for at in self._recent if at >= now_s - self.intensity.within_s)


# ------------------------------------------------------------------------------ the probe


class Outcome(enum.StrEnum):
    """How one health check of a child ended."""

    ANSWERED = "answered"
    """The child answered its ping."""
    DOWN = "down"
    """Dead, restarting or no such actor: Ray's to bring back."""
    FAILING = "failing"
    """Alive, but the ping raised: only a kill makes Ray restart it."""
    TIMEOUT = "timeout"
    """No answer within the ping timeout: hung, or just busy behind a slow call."""


class Ping(msgspec.Struct, frozen=True, kw_only=True):
    """What a probe learned from one health check of a child."""

    outcome: Outcome
    incarnation: str = ""
    """Which process answered (changes when Ray restarts the actor); empty unless answered."""
    offset: int = 0
    """How far the child has got (a shard's journal offset); 0 unless answered."""
    detail: str = ""
    """Why it did not answer, for the status and the history (one line)."""
    restarts: int | None = None
    """Ray's own restart count of the actor, when the probe knows it. Read it after the ping
    ended, so that a new incarnation's restart is already in it."""


class ActorProbe(Protocol):
    """Reach named actors: the one seam between supervision and Ray (`ChildProbe` without the
    messages between supervisors, which a supervision tree delivers in its own process)."""

    def ping(self, name: str, timeout_s: float) -> Ping:
        """Health-check the named child within ``timeout_s``; never raise."""
        ...

    def alive(self, name: str) -> bool | None:
        """Tell, without calling the child, whether Ray holds it alive: False while it is
        restarting or dead, None when the probe does not know (say, before the first ping).
        Cost no call to the child or to Ray's control store; never raise."""
        ...

    def kill(self, name: str, *, restart: bool) -> None:
        """Kill the named actor, to be restarted by Ray or for good; an absent actor is a no-op."""
        ...


class ChildProbe(ActorProbe, Protocol):
    """Reach a supervisor's children and parent: its children through an `ActorProbe`, its
    parent and child supervisors by message."""

    def tell_escalated(self, parent: str, child: str, reason: str) -> None:
        """Tell the parent supervisor that ``child`` escalated (fire and forget)."""
        ...

    def tell_rebuild(self, child: str) -> None:
        """Tell a child supervisor to rebuild its subtree (fire and forget)."""
        ...


# ------------------------------------------------------------------------------ the table


class ChildState(enum.StrEnum):
    """Where a supervisor believes a child is."""

    UNKNOWN = "unknown"
    """Not seen yet (just started, or rebuilt)."""
    UP = "up"
    """Answered its last ping."""
    SLOW = "slow"
    """Its pings time out, not counted yet: it may be busy behind a slow call, or hung."""
    DOWN = "down"
    """Counted as a failure; dead or restarting, Ray's to bring back."""
    RESTARTING = "restarting"
    """Killed by us (restart=True), waiting for the new incarnation; not counted again."""


class Observation(enum.StrEnum):
    """What one ping, with the clock, says about a child (`ChildWatch.classify`)."""

    ANSWERED = "answered"
    """Answered, same incarnation as before."""
    RESTARTED = "restarted"
    """Answered, from a new incarnation (or Ray counted restarts we did not expect)."""
    DOWN = "down"
    """Dead, restarting or absent."""
    FAILING = "failing"
    """Alive, but the ping raised."""
    TIMEOUT = "timeout"
    """No answer within the ping timeout."""
    DOWN_TOO_LONG = "down_too_long"
    """Down, and not up for longer than ``restart_timeout_s``."""
    STUCK = "stuck"
    """Failing or not answering, and not up for longer than ``restart_timeout_s``: hung."""


class Action(enum.StrEnum):
    """What the supervisor does about an observation."""

    NONE = "none"
    COUNT = "count"
    """A failure for the policy; Ray brings the child back by itself."""
    COUNT_AND_KILL = "count_and_kill"
    """A failure for the policy, and a kill: the child is alive, Ray restarts only a dead one."""


_S, _O, _A = ChildState, Observation, Action

TRANSITIONS: dict[tuple[ChildState, Observation], tuple[ChildState, Action]] = {
    # state        observation            next state       action
    (_S.UNKNOWN, _O.ANSWERED):      (_S.UP, _A.NONE),
    (_S.UNKNOWN, _O.RESTARTED):     (_S.UP, _A.NONE),  # its first answer: nothing to compare
    (_S.UNKNOWN, _O.DOWN):          (_S.DOWN, _A.COUNT),
    (_S.UNKNOWN, _O.FAILING):       (_S.RESTARTING, _A.COUNT_AND_KILL),
    (_S.UNKNOWN, _O.TIMEOUT):       (_S.SLOW, _A.NONE),  # a fresh actor may still be recovering
    (_S.UNKNOWN, _O.DOWN_TOO_LONG): (_S.DOWN, _A.COUNT),  # (never waits: as DOWN)
    (_S.UNKNOWN, _O.STUCK):         (_S.RESTARTING, _A.COUNT_AND_KILL),  # (as FAILING)

    (_S.UP, _O.ANSWERED):           (_S.UP, _A.NONE),
    (_S.UP, _O.RESTARTED):          (_S.UP, _A.COUNT),  # died and came back between two pings
    (_S.UP, _O.DOWN):               (_S.DOWN, _A.COUNT),
    (_S.UP, _O.FAILING):            (_S.RESTARTING, _A.COUNT_AND_KILL),
    (_S.UP, _O.TIMEOUT):            (_S.SLOW, _A.NONE),  # maybe only busy: wait and see
    (_S.UP, _O.DOWN_TOO_LONG):      (_S.DOWN, _A.COUNT),  # (never waits: as DOWN)
    (_S.UP, _O.STUCK):              (_S.RESTARTING, _A.COUNT_AND_KILL),  # (as FAILING)

    (_S.SLOW, _O.ANSWERED):         (_S.UP, _A.NONE),  # it was only busy
    (_S.SLOW, _O.RESTARTED):        (_S.UP, _A.COUNT),
    (_S.SLOW, _O.DOWN):             (_S.DOWN, _A.COUNT),
    (_S.SLOW, _O.FAILING):          (_S.RESTARTING, _A.COUNT_AND_KILL),
    (_S.SLOW, _O.TIMEOUT):          (_S.SLOW, _A.NONE),
    (_S.SLOW, _O.DOWN_TOO_LONG):    (_S.DOWN, _A.COUNT),
    (_S.SLOW, _O.STUCK):            (_S.RESTARTING, _A.COUNT_AND_KILL),  # hung, not busy

    (_S.DOWN, _O.ANSWERED):         (_S.UP, _A.NONE),  # back (already counted)
    (_S.DOWN, _O.RESTARTED):        (_S.UP, _A.NONE),  # back (already counted)
    (_S.DOWN, _O.DOWN):             (_S.DOWN, _A.NONE),  # Ray is bringing it back
    (_S.DOWN, _O.FAILING):          (_S.DOWN, _A.NONE),  # back but broken: give it the timeout
    (_S.DOWN, _O.TIMEOUT):          (_S.DOWN, _A.NONE),  # its constructor is recovering
    (_S.DOWN, _O.DOWN_TOO_LONG):    (_S.DOWN, _A.COUNT),  # again: so a crash loop ends
    (_S.DOWN, _O.STUCK):            (_S.RESTARTING, _A.COUNT_AND_KILL),

    (_S.RESTARTING, _O.ANSWERED):   (_S.RESTARTING, _A.NONE),  # the old one: kill not landed yet
    (_S.RESTARTING, _O.RESTARTED):  (_S.UP, _A.NONE),  # the restart we asked for
    (_S.RESTARTING, _O.DOWN):       (_S.RESTARTING, _A.NONE),
    (_S.RESTARTING, _O.FAILING):    (_S.RESTARTING, _A.NONE),
    (_S.RESTARTING, _O.TIMEOUT):    (_S.RESTARTING, _A.NONE),
    (_S.RESTARTING, _O.DOWN_TOO_LONG): (_S.DOWN, _A.COUNT),
    (_S.RESTARTING, _O.STUCK):      (_S.RESTARTING, _A.COUNT_AND_KILL),
}  # fmt: skip
"""Every (state, observation) a child can be in, and what follows. Waiting (SLOW, DOWN,
RESTARTING) starts a clock; STUCK and DOWN_TOO_LONG are what a ping says once it has run for
``restart_timeout_s``, and every count or kill starts it again."""

_WAITING = frozenset({ChildState.SLOW, ChildState.DOWN, ChildState.RESTARTING})
_DOWN = frozenset({ChildState.DOWN, ChildState.RESTARTING})


def format_transitions() -> str:
    """Return `TRANSITIONS` as an aligned text table, one row per (state, observation)."""
    rows = [("state", "observation", "next state", "action")]
    rows += [(s, o, n, a) for (s, o), (n, a) in TRANSITIONS.items()]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  " + row[3]
        for row in rows
    )


def print_transitions() -> None:
    """Print the transition table (``python -m actors.core.supervision``)."""
    print(format_transitions())


class Step(msgspec.Struct, frozen=True, kw_only=True):
    """What one ping did to a child: the row of the table it took, and what to count."""

    observation: Observation
    before: ChildState
    after: ChildState
    action: Action
    failures: int
    """Failures to hand the policy: one for a COUNT action, plus Ray restarts not seen otherwise."""
    reason: str
    """Why, for the policy's history."""

    @property
    def kill(self) -> bool:
        """Tell whether the child itself must be killed (and restarted)."""
        return self.action is Action.COUNT_AND_KILL


class ChildWatch:
    """Follow one child through `TRANSITIONS`, one ping at a time.

    Restart counting sees every death when the probe knows Ray's restart count: a growth the
    table did not account for (a COUNT of a death, or a kill of ours) is counted too, so five
    deaths between two pings are five failures, not one.
    """

    def __init__(self, name: str, restart_timeout_s: float) -> None:
        self.name = name
        self.restart_timeout_s = restart_timeout_s
        self.reset()

    def reset(self) -> None:
        """Forget the child: it is new (a rebuild replaced it with a fresh actor)."""
        self.state = ChildState.UNKNOWN
        self.incarnation = ""
        self.offset = 0
        self.last_error = ""
        self.restarts = 0
        """Restarts seen: Ray's count when known, else the new incarnations."""
        self.waiting_since: float | None = None
        self.down_since: float | None = None
        """When it last went down or was killed by us (DOWN, RESTARTING); None while not.
        Unlike ``waiting_since``, a count or a kill does not start it again."""
        self._ray_restarts: int | None = None
        self._owed = 0
        """Ray restarts we expect to see for deaths already counted and kills of ours."""
        self.pinged_at: float | None = None
        """When the last ping was observed; None before the first."""

    def ping_due(self, now_s: float, alive: bool | None, every_s: float) -> bool:
        """Tell whether the child needs a ping at ``now_s``.

        A child that is up, that Ray holds alive (``alive``, from `ChildProbe.alive`) and that
        answered a ping less than ``every_s`` ago would only answer again: skip it. Any other
        child is pinged at every tick, as is every child whose probe cannot tell (None). A
        death is seen through ``alive`` at the next tick; what only a ping shows (a child alive
        but failing, or hung) is seen within ``every_s``.
        """
        return (
            self.state is not ChildState.UP
            or alive is not True
            or self.pinged_at is None
            or now_s - self.pinged_at >= every_s
        )

    def classify(
        self, ping: Ping, now_s: float, *, unexpected_restarts: bool = False
    ) -> Observation:
        """Turn a ping and the time into an observation (the row's column in the table)."""
        if ping.outcome is Outcome.ANSWERED:
            restarted = ping.incarnation != self.incarnation or unexpected_restarts
            return Observation.RESTARTED if restarted else Observation.ANSWERED
        overdue = self.waiting_since is not None and (
            now_s - self.waiting_since > self.restart_timeout_s
        )
        if ping.outcome is Outcome.DOWN:
            return Observation.DOWN_TOO_LONG if overdue else Observation.DOWN
        if overdue:
            return Observation.STUCK
        return Observation.FAILING if ping.outcome is Outcome.FAILING else Observation.TIMEOUT

    def observe(self, ping: Ping, now_s: float) -> Step:
        """Take one ping at ``now_s``: move through the table and say what to count."""
        self.pinged_at = now_s
        grown = 0
        if ping.restarts is not None:
            if self._ray_restarts is not None:
                grown = max(0, ping.restarts - self._ray_restarts)
            self._ray_restarts = ping.restarts
        observation = self.classify(ping, now_s, unexpected_restarts=grown > self._owed)
        before = self.state
        after, action = TRANSITIONS[(before, observation)]
        counted = 0 if action is Action.NONE else 1
        if action is Action.COUNT and observation in (Observation.DOWN, Observation.RESTARTED):
            self._owed += 1  # a death: Ray will show its restart
        extra = max(0, grown - self._owed)
        self._owed = max(0, self._owed - grown)

        if ping.outcome is Outcome.ANSWERED:
            self.offset = ping.offset
            self.incarnation = ping.incarnation
        else:
            self.last_error = ping.detail
        if ping.restarts is not None:
            self.restarts += grown
        elif observation is Observation.RESTARTED and before is not ChildState.UNKNOWN:
            self.restarts += 1

        if after not in _WAITING:
            self.waiting_since = None
        elif before not in _WAITING or action is not Action.NONE:
            self.waiting_since = now_s
        if after in _DOWN and self.down_since is None:
            self.down_since = now_s
        if after is ChildState.UP:
            self.down_since = None
            # every restart we expected has happened once the child serves again (the probe
            # reads the count after the ping), so a stale debt cannot hide a later death
            self._owed = 0
        self.state = after
        return Step(observation=observation, before=before, after=after, action=action,
                    failures=counted + extra, reason=self._reason(observation, ping, extra))

    def killed(self, now_s: float) -> None:
        """Record that we killed the child for Ray to restart: wait for its new incarnation."""
        self.state = ChildState.RESTARTING
        self.waiting_since = now_s
        if self.down_since is None:
            self.down_since = now_s
        self._owed += 1

    def down_for(self, now_s: float) -> float | None:
        """Return how long the child has been down or restarting at ``now_s``; None if not."""
        return None if self.down_since is None else now_s - self.down_since

    def lost(self) -> None:
        """Record that a kill of ours failed: we no longer know where the child is (it stays
        down, if it was, until it answers)."""
        self.state = ChildState.UNKNOWN
        self.waiting_since = None

    def _reason(self, observation: Observation, ping: Ping, extra: int) -> str:
        detail = f" ({ping.detail})" if ping.detail else ""
        timeout = f"{self.restart_timeout_s:.0f} s"
        reason = {
            Observation.ANSWERED: "answered",
            Observation.RESTARTED: "restarted between health checks",
            Observation.DOWN: f"not answering{detail}",
            Observation.FAILING: f"alive but failing its health checks{detail}",
            Observation.TIMEOUT: f"no answer within the ping timeout{detail}",
            Observation.DOWN_TOO_LONG: f"still down after {timeout}{detail}",
            Observation.STUCK: f"hung: not serving for over {timeout}{detail}",
        }[observation]
        if extra:
            reason += f"; Ray restarted it {extra} more time{'s' if extra > 1 else ''}"
        return reason


if __name__ == "__main__":
    print_transitions()
