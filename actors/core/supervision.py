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

This module is pure (time comes in as an argument), so every rule is tested without Ray; the
Ray shell that detects failures and carries out the decisions is `actors.supervisor`.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence

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
