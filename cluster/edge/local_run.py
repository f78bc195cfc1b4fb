"""A local run of raytrade (what `raytrade up` and `raytrade demo` start), stopped cleanly
whatever phase an interrupt arrives in.

Ray's start-up spawns its daemons (GCS, raylet, their agents) before it records them, and the
agents watch their parent and may outlive a shutdown: so signals are held while Ray starts,
every process below this one is recorded, and `LocalRun.close` stops the cluster, shuts Ray
down and ends any of those processes still running (by pid and start time, never a reused
pid), then removes the demo's temporary data dir.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from cluster.config import ClusterConfig, InstrumentRegistry

log = logging.getLogger("raytrade")


# ------------------------------------------------------------------------------ interrupts


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``signum`` says which (the exit status is 128 + signum)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def interrupts_deferred(*, reraise: bool = True) -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends (then raise `Interrupted` if ``reraise``).

    Ray's start-up spawns its processes before it records them: an exception in the middle of
    ``ray.init`` leaves them running where ``ray.shutdown`` cannot see them. A second signal
    inside the block raises at once, so an impatient user is never stuck.
    """
    pending: list[int] = []

    def hold(signum: int, _frame: FrameType | None) -> None:
        pending.append(signum)
        if reraise and len(pending) > 1:
            raise Interrupted(signum)

    previous = {signum: signal.signal(signum, hold) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if pending and reraise:
        raise Interrupted(pending[0])


# ------------------------------------------------------------------------------ processes


def _process_table() -> dict[int, tuple[int, int]]:
    """Return ``pid -> (parent pid, start time)`` of every process /proc shows (Linux)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it exited while we looked
            continue
        # the command name (in parentheses) may hold spaces: split after its closing one
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[19]))
    return table


def _descendants(root: int) -> dict[int, int]:
    """Return ``pid -> start time`` of every process below ``root`` (empty without /proc)."""
    if not Path("/proc/self/stat").exists():
        return {}
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found: dict[int, int] = {}
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        found[pid] = table[pid][1]
        stack.extend(children.get(pid, []))
    return found


def _alive(processes: dict[int, int]) -> dict[int, int]:
    """Return those of ``processes`` still running (same pid and start time: not a reuse)."""
    table = _process_table()
    return {pid: start for pid, start in processes.items()
            if pid in table and table[pid][1] == start}


def _reap(processes: dict[int, int], grace_s: float = 3.0) -> None:
    """Wait for Ray's processes to exit after ``ray.shutdown``; end any that outlive it.

    Ray stops its daemons, but the agents a raylet starts watch their parent and may linger
    (or miss its death if it was killed); a driver that started a private Ray owns them all.
    """
    deadline = time.monotonic() + grace_s
    for signum in (signal.SIGTERM, signal.SIGKILL):
        while (left := _alive(processes)) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)
        deadline = time.monotonic() + 2.0
    for pid in processes:  # collect our own children's exit status, so none stays a zombie
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


class LocalRun:
    """What ``up`` or ``demo`` started, so that `close` stops it whatever phase was reached."""

    def __init__(self, *, verbose: bool) -> None:
        self.verbose = verbose
        self.scratch: tempfile.TemporaryDirectory[str] | None = None
        self.ray_started = False
        self.ray_joined = False
        self.cluster: Any = None
        self.processes: dict[int, int] = {}

    def scratch_dir(self) -> str:
        """Make the demo's temporary data dir (removed by `close`)."""
        self.scratch = tempfile.TemporaryDirectory(prefix="raytrade-demo-")
        return self.scratch.name

    def start_ray(self, num_cpus: int, namespace: str) -> str:
        """Start the private local Ray; return its address."""
        from cluster.edge.wiring import start_ray

        with interrupts_deferred():
            self.ray_started = True  # first: if start-up fails halfway, close still stops Ray
            address = start_ray(num_cpus=num_cpus, namespace=namespace, quiet=not self.verbose)
            self.processes.update(_descendants(os.getpid()))
        return address

    def join_ray(self, address: str, namespace: str, timeout_s: float) -> str:
        """Join a running Ray (``up --address``); return its address. `close` leaves Ray up."""
        from cluster.edge.handles import join_ray, ray_address

        with interrupts_deferred():
            self.ray_joined = True
            join_ray(address, namespace, timeout_s=timeout_s, verbose=self.verbose)
        return ray_address()

    def detach(self) -> None:
        """Leave the started cluster running in Ray after `close` (its actors are detached)."""
        self.cluster = None

    def start_cluster(self, config: ClusterConfig, registry: InstrumentRegistry,
                      gateways: Sequence[Any] = (), front_ends: Any = None) -> Any:
        """Start the shards (and gateways, and the shards' front ends); `start_cluster` stops
        them itself if this fails."""
        from cluster.edge.wiring import start_cluster

        self.cluster = start_cluster(config, registry, gateways, front_ends=front_ends)
        return self.cluster

    def close(self) -> None:
        """Stop the cluster, Ray and its processes, and remove the demo's temporary data dir."""
        with interrupts_deferred(reraise=False):  # a second Ctrl-C must not cut this short
            if self.cluster is not None:
                try:
                    self.cluster.stop()
                except Exception as error:  # stopping is best effort: Ray's shutdown follows
                    log.warning("stopping the cluster: %s", error)
            if self.ray_started:
                from cluster.edge.handles import stop_ray

                self.processes.update(_descendants(os.getpid()))
                try:
                    stop_ray()
                except Exception as error:
                    log.warning("stopping Ray: %s", error)
                _reap(self.processes)
            if self.ray_joined and not self.ray_started:
                from cluster.edge.handles import stop_ray

                try:
                    stop_ray()  # a joined driver only leaves: the cluster's Ray keeps running
                except Exception as error:
                    log.warning("leaving Ray: %s", error)
            if self.scratch is not None:
                self.scratch.cleanup()
