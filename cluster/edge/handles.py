"""Every Ray call raytrade makes: start-up, actor names, lookup, typed handles, Ray's errors.

All Ray API calls are made here (Ray Serve's rule for its replica wrapper), so the rest of the
system is plain Python tested without a cluster, and one place decides what a Ray failure means:

* a call to a shard's actor (book, risk, positions) that fails because the actor died, is
  restarting, is not running or took too long raises `ShardUnavailableError` (retryable with
  the same client order ids); a call to any other raytrade actor raises
  `ActorUnavailableError`; an error the actor raised itself that is one of raytrade's own
  (`RaytradeError`) is re-raised as it is;
* connecting to a Ray that does not answer raises `ClusterUnreachableError`; a Ray without
  raytrade's directory (its supervision tree) in the namespace raises `ClusterNotFoundError`;
* a supervisor's health check never raises: `RayProbe.ping` turns every outcome into a `Ping`.

The module is long (~730 lines) on purpose: it is the whole Ray edge, and one file is what
lets "only this module calls Ray" be checked (an import-linter contract) and read at once.

A typed handle per actor kind (`BookHandle`, `ReaderHandle`, `SupervisorHandle`,
`GatewayHandle`, `DirectoryHandle`) names its actor and looks it up lazily, once, and again
after a failure (a shard its supervisor rebuilt is a new actor under the old name). Handles
hold names, not Ray handles, so they pickle into other actors. Each method returns a `Call`:
``call.result(timeout_s)`` blocks, ``await call`` suits an event loop, and nothing else in the
system sees an ``ObjectRef``.

Ray reads ``RAY_AUTH_MODE`` when it is imported: a driver that connects to a running cluster by
address with token authentication (on by default in Ray 2.60) needs ``token`` set by then, or it
retries for 20 s and fails. Importing this module sets it (unless the environment says
otherwise) before it imports Ray; import this module before anything that imports ``ray``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

if "ray" not in sys.modules:
    # (if something imported ray first, setting it now would make this driver and the processes
    # it starts disagree about authentication: leave it, and `join_ray` warns)
    os.environ.setdefault("RAY_AUTH_MODE", "token")

import ray
from ray.core.generated.gcs_pb2 import ActorTableData  # type: ignore[attr-defined]
from ray.exceptions import (
    ActorUnavailableError as RayActorUnavailableError,
)
from ray.exceptions import (
    GetTimeoutError,
    RayActorError,
    RayError,
    RayTaskError,
)

from actors.core.positions import Position
from actors.core.risk import AccountExposure
from actors.core.supervision import Outcome, Ping
from protocols.errors import (
    ActorUnavailableError,
    ClusterNotFoundError,
    ClusterUnreachableError,
    RaytradeError,
    ShardUnavailableError,
)
from protocols.rows import OrderRow, ShardStatusRow, SupervisorStatusRow

log = logging.getLogger(__name__)

T = TypeVar("T")

NAMESPACE = "raytrade"
"""The default Ray namespace of a raytrade cluster."""
ROOT_SUPERVISOR = "supervisor"
"""The root supervisor, and the actor that runs the cluster's whole supervision tree and
answers as its directory (`actors.supervisor.SupervisionTree`)."""
GATEWAY_SUPERVISOR = "supervisor-gateways"
"""The gateways' supervisor: in the cluster's tree, or, for gateways started over a running
cluster (`cluster.edge.wiring.start_gateways`), the actor running a tree of its own."""


def book_name(shard: int) -> str:
    """Return the actor name of a shard's book actor."""
    return f"book-{shard}"


def reader_name(shard: int) -> str:
    """Return the actor name of a shard's read models (risk and positions)."""
    return f"reader-{shard}"


def shard_supervisor_name(shard: int) -> str:
    """Return the name of a shard's supervisor (in the cluster's tree)."""
    return f"supervisor-shard-{shard}"


def gateway_name(index: int) -> str:
    """Return the actor name of the ``index``-th gateway."""
    return f"gateway-{index}"


# -------------------------------------------------------------------------------- Ray itself


def start_local_ray(*, num_cpus: int, namespace: str, verbose: bool = False) -> str:
    """Start a private local Ray (no dashboard) for this process; return its address.

    Every port of this Ray listens on loopback only (`_loopback_only`), token authentication
    stays on. Does nothing but return the address if this process already runs or joined a
    Ray. Ray's temporary files go to the system temp folder (or ``RAY_TMPDIR``), never the
    repository.
    """
    if not ray.is_initialized():
        _loopback_only()
        for name, value in LOG_MONITOR_ENV.items():  # read by the log monitor ray.init starts
            os.environ.setdefault(name, value)
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            namespace=namespace,
            log_to_driver=verbose,
            logging_level=logging.INFO if verbose else logging.WARNING,
            _temp_dir=os.environ.get("RAY_TMPDIR"),
            _system_config=dict(RAY_SYSTEM_CONFIG),
        )
    return ray_address()


RAY_SYSTEM_CONFIG = {
    # per-handler timing statistics of every Ray event loop (for Ray's debug_state.txt dumps
    # and its event-loop metrics), kept on each wakeup: every Python worker wakes ~100 times a
    # second (Ray's fixed 10 ms signal check). Off: idle cluster 155 -> 128 ms of CPU per
    # second (median of 4 alternating runs of `bench_cpu.py --idle-only`), every role lower.
    "event_stats": False,
    # every process flushes task state events (for `ray list tasks` and the dashboard, which
    # raytrade does not start) to the GCS once a second; every 10 s still serves those
    # commands, 10 s late. GCS 7.7 -> 5.3 ms/s, idle cluster 122 -> 116 ms/s.
    "task_events_report_interval_ms": 10_000,
    # a call's arguments up to this size travel inside the call; larger ones go through the
    # object store (a plasma object per push, the raylet involved for each). A book's pushes
    # to its reader (50 ms of events) and the Python client's 1000-order batches are 100 KB-1 MB
    # at load: with Ray's 100 KB the raylet cost 3.5-4.3 us per batched order; with 1 MiB 0.5-1.7
    # (bench_cpu --quick, alternated, 2 runs each: batched gRPC 43.7/42.8 -> 38.5/39.5 us per
    # order, the Python client 36.0/42.5 -> 28.5/34.7). Pushes stay bounded (max_in_flight 2,
    # max_pending_bytes), so the bytes held outside the object store are too.
    "max_direct_call_object_size": 1 << 20,
}
"""Ray settings raytrade starts a local Ray with, and the ones its deploy files give a Ray
cluster's head (issue 10: the idle cost and the per-order cost). None of them is read by
failure detection: actor deaths, restarts and the GCS's health checks of raylets are as
Ray's defaults have them (the deploy files shorten the health checks, tests/unit/test_deploy)."""

LOG_MONITOR_ENV = {
    # Ray's log monitor (it streams workers' output to drivers started with log_to_driver, and
    # runs whatever ray.init is told) globs the log folder ten times a second while the folder
    # holds fewer than this many files; at 0 it globs every LOG_NAME_UPDATE_INTERVAL_S
    "RAY_LOG_MONITOR_MANY_FILES_THRESHOLD": "0",
    # so a new worker's log file is found up to 5 s after it appears (read from its start: no
    # line is lost, a verbose driver sees it later). Log monitor 12 -> 5-6 ms/s.
    "LOG_NAME_UPDATE_INTERVAL_S": "5",
}
"""Environment of Ray's log monitor (it inherits this process's), unless already set."""


LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's switch that, set to ``0``, makes a node take 127.0.0.1 as its IP (as on macOS)."""


def _loopback_only() -> None:
    # Ray's servers (GCS, raylet, object manager, workers, runtime-env agent, the autoscaler
    # monitor's metrics) bind 127.0.0.1 only when the node's IP is 127.0.0.1, else 0.0.0.0 or
    # ::; and `ray.init(_node_ip_address="127.0.0.1")` is "resolved" back to the machine's
    # address. Only Ray's no-cluster switch picks loopback. Ray read it when it was imported,
    # so set it both for the processes ray.init starts and for this one (a private constant:
    # tests/integration/test_ray_binding.py fails if a Ray upgrade moves it).
    from ray._private import ray_constants

    if not hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):
        log.warning("this Ray has no ENABLE_RAY_CLUSTER switch: its ports may listen on every "
                    "interface (see docs/THREAT_MODEL.md)")
    os.environ[LOOPBACK_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def prepare_local_nodes() -> None:
    """Prepare this process to start Ray nodes itself (``ray.cluster_utils.Cluster``, as the
    multi-node tests and benchmarks do): every port on loopback, and a token on disk.

    ``ray.init`` makes the token when it starts a local Ray; a node started directly does
    not, and without one its GCS never comes up (it waits for a token file no one writes).
    Ray's own set-up makes it, once per machine (``~/.ray/auth_token``).
    """
    _loopback_only()
    from ray._private.authentication.authentication_token_setup import (
        ensure_token_if_auth_enabled,
    )

    ensure_token_if_auth_enabled()


class RayMetrics:
    """Export a `actors.metering.Meter`'s readings through Ray's own metrics
    (``ray.util.metrics``): each node's agent serves them to Prometheus, names prefixed
    ``ray_`` (`protocols.metrics`). Picklable (the wiring hands one to each actor); the Ray
    metric objects are made in the actor's process on first use.
    """

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        """Every series also carries ``namespace``: one Ray may run several raytrade
        clusters (staging beside production, or tests)."""
        self._metrics: dict[str, tuple[Any, tuple[str, ...]]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"namespace": self.namespace}

    def __setstate__(self, state: dict[str, Any]) -> None:
        RayMetrics.__init__(self, state["namespace"])

    def _metric(self, name: str) -> tuple[Any, tuple[str, ...]]:
        """Return the Ray metric for ``name`` and its label names (made on first use)."""
        entry = self._metrics.get(name)
        if entry is None:
            from ray.util import metrics as ray_metrics

            from protocols.metrics import BY_NAME

            spec = BY_NAME[name]
            keys = (*spec.labels, "namespace")
            metric: Any
            if spec.kind == "counter":
                metric = ray_metrics.Counter(name, spec.help, tag_keys=keys)
            elif spec.kind == "gauge":
                metric = ray_metrics.Gauge(name, spec.help, tag_keys=keys)
            else:
                metric = ray_metrics.Histogram(name, spec.help, boundaries=list(spec.buckets),
                                               tag_keys=keys)
            metric.set_default_tags({"namespace": self.namespace})
            entry = self._metrics[name] = (metric, spec.labels)
        return entry

    def export(self, reading: Any) -> None:
        """Record a `MeterReading` (errors are logged: metrics never fail the actor)."""
        try:
            for name, series in reading.counters.items():
                metric, keys = self._metric(name)
                for labels, value in series.items():
                    tags = dict(zip(keys, labels, strict=True))
                    if value:
                        metric.inc(value, tags=tags)
                    else:
                        # a series created at 0 (Counter.inc refuses 0; _record, which inc
                        # calls, is private): rate() and increase() then see its first count
                        metric._record(0.0, tags=tags)
            for name, series in reading.gauges.items():
                metric, keys = self._metric(name)
                for labels, value in series.items():
                    metric.set(value, tags=dict(zip(keys, labels, strict=True)))
            for name, observed in reading.observations.items():
                metric, keys = self._metric(name)
                for labels, values in observed.items():
                    tags = dict(zip(keys, labels, strict=True))
                    for value in values:
                        metric.observe(value, tags=tags)
        except Exception:
            log.exception("exporting metrics through Ray failed")


def metrics_targets() -> list[str]:
    """Return ``host:port`` of every live Ray node's metrics export (for Prometheus)."""
    return [f"{node['NodeManagerAddress']}:{node['MetricsExportPort']}"
            for node in ray.nodes()  # type: ignore[no-untyped-call]
            if node.get("Alive") and node.get("MetricsExportPort")]


def _is_loopback(address: str) -> bool:
    host = address.rpartition(":")[0].strip("[]")
    return host == "localhost" or host.startswith("127.") or host == "::1"


def join_ray(address: str, namespace: str, *, timeout_s: float = 10.0,
             verbose: bool = False) -> None:
    """Join a running Ray as a driver; raise `ClusterUnreachableError` past ``timeout_s``.

    ``address`` is ``host:port`` of Ray's GCS (what `raytrade up` prints) or ``"auto"`` (the
    Ray started last on this machine).
    """
    if ray.is_initialized():
        return
    if os.environ.get("RAY_AUTH_MODE") != "token":
        log.warning("RAY_AUTH_MODE is %r: joining a Ray with token authentication will fail",
                    os.environ.get("RAY_AUTH_MODE"))
    where = "on this machine" if address == "auto" else f"at {address}"
    resolved = _bootstrap_address(address)
    if _is_loopback(resolved):
        # a driver that joins a loopback-only Ray must take loopback as its own IP too: else
        # Ray "resolves" 127.0.0.1 to the machine's address, where nothing listens
        _loopback_only()
    if resolved != "auto":
        # Ray retries an address where nothing listens for minutes, warning every 5 s: a plain
        # TCP connect tells at once whether anything is there
        _check_listening(resolved, min(timeout_s, 5.0))
    started = time.monotonic()
    try:
        ray.init(
            address=address,
            namespace=namespace,
            log_to_driver=verbose,
            logging_level=logging.INFO if verbose else logging.WARNING,
        )
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise ClusterUnreachableError(
            f"no Ray answered {where} within {time.monotonic() - started:.0f} s "
            f"({_first_line(error)})"
        ) from error


def _bootstrap_address(address: str) -> str:
    if address != "auto":
        return address
    # the address Ray itself would take for "auto" (RAY_ADDRESS, else the last Ray started here)
    from ray._private import services

    try:
        found = services.get_ray_address_from_environment("auto", None)  # as ray.init looks
    except Exception:  # no Ray found: ray.init says so, with its own words
        return address
    return str(found or address)


def _check_listening(address: str, timeout_s: float) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterUnreachableError(
            f"{address!r} is not a Ray address: give host:port (as `raytrade up` prints it)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as error:
        raise ClusterUnreachableError(
            f"no Ray answers at {address}: {error.strerror or error} (is `raytrade up` "
            f"running there, and is the port reachable?)"
        ) from error


def ray_address() -> str:
    """Return the address of the Ray this process runs or joined (``host:port`` of its GCS)."""
    address: str = ray.get_runtime_context().gcs_address
    return address


def stop_ray() -> None:
    """Leave (or, if this process started it, stop) this process's Ray."""
    ray.shutdown()


# -------------------------------------------------------------------------------- actors


def spawn(
    actor_class: type,
    name: str,
    namespace: str,
    *args: Any,
    num_cpus: float = 0.0,
    placement: tuple[str, float, bool] = ("", 0.0, False),
    **kwargs: Any,
) -> None:
    """Start a named, detached actor that Ray restarts when its process dies.

    ``max_restarts=-1``: Ray brings a dead process back by running the constructor again (every
    raytrade actor recovers in its constructor). ``max_task_retries=0``: a retried call could
    apply a batch twice or out of order; retrying is the caller's job, made safe by client
    order ids. ``placement`` is ``(custom resource, amount, spread)``: only nodes that offer
    the resource may run the actor (also after a restart), and ``spread`` asks Ray to put
    such actors on different nodes. Returns nothing: reach the actor through its typed
    handle, by name.
    """
    resource, amount, spread = placement
    ray.remote(actor_class).options(
        name=name,
        namespace=namespace,
        lifetime="detached",
        max_restarts=-1,
        max_task_retries=0,
        num_cpus=num_cpus,
        resources={resource: amount} if resource else None,
        scheduling_strategy="SPREAD" if spread else "DEFAULT",
    ).remote(*args, **kwargs)


def kill(name: str, namespace: str, *, restart: bool = False) -> bool:
    """Kill a named actor's process (Ray restarts it if ``restart``); False if none runs."""
    try:
        handle = ray.get_actor(name, namespace=namespace)
    except ValueError:
        return False
    ray.kill(handle, no_restart=not restart)
    return True


def raw_handle(name: str, namespace: str) -> Any:
    """Return Ray's own handle of a named actor (tests and benchmarks); raise `LookupError`."""
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError as error:
        raise LookupError(f"no actor {name!r} in namespace {namespace!r}") from error


class Call(Generic[T]):
    """A call to an actor, in flight: ``result()`` waits for it, ``await call`` too."""

    __slots__ = ("_convert", "_method", "_owner", "_reference")

    def __init__(self, owner: _Actor, method: str, reference: Any,
                 convert: Callable[[Any], T] | None = None) -> None:
        self._owner = owner
        self._method = method
        self._reference = reference
        self._convert = convert

    def result(self, timeout_s: float | None = None) -> T:
        """Wait for the answer (``timeout_s``, else the handle's default); raise as the module
        docstring says."""
        timeout = timeout_s if timeout_s is not None else self._owner.timeout_s
        try:
            value = ray.get(self._reference, timeout=timeout)
        except GetTimeoutError as error:
            raise self._owner.unavailable(
                f"{self._method} took longer than {timeout} s", forget=True) from error
        except RayError as error:
            raise self._owner.translate(self._method, error) from error
        return self._convert(value) if self._convert is not None else value

    async def wait(self, timeout_s: float | None = None) -> T:
        """Await the answer without blocking the event loop (same errors as `result`)."""
        timeout = timeout_s if timeout_s is not None else self._owner.timeout_s
        try:
            # a concurrent future costs less CPU than awaiting the reference itself (measured)
            value = await asyncio.wait_for(asyncio.wrap_future(self._reference.future()),
                                           timeout)
        except TimeoutError as error:
            raise self._owner.unavailable(
                f"{self._method} took longer than {timeout} s", forget=True) from error
        except RayError as error:
            raise self._owner.translate(self._method, error) from error
        return self._convert(value) if self._convert is not None else value

    def __await__(self) -> Generator[Any, None, T]:
        return self.wait().__await__()

    def done(self) -> bool:
        """Return whether the answer (or the failure) is in."""
        ready, _ = ray.wait([self._reference], timeout=0)
        return bool(ready)


def wait_any(calls: Sequence[Call[Any]], timeout_s: float) -> None:
    """Block until one of ``calls`` is done, or ``timeout_s`` passed."""
    if calls:
        ray.wait([call._reference for call in calls], num_returns=1, timeout=timeout_s)


class _Actor:
    """A raytrade actor reached by name; the base of the typed handles."""

    def __init__(self, name: str, namespace: str, *, timeout_s: float | None = None) -> None:
        self.name = name
        self.namespace = namespace
        self.timeout_s = timeout_s
        """How long `Call.result` waits by default (None: as long as it takes)."""
        self._handle: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "namespace": self.namespace, "timeout_s": self.timeout_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["name"], state["namespace"], timeout_s=state["timeout_s"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, namespace={self.namespace!r})"

    def unavailable(self, reason: str, *, forget: bool = False) -> RaytradeError:
        """Return the exception for "this actor did not answer" (``forget``: look it up again)."""
        if forget:
            self._handle = None
        return ActorUnavailableError(f"{self.name} is unavailable: {reason}")

    def translate(self, method: str, error: RayError) -> RaytradeError:
        """Map a Ray error of ``method`` to raytrade's own (see the module docstring)."""
        if isinstance(error, RayTaskError) and not isinstance(error, RayActorError):
            cause = getattr(error, "cause", None)
            if isinstance(cause, RaytradeError):
                return cause
        return self.unavailable(f"{method} failed: {_summary(error)}", forget=True)

    def send(self, method: str, *args: Any,
             convert: Callable[[Any], T] | None = None) -> Call[T]:
        """Start ``method(*args)`` on the actor; return the call in flight."""
        handle = self._handle
        if handle is None:
            try:
                handle = self._handle = ray.get_actor(self.name, namespace=self.namespace)
            except ValueError as error:
                raise self.unavailable("not running") from error
        try:
            reference = getattr(handle, method).remote(*args)
        except RayError as error:
            raise self.translate(method, error) from error
        return Call(self, method, reference, convert)

    def alive(self) -> bool | None:
        """Tell, without a call, whether Ray holds the actor alive (see `_local_alive`)."""
        return _local_alive(self._handle)

    def ping(self) -> Call[tuple[str, int]]:
        """Ask for the actor's incarnation and position (every raytrade actor answers)."""
        return self.send("ping", convert=lambda answer: (str(answer[0]), int(answer[1])))

    def status(self) -> Call[Any]:
        """Ask for the actor's status row."""
        return self.send("status")

    def pid(self) -> Call[int]:
        """Ask for the actor's process id (tests kill it for real)."""
        return self.send("pid")


class _ShardActor(_Actor):
    """An actor of one shard: its failures are `ShardUnavailableError`."""

    def __init__(self, name: str, shard: int, namespace: str, *,
                 timeout_s: float | None = None) -> None:
        super().__init__(name, namespace, timeout_s=timeout_s)
        self.shard = shard

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "shard": self.shard}

    def __setstate__(self, state: dict[str, Any]) -> None:
        _ShardActor.__init__(self, state["name"], state["shard"], state["namespace"],
                             timeout_s=state["timeout_s"])

    def unavailable(self, reason: str, *, forget: bool = False) -> RaytradeError:
        if forget:
            self._handle = None
        return ShardUnavailableError(self.shard, f"{self.name} {reason}")


def _levels(answer: Any) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    bids, asks = answer
    return [tuple(level) for level in bids], [tuple(level) for level in asks]


class BookHandle(_ShardActor):
    """A shard's book actor (`actors.book_actor.BookActor`): the command path and its queries."""

    def __init__(self, shard: int, namespace: str, *, timeout_s: float | None = None) -> None:
        super().__init__(book_name(shard), shard, namespace, timeout_s=timeout_s)

    def apply_batch(self, payload: bytes) -> Call[bytes]:
        """Apply an encoded command batch; the answer is its encoded events."""
        return self.send("apply_batch", payload)

    def apply_batch_with_ends(self, payload: bytes, origin: str = "",
                              traceparents: Sequence[str] = ()) -> Call[bytes]:
        """Apply an encoded batch; the answer also says where each command's events end.

        ``origin``: the caller's reader name (a gateway's), so the book does not push the
        batch's events back to the caller, which has them in this answer. ``traceparents``:
        the W3C trace contexts of the requests in the batch, for the book's span links
        (empty, and not sent at all, when the caller does not trace).
        """
        if traceparents:
            return self.send("apply_batch_with_ends", payload, origin, list(traceparents))
        return self.send("apply_batch_with_ends", payload, origin)

    def l1(self, symbol: str) -> Call[Any]:
        """Ask for a symbol's best bid and ask."""
        return self.send("l1", symbol)

    def l2(self, symbol: str, depth: int) -> Call[
        tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]
    ]:
        """Ask for up to ``depth`` levels per side as ``(price, quantity, order_count)``."""
        return self.send("l2", symbol, depth, convert=_levels)

    def order(self, order_id: int) -> Call[OrderRow | None]:
        """Ask for an open order's row (None if it is not open)."""
        return self.send("order", order_id)

    def open_orders(self, account: str, symbol: str = "") -> Call[list[OrderRow]]:
        """Ask for an account's open orders in this shard (in one symbol, or all)."""
        return self.send("open_orders", account, symbol)

    def status(self) -> Call[ShardStatusRow]:
        """Ask for the shard's counters and position in its sequence."""
        return self.send("status")

    def state_hashes(self) -> Call[dict[str, str]]:
        """Ask for the hashes of the books, the engine and the risk state."""
        return self.send("state_hashes")

    def snapshot(self) -> Call[int]:
        """Have the shard write a snapshot now."""
        return self.send("snapshot")

    def add_reader(self, name: str, reader: Any) -> Call[None]:
        """Have the book actor publish its events to ``reader`` (a `Reader`) from now on."""
        return self.send("add_reader", name, reader)


class ReaderHandle(_ShardActor):
    """A shard's read models, risk and positions (`actors.projections.ShardReader`)."""

    def __init__(self, shard: int, namespace: str, *, timeout_s: float | None = None) -> None:
        super().__init__(reader_name(shard), shard, namespace, timeout_s=timeout_s)

    def __setstate__(self, state: dict[str, Any]) -> None:
        ReaderHandle.__init__(self, state["shard"], state["namespace"],
                              timeout_s=state["timeout_s"])

    def push(self, batches: Sequence[tuple[int, int, bytes]]) -> Call[int]:
        """Hand the read model published event batches (a `Reader`)."""
        return self.send("on_events", list(batches))

    def offset(self) -> Call[int]:
        """Ask for the next sequence number the read model expects."""
        return self.send("position")

    def positions(self, account: str) -> Call[list[Position]]:
        """Ask the position model for an account's positions."""
        return self.send("positions", account)

    def all_positions(self) -> Call[list[Position]]:
        """Ask the position model for every account's positions."""
        return self.send("all_positions")

    def exposure(self, account: str) -> Call[AccountExposure]:
        """Ask the risk model for an account's exposure."""
        return self.send("exposure", account)

    def state_hashes(self) -> Call[dict[str, str]]:
        """Ask for the hash of each read model (``"risk"``, ``"positions"``)."""
        return self.send("state_hashes")


class SupervisorHandle(_Actor):
    """A supervision tree's process (`actors.supervisor.SupervisionTree`), named after its
    root: the supervisors in it answer through it."""

    def supervisor_status(self, name: str) -> Call[SupervisorStatusRow]:
        """Ask for one supervisor's state, children and restart history."""
        return self.send("status", name)

    def statuses(self) -> Call[list[SupervisorStatusRow]]:
        """Ask for every supervisor's status, the root first."""
        return self.send("statuses")


class GatewayHandle(_Actor):
    """A gateway actor (`actors.gateway_actor.GatewayActor`)."""

    def ready(self) -> Call[int]:
        """Wait until the gateway serves; the answer is its port."""
        return self.send("ready", convert=int)

    def stop(self, grace_s: float | None = None) -> Call[None]:
        """Stop serving (the actor stays)."""
        return self.send("stop", grace_s)


class GatewayFeed:
    """What a book actor publishes to for one gateway: the gateway's feed of one shard.

    A `Reader` (see `cluster.edge.publish`); picklable, it names the gateway. It carries the
    events of every batch but the gateway's own (those come back in the replies).
    """

    def __init__(self, gateway: str, shard: int, namespace: str) -> None:
        self.gateway = GatewayHandle(gateway, namespace)
        self.shard = shard

    def push(self, batches: Sequence[tuple[int, int, bytes]]) -> Call[int]:
        """Hand the gateway a shard's published event batches."""
        return self.gateway.send("on_shard_events", self.shard, list(batches))


class GatewayFeeds:
    """Make a gateway's `GatewayFeed` per shard (injected into `GatewayActor`; picklable)."""

    def __init__(self, gateway: str, namespace: str) -> None:
        self.gateway = gateway
        self.namespace = namespace

    def __call__(self, shard: int) -> GatewayFeed:
        return GatewayFeed(self.gateway, shard, self.namespace)


class DirectoryHandle(_Actor):
    """The cluster's directory: its topology, held by the supervision tree's process."""

    def __init__(self, namespace: str, *, timeout_s: float | None = 10.0) -> None:
        super().__init__(ROOT_SUPERVISOR, namespace, timeout_s=timeout_s)

    def __setstate__(self, state: dict[str, Any]) -> None:
        DirectoryHandle.__init__(self, state["namespace"], timeout_s=state["timeout_s"])

    def topology(self) -> bytes:
        """Return the encoded topology; raise `ClusterNotFoundError` if no cluster runs here."""
        try:
            payload: bytes = self.send("topology").result()
        except ActorUnavailableError as error:
            raise ClusterNotFoundError(
                f"no raytrade cluster runs in namespace {self.namespace!r} of the Ray at "
                f"{ray_address()} (start one with `raytrade up`, or pass --namespace)"
            ) from error
        return payload


class AgentHandle(_Actor):
    """A group of simulated traders (`cluster.research.agents.AgentGroup`) in a simulation."""

    def step(self, market: bytes, events: bytes) -> Call[bytes]:
        """Hand the agents the encoded market and their encoded events of the last step; the
        answer is their encoded commands, not yet stamped with the step's time."""
        return self.send("step", market, events)


# -------------------------------------------------------------------------------- supervision


class RayProbe:
    """A supervisor's view of its children through Ray (an `actors.core.supervision.ActorProbe`).

    Handles are looked up once per child and again only after a failure. `alive` reads the
    state this process's Ray core worker keeps for every actor it holds a handle to: Ray's
    control store pushes each change (alive, restarting, dead) to it, so reading it costs no
    call, and an idle tree pings a child only every ``ping_every_s`` of its supervisor.
    Picklable: it holds the namespace only.
    """

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._handles: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"namespace": self.namespace}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["namespace"])  # type: ignore[misc]

    def _handle(self, name: str) -> Any:
        handle = self._handles.get(name)
        if handle is None:
            handle = self._handles[name] = ray.get_actor(name, namespace=self.namespace)
        return handle

    def ping(self, name: str, timeout_s: float) -> Ping:
        """Ping a child; never raise (every failure is an outcome)."""
        try:
            handle = self._handle(name)
        except ValueError:
            return Ping(outcome=Outcome.DOWN, detail=f"{name} is not running")
        # Ray's restart count is read after the answer: read before, a death in between would
        # show a new incarnation with the old count, and the next tick would count it twice
        try:
            incarnation, offset = ray.get(handle.ping.remote(), timeout=timeout_s)
        except GetTimeoutError:
            return Ping(outcome=Outcome.TIMEOUT, restarts=_restart_count(handle),
                        detail=f"no answer within {timeout_s} s")
        except (RayActorError, RayActorUnavailableError) as error:
            self._handles.pop(name, None)
            return Ping(outcome=Outcome.DOWN, restarts=_restart_count(handle),
                        detail=_summary(error))
        except RayTaskError as error:  # it answered, with an exception: alive but failing
            return Ping(outcome=Outcome.FAILING, restarts=_restart_count(handle),
                        detail=_summary(error))
        except Exception as error:  # anything else Ray raises: treat as down, look up again
            self._handles.pop(name, None)
            return Ping(outcome=Outcome.DOWN, restarts=_restart_count(handle),
                        detail=f"{type(error).__name__}: {_first_line(error)}")
        return Ping(outcome=Outcome.ANSWERED, incarnation=str(incarnation), offset=int(offset),
                    restarts=_restart_count(handle))

    def alive(self, name: str) -> bool | None:
        """Tell whether Ray holds the child alive, from this process's own copy of the actor's
        state (no call); None before the first ping through the current handle, since Ray
        tracks an actor's state for a handle only from its first call."""
        return _local_alive(self._handles.get(name))

    def kill(self, name: str, *, restart: bool) -> None:
        """Kill a child's process (Ray restarts it if ``restart``); no-op if none runs."""
        self._handles.pop(name, None)
        kill(name, self.namespace, restart=restart)


_ALIVE = ActorTableData.ALIVE
_NOT_ALIVE = frozenset({ActorTableData.RESTARTING, ActorTableData.DEAD})


def _local_alive(handle: Any) -> bool | None:
    """Tell whether Ray holds an actor alive, from this process's copy of its state (None:
    unknown).

    Ray's control store pushes every state change of an actor (alive, restarting, dead) to
    each process that holds a handle and has called through it, so reading it costs no call:
    a death shows within milliseconds. A private API (`ActorHandle._get_local_state`); where
    it fails the answer is None, and callers ping as they would without it.
    """
    if handle is None:
        return None
    try:
        state = handle._get_local_state()
    except Exception:
        return None
    if state == _ALIVE:
        return True
    return False if state in _NOT_ALIVE else None


class ActorLocation(NamedTuple):
    """Where Ray runs a named actor now (from the GCS's actor table)."""

    node_id: str
    node_ip: str
    pid: int
    state: str
    """ALIVE, RESTARTING, DEAD, ... as Ray names it."""
    restarts: int


def locate(name: str, namespace: str) -> ActorLocation | None:
    """Return where a named actor runs, or None if there is none (or Ray's table is unreadable).

    The actor table is a private Ray API (`ray._private.state`), as for `_restart_count`; the
    public state API needs the dashboard, which raytrade does not start.
    """
    try:
        handle = ray.get_actor(name, namespace=namespace)
        from ray._private import state

        info = state.actors(handle._actor_id.hex())
        address = info.get("Address") or {}
        return ActorLocation(str(address.get("NodeID", "")), str(address.get("IPAddress", "")),
                             int(info.get("Pid") or 0), str(info.get("State", "")),
                             int(info.get("NumRestarts") or 0))
    except Exception:
        return None


def _restart_count(handle: Any) -> int | None:
    """Return how often Ray restarted the actor, from the GCS's actor table (None if unknown).

    Ray's public state API needs the dashboard, which raytrade does not start; the actor table
    answers in ~0.5 ms. It counts restarts a ping could miss (several deaths between two ticks).
    """
    try:
        from ray._private import state

        info = state.actors(handle._actor_id.hex())
        return int(info["NumRestarts"])
    except Exception:  # a private API: without it, the supervisor counts incarnations
        return None


# -------------------------------------------------------------------------------- helpers


def wait_all(calls: Sequence[Call[Any]], timeout_s: float | None = None) -> list[Any]:
    """Wait for every call; return their answers in order."""
    return [call.result(timeout_s) for call in calls]


def map_tasks(function: Callable[..., T], arguments: Sequence[Any], *, shared: Any = None,
              num_cpus: float = 1.0, timeout_s: float | None = None) -> list[T]:
    """Run ``function(argument)`` for every argument as parallel Ray tasks; return the results
    in order.

    ``function`` must be a module-level function (Ray imports it by name in its workers), its
    arguments and results picklable, and it should be pure: Ray runs a task again if its
    worker dies. ``shared`` (unless None) goes into Ray's object store once and every task is
    called as ``function(shared, argument)``: a large input is copied to each node once,
    not pickled into every task. Without a Ray in this process (none started or joined) the
    calls run here, one after the other, so callers are tested without a cluster.

    Raise what ``function`` raised (the original exception, chained from Ray's error that
    carries the remote traceback); `ClusterError` if a task's worker or node died for good, or
    the tasks did not all finish within ``timeout_s``. Then the tasks still running a second
    later are cancelled: Ray interrupts a task between Python bytecodes, so one inside a long C
    call (a ``time.sleep``) holds its CPU until the call returns.
    """
    from protocols.errors import ClusterError  # (only this helper needs it)

    prefix = () if shared is None else (shared,)
    if not ray.is_initialized():
        return [function(*prefix, argument) for argument in arguments]
    task = ray.remote(num_cpus=num_cpus)(function)
    if prefix:
        prefix = (ray.put(shared),)  # a reference as a task argument reaches it as the value
    references = [task.remote(*prefix, argument) for argument in arguments]
    name = getattr(function, "__qualname__", repr(function))
    try:
        results: list[T] = ray.get(references, timeout=timeout_s)
    except RayError as error:
        _cancel_unfinished(references)  # the others' results are not wanted
        if isinstance(error, GetTimeoutError):
            raise ClusterError(f"{len(references)} {name} tasks did not finish within "
                               f"{timeout_s} s") from error
        cause = getattr(error, "cause", None)
        if (isinstance(error, RayTaskError) and isinstance(cause, Exception)
                and not isinstance(cause, RayError)):
            raise cause from error
        # the worker or its node died past Ray's retries, or Ray could not pass an argument
        raise ClusterError(f"a {name} task failed: {_summary(error)}") from error
    return results


def _cancel_unfinished(references: Sequence[Any], grace_s: float = 1.0) -> None:
    """Cancel the tasks of ``references`` that are still running after ``grace_s``.

    Not the ones about to finish: Ray 2.60 aborts the calling process (``Check failed: it !=
    submissible_tasks_.end() Tried to complete task that was not pending``) when a cancel
    races a task's completing reply (the race ray-project/ray#54798 fixed for retries); CI
    met it cancelling a task that was ending within milliseconds of a sibling's error.
    """
    _, unfinished = ray.wait(list(references), num_returns=len(references), timeout=grace_s)
    for reference in unfinished:
        ray.cancel(reference)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _summary(error: BaseException) -> str:
    """Return the last line of a Ray error: the remote exception's own message."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1] if lines else ''}"[:500]
