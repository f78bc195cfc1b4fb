"""Supervisors: the Ray shell around `actors.core.supervision.SupervisorPolicy`.

The tree::

    supervisor                      (root: one-for-one over the subtrees)
    ├── supervisor-shard-0          (book-0, risk-0, positions-0)
    ├── supervisor-shard-1          ...
    └── supervisor-gateways         (later: the gRPC gateways)

Children are named Ray actors started with ``max_restarts=-1``, so Ray brings a dead process
back by running its constructor again (which recovers from snapshot + journal); the
supervisor owns the policy on top. A reconcile loop (a thread, every ``tick_s``) pings each
child and sees a failure when

* the ping raises (the actor died or is restarting) or times out (it hangs), or
* the answer carries a new incarnation (Ray restarted it between two pings).

For each failure it asks the policy: restart siblings too (``ray.kill(no_restart=False)``:
Ray restarts them, they recover from the log), or escalate: stop every child for good
(``no_restart=True``) and tell the parent, whose policy decides whether to rebuild the
subtree (fresh actors through the injected ``rebuild`` factory) or give up and mark it
failed. A child that stays down longer than ``restart_timeout_s`` is escalated too, so a
crash loop in a constructor stops after a bounded number of attempts.

Failures closer together than one tick (a crash, a restart and another crash between two
pings) count once; a child that keeps crashing is down most of the time and is caught by
``restart_timeout_s``.

The loop catches and logs every exception: a supervisor must outlive what it supervises.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError

from actors.core.supervision import RestartIntensity, Strategy, SupervisorPolicy

log = logging.getLogger(__name__)


class _Child:
    def __init__(self, name: str) -> None:
        self.name = name
        self.incarnation: str | None = None
        self.down_since: float | None = None
        self.expect_restart = False
        self.restarts = 0
        self.last_error = ""
        self.alive_but_failing = False
        self.offset = 0


class Supervisor:
    """Watch named child actors; restart, escalate and report per the policy."""

    def __init__(
        self,
        name: str,
        children: Sequence[str],
        *,
        namespace: str,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        intensity: RestartIntensity | None = None,
        parent: str | None = None,
        rebuild: Callable[[], None] | None = None,
        tick_s: float = 0.5,
        ping_timeout_s: float = 5.0,
        restart_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.parent = parent
        self._rebuild = rebuild
        self.policy = SupervisorPolicy(children, strategy, intensity)
        self.children = {child: _Child(child) for child in children}
        self.tick_s = tick_s
        self.ping_timeout_s = ping_timeout_s
        self.restart_timeout_s = restart_timeout_s
        self.clock = clock
        self.state = "running"
        """``running``, ``escalated`` (children stopped, waiting for the parent) or ``failed``."""
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"{name}-loop", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- the loop

    def _loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.reconcile()
            except Exception:  # the loop must never die
                log.exception("supervisor %s: reconcile failed; trying again next tick", self.name)

    def reconcile(self) -> None:
        """Observe every child once and act on what failed (one tick of the loop)."""
        with self._lock:
            if self.state != "running":
                return
            for child in list(self.children.values()):
                problem = self._observe(child)
                if problem is not None:
                    self._on_failure(child, problem)
                    if self.state != "running":
                        return

    def _observe(self, child: _Child) -> str | None:
        """Ping one child; return a failure reason, or None if nothing new went wrong."""
        now = self.clock()
        try:
            handle: Any = ray.get_actor(child.name, namespace=self.namespace)
            answer: tuple[str, int] = ray.get(handle.ping.remote(), timeout=self.ping_timeout_s)
            incarnation, offset = answer
        except Exception as error:  # every way a ping fails means "down"
            reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            child.last_error = reason
            # A dead or restarting actor is Ray's to bring back. One that answers with an error
            # is alive, and only a kill makes Ray restart it; so is one that hangs, but a ping
            # can also time out behind a slow call, so a timeout counts as hanging only after
            # restart_timeout_s.
            hung = isinstance(error, GetTimeoutError) and child.down_since is not None and (
                now - child.down_since > self.restart_timeout_s
            )
            child.alive_but_failing = hung or not isinstance(
                error, RayActorError | ActorUnavailableError | ValueError | GetTimeoutError
            )
            if child.down_since is None:
                child.down_since = now
                if child.expect_restart:
                    return None
                return f"not answering ({reason})"
            if now - child.down_since > self.restart_timeout_s:
                child.down_since = now  # count it again only after another full timeout
                return f"still down after {self.restart_timeout_s:.0f} s ({reason})"
            return None
        child.offset = offset
        was_down = child.down_since is not None
        child.down_since = None
        previous, child.incarnation = child.incarnation, incarnation
        if previous is not None and incarnation != previous:
            child.restarts += 1
            if child.expect_restart or was_down:
                child.expect_restart = False
                return None
            return "restarted between health checks"
        child.expect_restart = False
        return None

    def _on_failure(self, child: _Child, reason: str) -> None:
        decision = self.policy.on_failure(child.name, reason, self.clock())
        log.warning("supervisor %s: %s failed (%s): %s", self.name, child.name, reason,
                    "escalating" if decision.escalate else f"restarting {list(decision.restart)}")
        if decision.escalate:
            self._escalate(f"{child.name}: {reason}")
            return
        for name in decision.restart:
            sibling = self.children[name]
            if name == child.name and not child.alive_but_failing:
                continue  # Ray already brought it back, or is bringing it back
            sibling.expect_restart = True
            self._kill(name, restart=True)

    def _escalate(self, reason: str, *, stop_children: bool = True) -> None:
        self.state = "escalated"
        if stop_children:
            for name in self.children:
                self._kill(name, restart=False)
        if self.parent is None:
            self.state = "failed"
            log.critical("supervisor %s gave up (%s); its children are stopped", self.name, reason)
            return
        try:
            parent = ray.get_actor(self.parent, namespace=self.namespace)
            parent.on_child_escalated.remote(self.name, reason)
        except Exception:
            log.exception("supervisor %s: could not reach its parent %s", self.name, self.parent)

    def _kill(self, name: str, *, restart: bool) -> None:
        try:
            ray.kill(ray.get_actor(name, namespace=self.namespace), no_restart=not restart)
        except ValueError:
            pass  # no such actor (already gone for good)
        except Exception:
            log.exception("supervisor %s: could not kill %s", self.name, name)

    # ---------------------------------------------------------------- calls

    def on_child_escalated(self, child: str, reason: str) -> None:
        """Take a child supervisor's escalation: rebuild its subtree or give up."""
        with self._lock:
            decision = self.policy.on_failure(child, f"escalated: {reason}", self.clock())
            if decision.escalate:
                log.critical("supervisor %s: %s keeps failing; giving up on it", self.name, child)
                # the child supervisor already stopped its own children; it stays up to report
                self._escalate(f"{child}: {reason}", stop_children=False)
                return
            log.warning("supervisor %s: rebuilding %s after its escalation (%s)",
                        self.name, child, reason)
            try:
                ray.get_actor(child, namespace=self.namespace).rebuild.remote()
            except Exception:
                log.exception("supervisor %s: could not ask %s to rebuild", self.name, child)

    def rebuild(self) -> None:
        """Start fresh children (the parent decided to try again) and supervise them anew."""
        with self._lock:
            if self._rebuild is None:
                raise RuntimeError(f"supervisor {self.name} has no way to rebuild its children")
            self._rebuild()
            self.policy.reset()
            for child in self.children.values():
                child.incarnation = None
                child.down_since = None
                child.expect_restart = False
            self.state = "running"

    def ping(self) -> tuple[str, int]:
        """Answer the parent's health check."""
        return f"{self.name}:{id(self)}", len(self.policy.history)

    def status(self) -> dict[str, Any]:
        """Return the state, the children and the restart history."""
        with self._lock:
            now = self.clock()
            return {
                "name": self.name,
                "state": self.state,
                "strategy": str(self.policy.strategy),
                "intensity": {
                    "max_restarts": self.policy.intensity.max_restarts,
                    "within_s": self.policy.intensity.within_s,
                    "recent_failures": self.policy.recent_failures(now),
                },
                "children": {
                    child.name: {
                        "up": child.down_since is None and child.incarnation is not None,
                        "restarts": child.restarts,
                        "offset": child.offset,
                        "last_error": child.last_error,
                    }
                    for child in self.children.values()
                },
                "history": [
                    {"ago_s": round(now - failure.at_s, 1), "child": failure.child,
                     "reason": failure.reason, "action": failure.action}
                    for failure in self.policy.history
                ],
            }

    def stop(self) -> None:
        """Stop the loop (the children keep running)."""
        self._stop.set()
        self._thread.join(timeout=5)
