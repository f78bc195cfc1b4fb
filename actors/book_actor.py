"""The book actor: a shard's sequencer.

One book actor per shard runs, in order, for each command batch:

1. the pre-trade risk gate (`RiskLimits`, in this process: no extra hop, and exposure is
   always current, so a replay decides exactly as the live run did);
2. matching (`MatchingEngine`), which numbers every event with the shard's gap-free sequence;
3. the write-ahead journal: the batch and the sequence range it produced are made durable
   before any event leaves the actor (issue 4);
4. the reply (the batch's events) and, without waiting, publication of the same events to the
   shard's readers (its read models' actor, gateways) except the batch's origin: a gateway
   that names itself with its batch has the events in the reply, so pushing them back to it
   would be a second Ray call for nothing.

The class is plain Python: cluster wiring wraps it with ``ray.remote``; tests and benchmarks
run it in-process. Its collaborators that touch Ray or the disk are injected: an `EventSink`
(publication) and a `ShardLog` (journal and snapshots). So are its clocks: tests pass fake
ones, so time-based snapshots happen exactly when a test says. So is tracing: given a
``tracer_factory`` (an OpenTelemetry `Tracer`), each batch is a ``raytrade.shard/batch`` span
linked to the spans of the requests in it, with the journal append as a child span
(`actors.tracing`); without one nothing is traced and OpenTelemetry is not even imported.

Calls may come from two threads: Ray's, which runs the actor's methods one at a time, and,
when the cluster runs one, the shard's own gRPC front end (``front_end_factory``,
`cluster.gateway.direct`), which reaches the book without a Ray call. Every method that reads
or changes the shard's state holds the actor's lock (`_serialized`), so the shard still
applies one batch at a time, in one order, whoever sent it.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import msgspec

import actors._compiled as core_build
from actors.core.book import OrderBook, RestingOrder
from actors.core.engine import MatchingEngine
from actors.core.risk import ALL_ACCOUNTS, RiskLimits
from actors.core.shard import (
    CLIENT_ORDER_ID_WINDOW,
    ShardState,
    build_shard,
    replay_batch,
    shard_state,
    state_hashes,
)
from actors.logfields import fields
from actors.metering import Meter, MetricsExporter
from actors.tuning import tune_gc
from protocols.journal_format import CommandBatch
from protocols.messages import (
    Command,
    Event,
    Instrument,
    OrderAccepted,
    OrderRejected,
    OrderReplaced,
    RequestKind,
    RiskLimitsConfig,
    SetRiskLimits,
    Trade,
    decode_commands,
    encode,
)
from protocols.rows import OrderRow, ShardStatusRow

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

    from actors.tracing import ShardTracing

log = logging.getLogger(__name__)

_Method = TypeVar("_Method", bound=Callable[..., Any])


def _serialized(method: _Method) -> _Method:
    """Run the method under the actor's lock (see the module's docstring)."""

    @functools.wraps(method)
    def locked(self: BookActor, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return locked  # type: ignore[return-value]


class FrontEnd(Protocol):
    """A front end serving clients from the book actor's own process (`front_end_factory`)."""

    @property
    def address(self) -> str:
        """Where it listens (``host:port``), or ``failed: <why>``."""
        ...


class EventSink(Protocol):
    """Where a shard's events go after the reply: the shard's readers."""

    def publish(self, first_seq: int, last_seq: int, payload: bytes, origin: str = "") -> None:
        """Take the encoded events ``first_seq..last_seq``; must not block for long.

        ``origin`` names the reader that sent the batch and has its events in the reply
        (empty: no reader did); the sink does not send the batch to it.
        """
        ...


class ShardLog(Protocol):
    """The shard's durable log: journal and snapshots (see cluster.storage.shard)."""

    def load(self) -> tuple[ShardState | None, Iterable[CommandBatch]]:
        """Become the shard's writer; return the newest snapshot and the batches after it."""
        ...

    def append(self, first_seq: int, last_seq: int, commands: Sequence[Command]) -> None:
        """Make a batch durable (per the fsync policy); raise if this writer was fenced."""
        ...

    def sync(self) -> None:
        """Make everything appended so far durable."""
        ...

    def save_snapshot(self, next_seq: int, state: ShardState) -> None:
        """Store a snapshot that covers every event before ``next_seq``."""
        ...


_REQUEST_NAMES: dict[int, str] = {kind: kind.name for kind in RequestKind}


class BatchMeter:
    """What a shard's batches did, in `protocols.metrics` terms: a few dictionary updates
    per batch (one pass over its events for trades and rejects), flushed by the `Meter`."""

    def __init__(self, shard_id: int, meter: Meter) -> None:
        self.shard = str(shard_id)
        self.meter = meter
        self._reject_labels: dict[tuple[int, int], tuple[str, ...]] = {}

    def recovered(self, seconds: float, replayed: int) -> None:
        """Record how the actor's start went."""
        labels = (self.shard, "book")
        self.meter.set("raytrade_recovery_duration_seconds", labels, seconds)
        self.meter.set("raytrade_recovery_events", labels, replayed)

    def batch(self, commands: int, events: Sequence[Event], match_s: float, journal_s: float,
              publish_s: float) -> None:
        """Record one applied batch."""
        meter, shard = self.meter, self.shard
        meter.count("raytrade_commands_total", (shard,), commands)
        meter.observe("raytrade_batch_commands", (shard,), commands)
        meter.observe("raytrade_stage_duration_seconds", (shard, "gate_match"), match_s)
        meter.observe("raytrade_stage_duration_seconds", (shard, "journal"), journal_s)
        meter.observe("raytrade_stage_duration_seconds", (shard, "publish"), publish_s)
        accepted = replaced = trades = quantity = 0
        rejected: dict[tuple[int, int], int] = {}
        for event in events:
            kind = type(event)
            if kind is Trade:
                trades += 1
                quantity += event.quantity  # type: ignore[union-attr]
            elif kind is OrderAccepted:
                accepted += 1
            elif kind is OrderRejected:
                key = (event.request, event.code)  # type: ignore[union-attr]
                rejected[key] = rejected.get(key, 0) + 1
            elif kind is OrderReplaced:
                replaced += 1
        if accepted:
            meter.count("raytrade_orders_total", (shard, "NEW_ORDER", "accepted", "NONE"), accepted)
        if replaced:
            meter.count("raytrade_orders_total", (shard, "REPLACE", "accepted", "NONE"),
                        replaced)
        for key, count in rejected.items():
            labels = self._reject_labels.get(key)
            if labels is None:
                request, code = key
                labels = self._reject_labels[key] = (
                    shard, _REQUEST_NAMES.get(request, str(request)), "rejected",
                    getattr(code, "name", str(code)))
            meter.count("raytrade_orders_total", labels, count)
        if trades:
            meter.count("raytrade_trades_total", (shard,), trades)
            meter.count("raytrade_traded_quantity_total", (shard,), quantity)

    def flush_due(self, engine: MatchingEngine) -> None:
        """Hand what was gathered to the exporter, with the books' gauges, if it is time."""
        if self.meter.due():
            self.gauges(engine)
            self.meter.flush()

    def gauges(self, engine: MatchingEngine) -> None:
        """Record the shard's position and books."""
        meter, shard = self.meter, self.shard
        meter.set("raytrade_journal_position_events", (shard,), engine.next_seq - 1)
        for symbol, book in engine.books.items():
            meter.set("raytrade_open_orders", (shard, symbol), len(book.orders))
            meter.set("raytrade_book_levels", (shard, symbol, "bid"), len(book.bids))
            meter.set("raytrade_book_levels", (shard, symbol, "ask"), len(book.asks))


class BookActor:
    """Sequence, check, match and journal a shard's command batches."""

    def __init__(
        self,
        shard_id: int,
        instruments: Sequence[Instrument],
        *,
        default_limits: RiskLimitsConfig | None = None,
        sink_factory: Callable[[], EventSink] | None = None,
        log_factory: Callable[[], ShardLog] | None = None,
        on_journal_failure: Callable[[str], None] | None = None,
        metrics: MetricsExporter | None = None,
        tracer_factory: Callable[[], Tracer] | None = None,
        front_end_factory: Callable[[BookActor], FrontEnd] | None = None,
        snapshot_every_events: int = 200_000,
        snapshot_in_background: bool = False,
        snapshot_every_s: float = 300.0,
        client_order_id_window: int = CLIENT_ORDER_ID_WINDOW,
        clock: Callable[[], float] = time.monotonic,
        wall_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        """Recover the shard from ``log_factory``'s log (empty without one), then serve.

        ``clock`` (monotonic seconds) times snapshots and recovery; ``wall_clock_ns`` (Unix
        nanoseconds) stamps the configured default limits and the incarnation.
        ``on_journal_failure`` is called with the reason once a batch could not be journaled
        (a disk error, or a newer incarnation fenced this one): the wiring passes one that
        ends the process, so Ray starts a fresh incarnation that recovers from the journal,
        and a zombie (a process whose node was declared dead and came back) is gone instead
        of lingering. Without one this actor only refuses every later call.
        ``metrics`` receives what each batch did (`BatchMeter`), about once a second; None
        records nothing. ``tracer_factory`` makes this process's `Tracer` (called here, in
        the actor's process); None traces nothing. ``front_end_factory`` starts a front end in
        this process once the shard has recovered (given this actor; it calls
        `apply_batch_with_ends`); None starts none. ``snapshot_in_background``: the periodic
        snapshots copy the state on the command path and encode and write it on a thread of
        their own (`SnapshotWriter`), so the batch that triggers one waits for the copy only;
        False (in-process users, tests) writes each before the batch returns.
        """
        tune_gc()
        self._lock = threading.RLock()
        self.clock = clock
        self.wall_clock_ns = wall_clock_ns
        self.shard_id = shard_id
        self.instruments = list(instruments)
        self.snapshot_every_events = snapshot_every_events
        self.snapshot_every_s = snapshot_every_s
        self.client_order_id_window = client_order_id_window
        self.log = log_factory() if log_factory is not None else None
        self.on_journal_failure = on_journal_failure
        self.meter = BatchMeter(shard_id, Meter(metrics, clock=clock)) if metrics else None
        self.tracing: ShardTracing | None = None
        if tracer_factory is not None:
            from actors.tracing import ShardTracing  # only a tracing process loads OpenTelemetry

            self.tracing = ShardTracing(tracer_factory(), shard_id)
        self.risk, self.engine = self._recover()
        self._last_snapshot_seq = self.engine.next_seq
        self._last_snapshot_at = clock()
        self._writer = (SnapshotWriter(self._save_snapshot, shard_id)
                        if snapshot_in_background and self.log is not None else None)
        self._snapshot_seconds: deque[float] = deque()
        """How long each snapshot took, until the command path records it in the meter."""
        self.sink = sink_factory() if sink_factory is not None else None
        self.incarnation = f"{os.getpid()}-{wall_clock_ns()}"
        """Changes with every start, so a supervisor sees a restart it did not witness."""
        self.batches = 0
        self.commands = 0
        self._failed: str | None = None
        self._apply_default_limits(default_limits)
        log.info("shard %d: %s", self.shard_id, core_build.summary())
        self.front_end = front_end_factory(self) if front_end_factory is not None else None

    def _recover(self) -> tuple[RiskLimits, MatchingEngine]:
        """Load the newest snapshot, replay the journal after it, check, then serve.

        Startup and crash recovery are this one path.
        """
        if self.log is None:
            return build_shard(self.shard_id, self.instruments,
                               client_order_id_window=self.client_order_id_window)
        started = self.clock()
        snapshot, batches = self.log.load()
        risk, engine = build_shard(self.shard_id, self.instruments, snapshot,
                                   client_order_id_window=self.client_order_id_window)
        replayed = 0
        for batch in batches:
            replay_batch(engine, batch, f"shard {self.shard_id}")
            replayed += len(batch.commands)
        engine.check_invariants()
        risk.check_invariants()
        if self.meter is not None:
            self.meter.recovered(self.clock() - started, replayed)
        log.info(
            "shard %d recovered to event %d (snapshot %s, %d commands replayed) in %.3f s",
            self.shard_id,
            engine.next_seq - 1,
            "none" if snapshot is None else f"at event {snapshot.engine.next_seq - 1}",
            replayed,
            self.clock() - started,
        )
        return risk, engine

    def _apply_default_limits(self, default_limits: RiskLimitsConfig | None) -> None:
        """Journal the configured default limits (account ``"*"``) if they changed.

        Defaults are configuration, but a replay must decide as the live run did, so a change
        enters the log as a `SetRiskLimits` like any other.
        """
        wanted = default_limits or RiskLimitsConfig()
        if self.risk.limits(ALL_ACCOUNTS, "") != wanted:
            self.apply([SetRiskLimits(account=ALL_ACCOUNTS, limits=wanted,
                                      client_order_id="config", ts_ns=self.wall_clock_ns())])

    # ---------------------------------------------------------------- the command path

    def apply_batch(self, payload: bytes) -> bytes:
        """Apply an encoded command batch; return its encoded events.

        Raise `msgspec.ValidationError` for a payload that is not a command batch (nothing is
        applied). If the batch cannot be journaled (disk error, or this process was fenced by
        a newer incarnation) raise, after which this actor must not serve again: its memory
        is ahead of its journal. The supervisor restarts it from the journal.
        """
        return self.apply(decode_commands(payload))

    def apply_batch_with_ends(self, payload: bytes, origin: str = "",
                              traceparents: Sequence[str] = ()) -> bytes:
        """Like `apply_batch`, but return ``msgpack([ends, events])`` where ``ends[i]`` is the index
        just past command ``i``'s events: a gateway that coalesced many requests into one
        batch splits the reply exactly.

        ``origin`` is the reader name of the caller (a gateway): its events are not published
        to that reader, which takes them from this reply. A caller that never sees the reply
        (a timeout, a lost answer) catches up from the journal.

        ``traceparents`` are the W3C trace contexts of the requests in the batch (empty when
        the caller does not trace): the batch's span links to each of them.
        """
        ends: list[int] = []
        reply = self.apply(decode_commands(payload), ends, origin, traceparents)
        return _encode_with_ends(ends, reply)

    @_serialized
    def apply(self, commands: Sequence[Command], ends: list[int] | None = None,
              origin: str = "", traceparents: Sequence[str] = ()) -> bytes:
        """Apply a decoded command batch; return its encoded events (see `apply_batch`;
        ``origin`` and ``traceparents`` as in `apply_batch_with_ends`)."""
        if self.tracing is None:
            return self._apply(commands, ends, origin, None)
        with self.tracing.batch(len(commands), origin, traceparents) as span:
            return self._apply(commands, ends, origin, span)

    def _apply(self, commands: Sequence[Command], ends: list[int] | None, origin: str,
               span: Span | None) -> bytes:
        if self._failed is not None:
            raise RuntimeError(f"shard {self.shard_id} stopped serving: {self._failed}")
        if not commands:
            return encode([])
        first_seq = self.engine.next_seq
        started = time.perf_counter()
        events = self.engine.apply(commands, ends)
        matched = time.perf_counter()
        last_seq = self.engine.next_seq - 1
        if span is not None:
            span.set_attribute("raytrade.events", len(events))
        if not events:
            # nothing changed (e.g. a mass cancel with nothing to cancel): nothing to journal,
            # and a replay without this batch reaches the same state
            return encode([])
        if span is not None:
            span.set_attributes({"raytrade.first_seq": first_seq, "raytrade.last_seq": last_seq})
        if self.log is not None:
            if self.tracing is None:
                self._journal(self.log, first_seq, last_seq, commands)
            else:
                with self.tracing.journal(first_seq, last_seq, len(commands)):
                    self._journal(self.log, first_seq, last_seq, commands)
        journaled = time.perf_counter()
        payload = encode(events)
        if self.sink is not None:
            self.sink.publish(first_seq, last_seq, payload, origin)
        self.batches += 1
        self.commands += len(commands)
        if self.meter is not None:
            self.meter.batch(len(commands), events, matched - started, journaled - matched,
                             time.perf_counter() - journaled)
            self._record_snapshots()
            self.meter.flush_due(self.engine)
        if self.log is not None and (
            last_seq - self._last_snapshot_seq >= self.snapshot_every_events
            or self.clock() - self._last_snapshot_at >= self.snapshot_every_s
        ):
            self._take_snapshot(wait=False)
        return payload

    def _journal(self, shard_log: ShardLog, first_seq: int, last_seq: int,
                 commands: Sequence[Command]) -> None:
        try:
            shard_log.append(first_seq, last_seq, commands)
        except BaseException as error:
            self._failed = f"journal append failed: {error!r}"
            log.critical("shard %d: %s; refusing all further batches", self.shard_id,
                         self._failed, extra=fields("journal_failed", shard=self.shard_id,
                                                    first_seq=first_seq, last_seq=last_seq,
                                                    error=repr(error)))
            if self.on_journal_failure is not None:
                self.on_journal_failure(self._failed)
            raise

    @_serialized
    def snapshot(self) -> int:
        """Write a snapshot now; return the first event it does not cover (once it is
        written, also with ``snapshot_in_background``)."""
        return self._take_snapshot(wait=True)

    def _take_snapshot(self, *, wait: bool) -> int:
        if self.log is None:
            raise RuntimeError("this book actor has no log to snapshot to")
        started = self.clock()
        next_seq: int = self.engine.next_seq
        state = self.state()  # a deep copy: the writer may encode it while batches go on
        self._last_snapshot_seq = next_seq
        self._last_snapshot_at = self.clock()
        if self._writer is None:
            self._save_snapshot(next_seq, state, started)
            return next_seq
        self._writer.submit(next_seq, state, started)
        log.debug("shard %d: state at event %d copied in %.3f s for the snapshot", self.shard_id,
                  next_seq - 1, self._last_snapshot_at - started)
        if wait:
            self._writer.wait()
        return next_seq

    def _save_snapshot(self, next_seq: int, state: ShardState, started: float) -> None:
        """Store a snapshot (on the command path, or on the writer's thread)."""
        assert self.log is not None
        self.log.save_snapshot(next_seq, state)
        seconds = self.clock() - started
        # the meter belongs to the command path, which records this with its next batch
        # (taking the actor's lock here could wait on `snapshot`, which waits on this)
        self._snapshot_seconds.append(seconds)
        log.info("shard %d snapshot at event %d in %.3f s", self.shard_id, next_seq - 1, seconds)

    def _record_snapshots(self) -> None:
        assert self.meter is not None
        while self._snapshot_seconds:
            self.meter.meter.observe("raytrade_snapshot_duration_seconds", (self.meter.shard,),
                                     self._snapshot_seconds.popleft())

    @_serialized
    def sync(self) -> None:
        """Make every journaled batch durable now (for the ``interval`` fsync policy's timer)."""
        if self.log is not None:
            self.log.sync()

    # ---------------------------------------------------------------- queries

    @_serialized
    def state(self) -> ShardState:
        """Return the shard's full state (a copy)."""
        return shard_state(self.risk, self.engine)

    @_serialized
    def state_hashes(self) -> dict[str, str]:
        """Return hashes of the books (live orders and order ids), the engine and the risk."""
        return state_hashes(self.risk, self.engine)

    @_serialized
    def l1(self, symbol: str) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        """Return best bid and ask as ``(price, quantity)`` or None per side."""
        book: OrderBook = self.engine.books[symbol]
        return book.l1()

    @_serialized
    def l2(
        self, symbol: str, depth: int
    ) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """Return up to ``depth`` levels per side as ``(price, quantity, order_count)``."""
        book: OrderBook = self.engine.books[symbol]
        return book.l2(depth)

    @_serialized
    def order(self, order_id: int) -> OrderRow | None:
        """Return a live order, or None if it is not open."""
        for symbol, book in self.engine.books.items():
            order = book.orders.get(order_id)
            if order is not None:
                return _order_row(symbol, order)
        return None

    @_serialized
    def open_orders(self, account: str, symbol: str = "") -> list[OrderRow]:
        """Return the account's live orders (in one symbol or all), by order id."""
        rows = [
            _order_row(name, order)
            for name, book in self.engine.books.items()
            if not symbol or name == symbol
            for order in book.orders.values()
            if order.account == account
        ]
        return sorted(rows, key=lambda row: row.order_id)

    @_serialized
    def status(self) -> ShardStatusRow:
        """Return counters and the position in the sequence, for `raytrade status`."""
        return ShardStatusRow(
            shard=self.shard_id,
            incarnation=self.incarnation,
            symbols=sorted(self.engine.books),
            next_seq=self.engine.next_seq,
            batches=self.batches,
            commands=self.commands,
            resting_orders=sum(len(book.orders) for book in self.engine.books.values()),
            failed=self._failed,
            front_end=self.front_end.address if self.front_end is not None else "",
        )

    @_serialized
    def ping(self) -> tuple[str, int]:
        """Answer a health check: this process's incarnation and the next sequence number.

        It also makes the journal durable up to here, which bounds what the ``interval``
        fsync policy leaves unsynced while the shard is idle to one health-check period.
        """
        if self._failed is not None:
            raise RuntimeError(f"shard {self.shard_id} stopped serving: {self._failed}")
        self.sync()
        if self.meter is not None:  # an idle shard's last batches reach the metrics
            self._record_snapshots()
            self.meter.flush_due(self.engine)
        return self.incarnation, self.engine.next_seq

    def pid(self) -> int:
        """Return this actor's process id (tests kill it for real)."""
        return os.getpid()

    @_serialized
    def add_reader(self, name: str, handle: object) -> None:
        """Publish this shard's events to another reader from now on (e.g. a gateway)."""
        if self.sink is not None and hasattr(self.sink, "add_reader"):
            self.sink.add_reader(name, handle)

    def reader_stats(self) -> dict[str, dict[str, int]]:
        """Return the sink's counters per reader (batches sent, skipped, dropped; tests)."""
        stats = getattr(self.sink, "stats", None)
        return stats() if stats is not None else {}


class SnapshotWriter:
    """Store a book actor's snapshots on a thread of their own.

    The state is copied on the command path (the only part that must see the shard still);
    encoding, checksumming and writing it, with its fsyncs, follow on this thread. msgspec
    encodes in one call that holds the interpreter, so the batches still wait for the
    encoding (55-66 ms for a 1M-event shard here, `benchmarks/bench_snapshot_pause.py`); the
    writes and fsyncs release it, and those leave the command path. One snapshot is written
    at a time; one that is due while another is being written waits, and a newer one
    replaces it (only the newest matters). A failed write is logged and the next one tries
    again: the journal holds every batch, so a missing snapshot only lengthens a recovery.
    """

    def __init__(self, save: Callable[[int, ShardState, float], None], shard_id: int) -> None:
        self._save = save
        self._shard_id = shard_id
        self._changed = threading.Condition()
        self._pending: tuple[int, ShardState, float] | None = None
        self._writing = False
        self._thread = threading.Thread(target=self._run, name=f"snapshots-{shard_id}",
                                        daemon=True)
        self._thread.start()

    def submit(self, next_seq: int, state: ShardState, started: float) -> None:
        """Queue a snapshot covering every event before ``next_seq`` (replacing one still
        waiting)."""
        with self._changed:
            self._pending = (next_seq, state, started)
            self._changed.notify_all()

    def wait(self) -> None:
        """Block until every snapshot submitted so far is written (or failed)."""
        with self._changed:
            self._changed.wait_for(lambda: self._pending is None and not self._writing)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._pending is not None)
                assert self._pending is not None
                (next_seq, state, started), self._pending = self._pending, None
                self._writing = True
            try:
                self._save(next_seq, state, started)
            except Exception:  # the thread must outlive a full disk; the journal has it all
                log.exception("shard %d: the snapshot at event %d failed; the next one tries "
                              "again", self._shard_id, next_seq - 1)
            finally:
                with self._changed:
                    self._writing = False
                    self._changed.notify_all()


def _encode_with_ends(ends: list[int], payload: bytes) -> bytes:
    # the events are already encoded once (for the reply and the readers): splice them in
    # as raw msgpack instead of encoding them twice
    return msgspec.msgpack.encode([ends, msgspec.Raw(payload)])


def decode_with_ends(data: bytes) -> tuple[list[int], list[Event]]:
    """Decode what `BookActor.apply_batch_with_ends` returns."""
    ends, events = msgspec.msgpack.decode(data, type=tuple[list[int], list[Event]])
    return ends, events


def _order_row(symbol: str, order: RestingOrder) -> OrderRow:
    return OrderRow(
        order_id=order.order_id,
        account=order.account,
        client_order_id=order.client_order_id,
        symbol=symbol,
        side=order.side,
        price=order.price,
        open_quantity=order.quantity,
    )
