"""Supervisors: the reconcile loop around `actors.core.supervision`, and the process they share.

The tree::

    supervisor                      (root: one-for-one over the subtrees)
    ├── supervisor-shard-0          (book-0, reader-0)
    ├── supervisor-shard-1          ...
    └── supervisor-gateways         (the gRPC gateways)

Every supervisor of the tree runs in one process, a `SupervisionTree` (see there for why);
the children they watch are actors of their own.

Children are named actors started with ``max_restarts=-1``, so Ray brings a dead process back
by running its constructor again (which recovers from snapshot + journal); the supervisor owns
the policy on top. A reconcile loop (a thread, every ``tick_s``) observes each child through the
injected `ChildProbe` and follows it through the transition table
(`actors.core.supervision.TRANSITIONS`, printed by ``python -m actors.core.supervision``).

What it costs while all is well: at each tick it asks the probe whether Ray still holds each
child alive (`ChildProbe.alive`: Ray's own view of the actor, pushed to this process by Ray's
control store, no call), and pings (a call to the child) only a child that is not up, that Ray
does not hold alive, or whose last ping is ``ping_every_s`` old. The timings that follow, with
the defaults (``tick_s`` 0.5 s, ``ping_every_s`` 5 s, ``ping_timeout_s`` 5 s):

* a death is seen at the next tick (Ray marks the actor restarting as soon as its process
  exits), as when every tick pinged every child: within ``tick_s``;
* a death and a restart both within one tick (raytrade's actors take longer than that to start)
  is seen at the next ping, within ``ping_every_s``; Ray's restart count, read with the ping,
  still counts every death;
* a child alive but failing its pings is seen within ``ping_every_s`` (it was ``tick_s``);
* a hung child: its first ping timeout comes within ``ping_every_s`` + ``ping_timeout_s``, and
  it is killed ``restart_timeout_s`` after that (30 s by default, so the ping period adds
  little);
* the offset in `status` is at most ``ping_every_s`` old.

A probe whose ``alive`` answers None (does not know) gets the old behaviour: every child is
pinged at every tick. ``ping_every_s=0`` does the same for any probe. What the observations
mean:

* a child that is down counts as a failure, and Ray brings it back;
* one that answers from a new incarnation died between two pings: a failure, already back;
* one that is alive but fails its pings counts, and is killed so that Ray restarts it;
* one whose pings time out may only be busy behind a slow call: it counts as hung, and is
  killed, only after ``restart_timeout_s``;
* a kill of ours is expected to produce a new incarnation and is not counted again;
* a child down longer than ``restart_timeout_s`` counts again, so a crash loop in a
  constructor ends; when the probe knows Ray's restart count, every restart counts, so a crash
  loop faster than the ping ends sooner.

A child down (or restarting) for longer than ``slow_start_s`` gets one WARNING line, and one
more when it is back: Ray's raylet can wait up to its ``worker_register_timeout_seconds`` (60 s
by default) on a worker process that hangs while starting, which looks like a shard that will
not come back (issue 9 saw 40.6 s and 69 s against a median of 0.6-6 s).

For each failure it asks the policy: restart siblings too (a kill with ``restart=True``: Ray
restarts them, they recover from the log), or escalate: stop every child for good and tell the
parent, whose policy decides whether to rebuild the subtree (fresh actors through the injected
``rebuild`` factory) or give up and mark it failed.

The loop catches and logs every exception: a supervisor must outlive what it supervises. This
module imports no Ray; `cluster.edge.handles.RayProbe` is the probe a cluster injects.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from actors.core.supervision import (
    ActorProbe,
    ChildProbe,
    ChildState,
    ChildWatch,
    Outcome,
    Ping,
    RestartIntensity,
    Step,
    Strategy,
    SupervisorPolicy,
)
from actors.logfields import fields
from actors.metering import Meter, MeterReading, MetricsExporter
from protocols.rows import SupervisedChildRow, SupervisorFailureRow, SupervisorStatusRow

log = logging.getLogger(__name__)


class Supervisor:
    """Watch named child actors through a probe; restart, escalate and report per the policy."""

    def __init__(
        self,
        name: str,
        children: Sequence[str],
        *,
        probe: ChildProbe,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        intensity: RestartIntensity | None = None,
        parent: str | None = None,
        rebuild: Callable[[], None] | None = None,
        tick_s: float = 0.5,
        ping_every_s: float = 5.0,
        ping_timeout_s: float = 5.0,
        restart_timeout_s: float = 30.0,
        slow_start_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        start_loop: bool = True,
        metrics: MetricsExporter | None = None,
    ) -> None:
        self.name = name
        self.meter = Meter(metrics, flush_every_s=ping_every_s, clock=clock)
        """Restarts and escalations (`protocols.metrics`), flushed with the loop's ticks."""
        self.probe = probe
        self.parent = parent
        self._rebuild = rebuild
        self.policy = SupervisorPolicy(children, strategy, intensity)
        self.children = {child: ChildWatch(child, restart_timeout_s) for child in children}
        # every series exists from the start, at 0: Prometheus' rate() and increase() cannot
        # see a counter's first count if its series appears already at 1
        for child in children:
            self.meter.count("raytrade_actor_restarts_total", (name, child), 0.0)
        self.meter.count("raytrade_escalations_total", (name,), 0.0)
        self.tick_s = tick_s
        self.ping_every_s = ping_every_s
        """How often a child that is up and that Ray holds alive is pinged all the same: only a
        ping shows a child that is alive but failing, or hung."""
        self.ping_timeout_s = ping_timeout_s
        self.restart_timeout_s = restart_timeout_s
        self.slow_start_s = slow_start_s
        """A child down longer than this is logged as slow to come back (once per outage)."""
        self._slow: set[str] = set()
        """Children logged as slow to come back and not back yet."""
        self.clock = clock
        self.state = "running"
        """``running``, ``escalated`` (children stopped, waiting for the parent) or ``failed``."""
        self._generation = 0
        """Bumped by every rebuild, so a ping sent to the old children is not applied to new."""
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if start_loop:
            self.start()

    def start(self) -> None:
        """Start the reconcile loop (a daemon thread, one tick every ``tick_s``)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"{self.name}-loop",
                                            daemon=True)
            self._thread.start()

    # ---------------------------------------------------------------- the loop

    def _loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.reconcile()
                self._flush_metrics()
            except Exception:  # the loop must never die
                log.exception("supervisor %s: reconcile failed; trying again next tick", self.name)

    def _flush_metrics(self) -> None:
        if self.meter.due():
            with self._lock:
                up = sum(watch.state is ChildState.UP for watch in self.children.values())
            self.meter.set("raytrade_children_up", (self.name,), up)
            self.meter.flush()

    def reconcile(self) -> None:
        """Observe every child once and act on what failed (one tick of the loop): ping each
        child that `ChildWatch.ping_due` says needs it."""
        for watch in list(self.children.values()):
            alive = self._alive(watch.name)
            with self._lock:
                if self.state != "running":
                    return
                if not watch.ping_due(self.clock(), alive, self.ping_every_s):
                    continue
                generation = self._generation
            # ping outside the lock: a hung child must not hold up status() and the calls
            try:
                ping = self.probe.ping(watch.name, self.ping_timeout_s)
            except Exception:  # the probe promises not to raise; one bug must not stop the rest
                log.exception("supervisor %s: probing %s failed", self.name, watch.name)
                continue
            with self._lock:
                if self.state != "running" or generation != self._generation:
                    return
                now = self.clock()
                down_since = watch.down_since
                step = watch.observe(ping, now)
                if step.before is not step.after:
                    log.info("supervisor %s: %s %s -> %s (%s)", self.name, watch.name,
                             step.before, step.after, step.observation)
                self._log_slow_start(watch, down_since, now)
                if step.failures:
                    self._on_failure(watch, step)

    def _alive(self, name: str) -> bool | None:
        try:
            return self.probe.alive(name)
        except Exception:  # the probe promises not to raise; not knowing means: ping it
            log.exception("supervisor %s: asking whether %s is alive failed", self.name, name)
            return None

    def _log_slow_start(self, watch: ChildWatch, down_since: float | None, now: float) -> None:
        # one line when an outage passes slow_start_s and one when it ends, not one per tick:
        # a slow worker start must be visible, but must not flood the log
        if watch.name in self._slow and watch.state is ChildState.UP:
            self._slow.discard(watch.name)
            back_after = now - down_since if down_since is not None else float("nan")
            log.warning("supervisor %s: %s back after %.1f s", self.name, watch.name, back_after)
            return
        down_for = watch.down_for(now)
        if down_for is not None and down_for > self.slow_start_s and watch.name not in self._slow:
            self._slow.add(watch.name)
            log.warning(
                "supervisor %s: %s still not back after %.0f s; Ray's worker start may be slow "
                "(its raylet waits up to worker_register_timeout_seconds on a hung worker "
                "start); last error: %s", self.name, watch.name, down_for,
                watch.last_error or "none")

    def _on_failure(self, watch: ChildWatch, step: Step) -> None:
        now = self.clock()
        decisions = [self.policy.on_failure(watch.name, step.reason, now)
                     for _ in range(step.failures)]
        escalate = any(decision.escalate for decision in decisions)
        restart = decisions[-1].restart
        self.meter.count("raytrade_actor_restarts_total", (self.name, watch.name), step.failures)
        log.warning("supervisor %s: %s failed (%s): %s", self.name, watch.name, step.reason,
                    "escalating" if escalate else f"restarting {list(restart)}",
                    extra=fields("child_failed", supervisor=self.name, child=watch.name,
                                 reason=step.reason, failures=step.failures,
                                 action="escalate" if escalate else "restart",
                                 restarting=list(restart)))
        if escalate:
            self._escalate(f"{watch.name}: {step.reason}")
            return
        for name in restart:
            if name == watch.name and not step.kill:
                continue  # Ray already brought it back, or is bringing it back
            if self._kill(name, restart=True):
                self.children[name].killed(now)
            else:
                self.children[name].lost()

    def _escalate(self, reason: str, *, stop_children: bool = True) -> None:
        self.state = "escalated"
        self.meter.count("raytrade_escalations_total", (self.name,))
        if stop_children:
            for name in self.children:
                self._kill(name, restart=False)
        if self.parent is None:
            self.state = "failed"
            log.critical("supervisor %s gave up (%s); its children are stopped", self.name,
                         reason, extra=fields("supervisor_gave_up", supervisor=self.name,
                                              reason=reason))
            return
        log.error("supervisor %s escalates to %s (%s)", self.name, self.parent, reason,
                  extra=fields("supervisor_escalated", supervisor=self.name, parent=self.parent,
                               reason=reason))
        try:
            self.probe.tell_escalated(self.parent, self.name, reason)
        except Exception:
            log.exception("supervisor %s: could not reach its parent %s", self.name, self.parent)

    def _kill(self, name: str, *, restart: bool) -> bool:
        try:
            self.probe.kill(name, restart=restart)
        except Exception:
            log.exception("supervisor %s: could not kill %s", self.name, name)
            return False
        return True

    # ---------------------------------------------------------------- calls

    def on_child_escalated(self, child: str, reason: str) -> None:
        """Take a child supervisor's escalation: rebuild its subtree or give up."""
        with self._lock:
            decision = self.policy.on_failure(child, f"escalated: {reason}", self.clock())
            if decision.escalate:
                log.critical("supervisor %s: %s keeps failing; giving up on it", self.name,
                             child, extra=fields("subtree_given_up", supervisor=self.name,
                                                 child=child, reason=reason))
                # the child supervisor already stopped its own children; it stays up to report
                self._escalate(f"{child}: {reason}", stop_children=False)
                return
            log.warning("supervisor %s: rebuilding %s after its escalation (%s)",
                        self.name, child, reason,
                        extra=fields("subtree_rebuilt", supervisor=self.name, child=child,
                                     reason=reason))
            try:
                self.probe.tell_rebuild(child)
            except Exception:
                log.exception("supervisor %s: could not ask %s to rebuild", self.name, child)

    def rebuild(self) -> None:
        """Start fresh children (the parent decided to try again) and supervise them anew."""
        with self._lock:
            if self._rebuild is None:
                raise RuntimeError(f"supervisor {self.name} has no way to rebuild its children")
            self._rebuild()
            self.policy.reset()
            for watch in self.children.values():
                watch.reset()
            self._slow.clear()
            self._generation += 1
            self.state = "running"

    def ping(self) -> tuple[str, int]:
        """Answer the parent's health check: (incarnation, failures seen)."""
        return f"{self.name}:{id(self)}", len(self.policy.history)

    def status(self) -> SupervisorStatusRow:
        """Return the state, the policy, the children and the restart history."""
        with self._lock:
            now = self.clock()
            return SupervisorStatusRow(
                name=self.name,
                state=self.state,
                strategy=str(self.policy.strategy),
                max_restarts=self.policy.intensity.max_restarts,
                within_s=self.policy.intensity.within_s,
                recent_failures=self.policy.recent_failures(now),
                children=[
                    SupervisedChildRow(
                        name=watch.name, state=str(watch.state),
                        up=watch.state is ChildState.UP, restarts=watch.restarts,
                        offset=watch.offset, last_error=watch.last_error,
                        down_s=_rounded(watch.down_for(now)),
                    )
                    for watch in self.children.values()
                ],
                history=[
                    SupervisorFailureRow(ago_s=round(now - failure.at_s, 1),
                                         child=failure.child, reason=failure.reason,
                                         action=failure.action)
                    for failure in self.policy.history
                ],
            )

    def stop(self) -> None:
        """Stop the loop (the children keep running)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


# ------------------------------------------------------------------------------ the process


@dataclass(frozen=True, kw_only=True)
class SupervisorSpec:
    """One supervisor of a `SupervisionTree`: `Supervisor`'s arguments but the probe, clock and
    metrics, which the tree provides. Picklable: Ray keeps the tree's constructor arguments to
    start its process again."""

    name: str
    children: tuple[str, ...]
    strategy: Strategy = Strategy.ONE_FOR_ONE
    intensity: RestartIntensity | None = None
    parent: str | None = None
    rebuild: Callable[[], None] | None = None
    timing: dict[str, float] = field(default_factory=dict)
    """``tick_s``, ``ping_every_s``, ``ping_timeout_s``, ``restart_timeout_s``, ``slow_start_s``
    where they differ from `Supervisor`'s defaults."""


class SupervisionTree:
    """Every supervisor of a tree in one process; for a cluster's tree, also its directory.

    Why one process: a Ray worker costs 5-7 ms of CPU per second whatever it does (its core
    worker's threads), so four supervisor actors and a directory actor cost an idle cluster
    ~25 ms/s (issue 10) for tables and loops that mostly sleep. Here each supervisor keeps its
    own loop thread, so a child whose ping hangs holds up its own supervisor only. A parent
    reaches its child supervisors in this process (`ChildProbe` through `_TreeProbe`): a ping is
    a method call; an escalation, a rebuild and a restart of a child supervisor are posted to
    one mailbox thread, asynchronous as between actors, so no supervisor runs another's code
    on its own loop or under its own lock. Children that are not supervisors (books, readers,
    gateways) are reached through the injected `ActorProbe` (Ray's, in a cluster).

    If the process dies, Ray starts it again from the same specs (``max_restarts=-1``): a
    supervisor holds nothing its children do not (its failure history starts anew, as a
    supervisor actor's did after a restart), and it finds its children running.
    """

    def __init__(
        self,
        specs: Sequence[SupervisorSpec],
        probe: ActorProbe,
        *,
        topology: bytes = b"",
        metrics: MetricsExporter | None = None,
        clock: Callable[[], float] = time.monotonic,
        start_loops: bool = True,
    ) -> None:
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"a supervision tree names each supervisor once: {names}")
        self._specs = {spec.name: spec for spec in specs}
        self._topology = topology
        self._metrics = None if metrics is None else _SharedExporter(metrics)
        self._clock = clock
        self._probe = _TreeProbe(self, probe)
        self._mailbox = ThreadPoolExecutor(max_workers=1, thread_name_prefix="supervision-mail")
        self._lock = threading.Lock()
        self._supervisors: dict[str, Supervisor | None] = {
            name: self._make(spec) for name, spec in self._specs.items()
        }
        """None: stopped for good by its parent (its children are not watched any more)."""
        if start_loops:
            for supervisor in self._supervisors.values():
                assert supervisor is not None
                supervisor.start()

    def _make(self, spec: SupervisorSpec) -> Supervisor:
        return Supervisor(
            spec.name, spec.children, probe=self._probe, strategy=spec.strategy,
            intensity=spec.intensity, parent=spec.parent, rebuild=spec.rebuild,
            clock=self._clock, start_loop=False, metrics=self._metrics, **spec.timing)

    def supervisor(self, name: str) -> Supervisor | None:
        """Return a supervisor of the tree (None if its parent stopped it); `LookupError` if
        the tree has none of that name."""
        if name not in self._specs:
            raise LookupError(f"no supervisor {name!r} in this tree ({list(self._specs)})")
        with self._lock:
            return self._supervisors[name]

    def post(self, action: Callable[..., Any], *args: Any) -> None:
        """Run ``action(*args)`` on the mailbox thread, in order, logging what it raises."""
        self._mailbox.submit(_logged, action, *args)

    def replace(self, name: str, restart: bool) -> None:
        """Stop a supervisor's loop; start a fresh one from its spec if ``restart`` (its
        children keep running and are watched anew), else leave it stopped for good."""
        with self._lock:
            old = self._supervisors[name]
            self._supervisors[name] = None
        if old is not None:
            old.stop()
        if restart:
            fresh = self._make(self._specs[name])
            with self._lock:
                self._supervisors[name] = fresh
            fresh.start()
        log.warning("supervision: %s %s", name, "restarted" if restart else "stopped for good")

    # ---------------------------------------------------------------- calls

    def ping(self) -> tuple[str, int]:
        """Answer a health check: (this process's incarnation, supervisors running)."""
        with self._lock:
            running = sum(supervisor is not None for supervisor in self._supervisors.values())
        return f"supervision:{id(self)}", running

    def pid(self) -> int:
        """Return this process's id (tests kill it for real)."""
        return os.getpid()

    def status(self, name: str) -> SupervisorStatusRow:
        """Return one supervisor's status (`Supervisor.status`; a stopped one says so)."""
        supervisor = self.supervisor(name)
        if supervisor is None:
            spec = self._specs[name]
            intensity = spec.intensity or RestartIntensity()
            return SupervisorStatusRow(
                name=name, state="stopped", strategy=str(spec.strategy),
                max_restarts=intensity.max_restarts, within_s=intensity.within_s,
                recent_failures=0, children=[], history=[])
        return supervisor.status()

    def statuses(self) -> list[SupervisorStatusRow]:
        """Return every supervisor's status, in the order of the specs (the root first)."""
        return [self.status(name) for name in self._specs]

    def topology(self) -> bytes:
        """Return the cluster's encoded topology (the directory's answer to drivers)."""
        if not self._topology:
            raise LookupError("this supervision tree holds no topology")
        return self._topology

    def stop(self) -> None:
        """Stop every loop and the mailbox (the children keep running)."""
        with self._lock:
            running = [supervisor for supervisor in self._supervisors.values() if supervisor]
        for supervisor in running:
            supervisor.stop()
        self._mailbox.shutdown(wait=False, cancel_futures=True)


class _TreeProbe:
    """The `ChildProbe` of a tree's supervisors: child supervisors in the tree's process, every
    other child through the tree's `ActorProbe`."""

    def __init__(self, tree: SupervisionTree, actors: ActorProbe) -> None:
        self.tree = tree
        self.actors = actors

    def _in_tree(self, name: str) -> bool:
        return name in self.tree._specs

    def ping(self, name: str, timeout_s: float) -> Ping:
        if not self._in_tree(name):
            return self.actors.ping(name, timeout_s)
        supervisor = self.tree.supervisor(name)
        if supervisor is None:
            return Ping(outcome=Outcome.DOWN, detail=f"{name} was stopped by its parent")
        incarnation, failures = supervisor.ping()
        return Ping(outcome=Outcome.ANSWERED, incarnation=incarnation, offset=failures)

    def alive(self, name: str) -> bool | None:
        if not self._in_tree(name):
            return self.actors.alive(name)
        return self.tree.supervisor(name) is not None

    def kill(self, name: str, *, restart: bool) -> None:
        if not self._in_tree(name):
            self.actors.kill(name, restart=restart)
            return
        self.tree.post(self.tree.replace, name, restart)

    def tell_escalated(self, parent: str, child: str, reason: str) -> None:
        supervisor = self.tree.supervisor(parent)  # LookupError: not in this tree
        if supervisor is None:
            log.error("supervision: %s escalated to %s, which its own parent stopped: nobody "
                      "decides for %s now (%s)", child, parent, child, reason)
            return
        self.tree.post(supervisor.on_child_escalated, child, reason)

    def tell_rebuild(self, child: str) -> None:
        supervisor = self.tree.supervisor(child)
        if supervisor is not None:
            self.tree.post(supervisor.rebuild)


class _SharedExporter:
    """One metrics exporter for every supervisor of a tree, each exporting from its own loop."""

    def __init__(self, exporter: MetricsExporter) -> None:
        self._exporter = exporter
        self._lock = threading.Lock()

    def export(self, reading: MeterReading) -> None:
        with self._lock:
            self._exporter.export(reading)


def _logged(action: Callable[..., Any], *args: Any) -> None:
    try:
        action(*args)
    except Exception:  # a message that fails must not stop the mailbox
        log.exception("supervision: %s failed", getattr(action, "__qualname__", action))
