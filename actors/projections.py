"""The reader of a shard's event log: its read models (risk and positions) in one actor.

A projection folds the shard's events, in sequence order, into a read model and answers
queries from it, so the book actor (the command path) never serves them. Events arrive
pushed by the book actor, after its reply, in batches tagged with their sequence range. A
projection keeps its own offset (``next_seq``):

* a batch it has already folded is ignored (at-least-once delivery is fine);
* a batch that starts beyond ``next_seq`` means it missed events (it or the book actor
  restarted, or the publisher dropped batches under pressure): it first folds the missing
  events, replayed from the shard's journal by its `ProjectionLog`.

On start (and so after a crash) it loads its newest own snapshot and catches up from the
journal before it serves: the same recovery path as the book actor's. Like the book actor,
these are plain classes; cluster wiring wraps them with ``ray.remote``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import msgspec

from actors.core.positions import LedgerState, Position, PositionLedger
from actors.core.risk import AccountExposure, RiskLimits, RiskState
from actors.metering import Meter, MetricsExporter
from actors.tuning import tune_gc
from protocols.messages import Event, Instrument, RiskLimitsConfig, decode_events
from protocols.rows import RiskStatusRow

log = logging.getLogger(__name__)


class ProjectionLog(Protocol):
    """A projection's view of the shard's storage (see cluster.storage.shard)."""

    def events(self, from_seq: int, to_seq: int | None = None) -> Iterable[Sequence[Event]]:
        """Yield the events ``from_seq..to_seq`` (to the journal's end if None), in order."""
        ...

    def load_snapshot(self, name: str) -> tuple[int, bytes] | None:
        """Return this projection's newest valid snapshot as ``(last event, payload)``."""
        ...

    def save_snapshot(self, name: str, seq: int, payload: bytes) -> None:
        """Store this projection's state, which includes every event up to ``seq``."""
        ...


class EventRecorder(Protocol):
    """Something else the shard's events are written to, in order, by the reader: the
    market-data recorder (`cluster.research.recorder.MarketDataRecorder`)."""

    @property
    def position(self) -> int:
        """The last event it holds durably; after a restart it is fed from the next one."""
        ...

    def record(self, events: Sequence[Event]) -> None:
        """Take the next events (seq order; ones at or before what it took are ignored)."""
        ...

    def maybe_flush(self) -> bool:
        """Write what it holds if that is due; return whether it wrote."""
        ...

    def close(self) -> None:
        """Write what it holds and release its files."""
        ...


class ProjectionGapError(RuntimeError):
    """A projection missed events and the journal cannot supply them."""


class _Model(Protocol):
    """What a read model offers (`ShardReadModels`: `RiskLimits` and `PositionLedger`)."""

    def observe(self, events: Sequence[Event], start: int) -> None: ...

    def state(self) -> Any: ...

    def state_hash(self) -> str: ...


class Projection:
    """Fold a shard's events into a read model, in order, exactly once.

    A subclass names its pure core (``model_type``, built from the shard's instruments and
    restored with ``from_state``) and its snapshot body (``state_type``); this class does the
    folding, the offsets, the snapshots and the recovery.
    """

    name = "projection"
    model_type: Any
    state_type: Any

    def __init__(
        self,
        shard_id: int,
        instruments: Sequence[Instrument],
        *,
        log_factory: Callable[[], ProjectionLog] | None = None,
        snapshot_every_events: int = 200_000,
        recorder_factory: Callable[[], EventRecorder] | None = None,
        metrics: MetricsExporter | None = None,
    ) -> None:
        """Recover the read model (snapshot, then the journal), then the recorder if given.

        A recorder is fed every event the model folds, after it; a failing recorder is
        closed, logged and opened again at most every `RECORDER_RETRY_S` (catching up from
        the journal), never failing the read model or its queries. ``metrics`` gets the
        reader's position, repaired gaps and recovery, about once a second.
        """
        tune_gc()
        self.meter = Meter(metrics)
        self.shard_id = shard_id
        self.instruments = list(instruments)
        self.model: _Model = self.model_type(self.instruments)
        self.next_seq = 1
        self.log = log_factory() if log_factory is not None else None
        self.snapshot_every_events = snapshot_every_events
        self.gaps_repaired = 0
        self.incarnation = f"{os.getpid()}-{time.time_ns()}"
        self.recorder_factory: Callable[[], EventRecorder] | None = None  # during recovery
        self.recorder: EventRecorder | None = None
        self.recorder_failures = 0
        self._recorder_retry_at = 0.0
        self._recover()
        self._last_snapshot_seq = self.next_seq
        self.recorder_factory = recorder_factory
        if recorder_factory is not None:
            self._open_recorder(self.next_seq - 1)

    def fold(self, events: Sequence[Event]) -> None:
        """Apply events (in order, none seen before) to the read model, then record them."""
        self.model.observe(events, 0)
        if self.recorder_factory is not None and events:
            self._record(events)

    # ---------------------------------------------------------------- the recorder

    RECORDER_RETRY_S = 30.0
    """How long a failed recorder stays closed before the reader opens it again."""

    def _open_recorder(self, to_seq: int) -> None:
        """Open the recorder and feed it the journal's events after its position up to
        ``to_seq`` (what this model folded before it could)."""
        assert self.recorder_factory is not None
        try:
            recorder = self.recorder_factory()
            if recorder.position < to_seq:
                if self.log is None:
                    raise ProjectionGapError(
                        f"shard {self.shard_id} recorder is at event {recorder.position} and "
                        f"there is no journal to catch up to {to_seq} from")
                started = time.perf_counter()
                for events in self.log.events(recorder.position + 1, to_seq):
                    recorder.record(events)
                log.info("shard %d recorder caught up from event %d to %d in %.3f s",
                         self.shard_id, recorder.position, to_seq,
                         time.perf_counter() - started)
            self.recorder = recorder
        except Exception:
            self._recorder_failed("opening")

    def _record(self, events: Sequence[Event]) -> None:
        if self.recorder is None:
            if time.monotonic() < self._recorder_retry_at:
                return
            self._open_recorder(events[0].seq - 1)
            if self.recorder is None:
                return
        try:
            self.recorder.record(events)
        except Exception:
            self._recorder_failed(f"recording events {events[0].seq}..{events[-1].seq}")

    def _recorder_failed(self, doing: str) -> None:
        self.recorder_failures += 1
        self._recorder_retry_at = time.monotonic() + self.RECORDER_RETRY_S
        log.exception("shard %d %s: the market-data recorder failed %s; it is closed and "
                      "opened again (catching up from the journal) in %.0f s", self.shard_id,
                      self.name, doing, self.RECORDER_RETRY_S)
        recorder, self.recorder = self.recorder, None
        if recorder is not None:
            try:
                recorder.close()
            except Exception:
                log.warning("shard %d: closing the failed recorder failed too", self.shard_id,
                            exc_info=True)

    def flush_recorder(self) -> None:
        """Write what the recorder holds if its time is due (called with each health check,
        so an idle shard's last events reach the files too)."""
        if self.recorder is not None:
            try:
                self.recorder.maybe_flush()
            except Exception:
                self._recorder_failed("flushing")

    def encode_state(self) -> bytes:
        return msgspec.msgpack.encode(self.model.state())

    def restore_state(self, payload: bytes) -> None:
        state = msgspec.msgpack.decode(payload, type=self.state_type)
        self.model = self.model_type.from_state(self.instruments, state)

    def state_hash(self) -> str:
        """Return the read model's state hash."""
        return self.model.state_hash()

    def _recover(self) -> None:
        if self.log is None:
            return
        started = time.perf_counter()
        found = self.log.load_snapshot(self.name)
        if found is not None:
            seq, payload = found
            self.restore_state(payload)
            self.next_seq = seq + 1
        snapshot_seq = self.next_seq - 1
        self._fold_from_journal(None)
        took = time.perf_counter() - started
        self.meter.set("raytrade_recovery_duration_seconds", (str(self.shard_id), self.name),
                       took)
        self.meter.set("raytrade_recovery_events", (str(self.shard_id), self.name),
                       self.next_seq - 1 - snapshot_seq)
        log.info("shard %d %s recovered to event %d (snapshot at %d) in %.3f s",
                 self.shard_id, self.name, self.next_seq - 1, snapshot_seq, took)

    def _fold_from_journal(self, to_seq: int | None) -> None:
        assert self.log is not None
        for events in self.log.events(self.next_seq, to_seq):
            fresh = [event for event in events if event.seq >= self.next_seq]
            if fresh:
                if fresh[0].seq != self.next_seq:
                    raise ProjectionGapError(
                        f"shard {self.shard_id} {self.name}: replay jumped from event "
                        f"{self.next_seq} to {fresh[0].seq}"
                    )
                self.fold(fresh)
                self.next_seq = fresh[-1].seq + 1

    def on_events(self, batches: Sequence[tuple[int, int, bytes]]) -> int:
        """Take pushed batches ``(first_seq, last_seq, encoded events)``; return next_seq."""
        for first_seq, last_seq, payload in batches:
            if last_seq < self.next_seq:
                continue
            if first_seq > self.next_seq:
                self.repair(first_seq - 1)
            events = decode_events(payload)
            if first_seq < self.next_seq:
                events = events[self.next_seq - first_seq :]
            self.fold(events)
            self.next_seq = last_seq + 1
        due = self.next_seq - self._last_snapshot_seq > self.snapshot_every_events
        if due and self.log is not None:
            self.snapshot()
        self._flush_metrics()
        return self.next_seq

    def _flush_metrics(self) -> None:
        if self.meter.due():
            shard = (str(self.shard_id),)
            self.meter.set("raytrade_reader_position_events", shard, self.next_seq - 1)
            self.meter.flush()

    def repair(self, to_seq: int) -> None:
        """Fold the events ``next_seq..to_seq`` from the journal."""
        if self.log is None:
            raise ProjectionGapError(
                f"shard {self.shard_id} {self.name} is at event {self.next_seq} but received "
                f"events after {to_seq}, and has no journal to catch up from"
            )
        log.warning("shard %d %s catching up from the journal: events %d..%d",
                    self.shard_id, self.name, self.next_seq, to_seq)
        self._fold_from_journal(to_seq)
        if self.next_seq != to_seq + 1:
            raise ProjectionGapError(
                f"shard {self.shard_id} {self.name}: the journal ends at event "
                f"{self.next_seq - 1}, short of {to_seq}"
            )
        self.gaps_repaired += 1
        self.meter.count("raytrade_reader_gaps_repaired_total", (str(self.shard_id),))

    def snapshot(self) -> int:
        """Write this projection's snapshot now; return the last event it includes."""
        if self.log is None:
            raise RuntimeError(f"{self.name} has no storage to snapshot to")
        self.log.save_snapshot(self.name, self.next_seq - 1, self.encode_state())
        self._last_snapshot_seq = self.next_seq
        return self.next_seq - 1

    def position(self) -> int:
        """Return the next sequence number this projection expects (its offset)."""
        return self.next_seq

    def ping(self) -> tuple[str, int]:
        """Answer a health check: this process's incarnation and its offset."""
        self.flush_recorder()
        self._flush_metrics()
        return self.incarnation, self.next_seq

    def pid(self) -> int:
        """Return this actor's process id (tests kill it for real)."""
        return os.getpid()


class ReadModelsState(msgspec.Struct, frozen=True, kw_only=True):
    """The snapshot body of a shard's read models: both folds at the same event."""

    risk: RiskState
    positions: LedgerState


class ShardReadModels:
    """The read side of a shard: exposure and limits (`RiskLimits`) and positions and PnL
    (`PositionLedger`), folded from the same events in one pass."""

    def __init__(self, instruments: Iterable[Instrument]) -> None:
        instruments = list(instruments)
        self.risk = RiskLimits(instruments)
        self.positions = PositionLedger(instruments)

    def observe(self, events: Sequence[Event], start: int) -> None:
        self.risk.observe(events, start)
        self.positions.observe(events, start)

    def state(self) -> ReadModelsState:
        return ReadModelsState(risk=self.risk.state(), positions=self.positions.state())

    @classmethod
    def from_state(
        cls, instruments: Iterable[Instrument], state: ReadModelsState
    ) -> ShardReadModels:
        models = cls.__new__(cls)
        instruments = list(instruments)
        models.risk = RiskLimits.from_state(instruments, state.risk)
        models.positions = PositionLedger.from_state(instruments, state.positions)
        return models

    def state_hash(self) -> str:
        """One hash over both models (each has its own: `state_hashes`)."""
        return ",".join(self.state_hashes().values())

    def state_hashes(self) -> dict[str, str]:
        return {"risk": self.risk.state_hash(), "positions": self.positions.state_hash()}


class ShardReader(Projection):
    """The read models of a shard, in one actor: positions, PnL, volume and fees per account
    (`PositionLedger`), and exposure, limits, kill switches and halts (`RiskLimits`).

    The risk model folds the same events through the same `RiskLimits` as the book actor's
    pre-trade gate, so what it reports is what the gate decides with, one publication behind
    at most. Both models share one process, one push of each batch and one offset: two
    actors cost a second push per batch and a second idle Ray worker for no gain in
    isolation (a query never reaches the book actor either way).
    """

    name = "readers"
    model_type = ShardReadModels
    state_type = ReadModelsState
    model: ShardReadModels

    def positions(self, account: str) -> list[Position]:
        """Return the account's positions in this shard's symbols."""
        return self.model.positions.positions(account)

    def all_positions(self) -> list[Position]:
        """Return every account's positions in this shard's symbols."""
        return self.model.positions.all_positions()

    def exposure(self, account: str) -> AccountExposure:
        """Return the account's exposure in this shard (positions, open orders, limits)."""
        return self.model.risk.exposure(account)

    def limits(self, account: str, symbol: str) -> RiskLimitsConfig:
        """Return the limits that apply to the account's orders in ``symbol``."""
        return self.model.risk.limits(account, symbol)

    def status(self) -> RiskStatusRow:
        """Return kill switches and halts in force in this shard."""
        return RiskStatusRow(
            killed_accounts=self.model.risk.killed_accounts(),
            halted_symbols=self.model.risk.halted_symbols(),
        )

    def state_hashes(self) -> dict[str, str]:
        """Return the hash of each read model (``"risk"``, ``"positions"``)."""
        return self.model.state_hashes()
