"""The book actor's shell, in-process: its injected clocks and the typed rows it answers with.

A fake clock decides when time passes, so the time-based snapshot rule is tested to the
tick; an in-memory `ShardLog` records what the actor journals and snapshots.
"""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from actors.book_actor import BookActor
from actors.core.shard import ShardState
from actors.projections import ShardReader
from cluster.research.flow import demo_instruments
from protocols.convert import Converter
from protocols.generated import trading_pb2 as pb
from protocols.journal_format import CommandBatch
from protocols.messages import (
    Command,
    NewOrder,
    RiskLimitsConfig,
    SetKillSwitch,
    SetRiskLimits,
    Side,
    encode,
)
from protocols.rows import OrderRow, RiskStatusRow, ShardStatusRow

INSTRUMENTS = demo_instruments(2)
SNAPSHOT_EVERY_S = 300.0
WALL_CLOCK_NS = 1_764_000_000_000_000_000


class FakeClock:
    """A monotonic clock that moves only when a test says."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class MemoryLog:
    """A `ShardLog` in memory: the batches and snapshots a book actor wrote, in order."""

    def __init__(self) -> None:
        self.batches: list[CommandBatch] = []
        self.snapshots: list[tuple[int, ShardState]] = []

    def load(self) -> tuple[ShardState | None, Iterator[CommandBatch]]:
        if not self.snapshots:
            return None, iter(list(self.batches))
        next_seq, state = self.snapshots[-1]
        return state, iter([batch for batch in self.batches if batch.first_seq >= next_seq])

    def append(self, first_seq: int, last_seq: int, commands: Sequence[Command]) -> None:
        self.batches.append(CommandBatch(epoch=1, first_seq=first_seq, last_seq=last_seq,
                                         commands=list(commands)))

    def sync(self) -> None:
        pass

    def save_snapshot(self, next_seq: int, state: ShardState) -> None:
        self.snapshots.append((next_seq, state))


def order(number: int, side: Side = Side.BUY, price: int = 9_000, account: str = "A") -> NewOrder:
    return NewOrder(account=account, client_order_id=f"c{number}", symbol="SYM0", side=side,
                    price=price, quantity=5, ts_ns=number)


def submit(actor: BookActor, *commands: Command) -> bytes:
    return actor.apply_batch(encode(list(commands)))


def book(log: MemoryLog, clock: FakeClock, **options: object) -> BookActor:
    return BookActor(0, INSTRUMENTS, log_factory=lambda: log, clock=clock,
                     wall_clock_ns=lambda: WALL_CLOCK_NS, snapshot_every_s=SNAPSHOT_EVERY_S,
                     snapshot_every_events=10**9, **options)  # type: ignore[arg-type]


def test_a_time_based_snapshot_is_taken_exactly_when_the_clock_passes_the_period() -> None:
    """No snapshot while less than ``snapshot_every_s`` has passed since the last one; the
    first batch at or after it snapshots, and the period starts again from there."""
    log, clock = MemoryLog(), FakeClock()
    actor = book(log, clock)
    clock.now += SNAPSHOT_EVERY_S - 0.001
    submit(actor, order(1))
    assert log.snapshots == []
    clock.now += 0.001
    submit(actor, order(2))
    assert [next_seq for next_seq, _ in log.snapshots] == [actor.engine.next_seq]
    clock.now += SNAPSHOT_EVERY_S - 0.001
    submit(actor, order(3))
    assert len(log.snapshots) == 1
    clock.now += 0.001
    submit(actor, order(4))
    assert len(log.snapshots) == 2


def test_an_explicit_snapshot_restarts_the_period() -> None:
    """`snapshot()` counts as the last snapshot for the time-based rule."""
    log, clock = MemoryLog(), FakeClock()
    actor = book(log, clock)
    clock.now += SNAPSHOT_EVERY_S - 1
    actor.snapshot()
    clock.now += SNAPSHOT_EVERY_S - 1
    submit(actor, order(1))
    assert len(log.snapshots) == 1


class HeldLog(MemoryLog):
    """A log whose snapshot writes wait until the test lets them go (or fail when told)."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = threading.Event()
        self.go = threading.Event()
        self.fail = False

    def save_snapshot(self, next_seq: int, state: ShardState) -> None:
        self.writing.set()
        assert self.go.wait(10.0), "the test never let the write go"
        if self.fail:
            raise OSError(28, "No space left on device")
        super().save_snapshot(next_seq, state)


def test_a_background_snapshot_is_written_while_batches_go_on() -> None:
    """With ``snapshot_in_background`` the batch that is due a snapshot returns with the write
    still in progress, the next batches are applied meanwhile, and the snapshot written is the
    state as it was when it was due, not the later one."""
    log, clock = HeldLog(), FakeClock()
    actor = book(log, clock, snapshot_in_background=True)
    clock.now += SNAPSHOT_EVERY_S
    submit(actor, order(1))
    due_at, due_state = actor.engine.next_seq, actor.state()
    assert log.writing.wait(10.0)
    submit(actor, order(2))  # applied while the write is held
    assert log.snapshots == [] and actor.engine.next_seq > due_at
    log.go.set()
    actor.snapshot()  # an explicit one waits until written: both are there now
    assert [next_seq for next_seq, _ in log.snapshots] == [due_at, actor.engine.next_seq]
    assert log.snapshots[0][1] == due_state


def test_a_failed_background_snapshot_is_logged_and_the_shard_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A write that fails (a full disk) is logged, raises nowhere, and the writer writes the
    next snapshot once the disk has room again."""
    log, clock = HeldLog(), FakeClock()
    log.fail = True
    log.go.set()
    actor = book(log, clock, snapshot_in_background=True)
    submit(actor, order(1))
    actor.snapshot()
    assert log.snapshots == []
    assert [record.getMessage() for record in caplog.records
            if "failed" in record.getMessage()] == [
        f"shard 0: the snapshot at event {actor.engine.next_seq - 1} failed; the next one "
        f"tries again"]
    submit(actor, order(2))
    log.fail = False
    actor.snapshot()
    assert [next_seq for next_seq, _ in log.snapshots] == [actor.engine.next_seq]


def test_the_wall_clock_stamps_the_default_limits_and_the_incarnation() -> None:
    """Configured default limits enter the journal stamped by the injected wall clock, and
    the incarnation carries it, so a restart is visible."""
    log = MemoryLog()
    limits = RiskLimitsConfig(max_order_quantity=100)
    actor = book(log, FakeClock(), default_limits=limits)
    [batch] = log.batches
    [command] = batch.commands
    assert isinstance(command, SetRiskLimits)
    assert command.limits == limits and command.ts_ns == WALL_CLOCK_NS
    assert actor.incarnation.endswith(f"-{WALL_CLOCK_NS}")
    # recovery replays that batch: unchanged defaults are not journaled again
    book(log, FakeClock(), default_limits=limits)
    assert len(log.batches) == 1


def test_the_book_actor_answers_with_typed_rows_that_survive_pickling() -> None:
    """Open orders, one order and the status are frozen structs; Ray pickles them as they are,
    and the reports read them by attribute."""
    actor = book(MemoryLog(), FakeClock())
    submit(actor, order(1), order(2, price=8_900), order(3, Side.SELL, 9_500, "B"))
    rows = actor.open_orders("A")
    assert [row.client_order_id for row in rows] == ["c1", "c2"]
    assert rows == sorted(rows, key=lambda row: row.order_id)
    first = rows[0]
    assert first == OrderRow(order_id=first.order_id, account="A", client_order_id="c1",
                             symbol="SYM0", side=Side.BUY, price=9_000, open_quantity=5)
    assert actor.order(first.order_id) == first
    assert actor.order(first.order_id + 10**6) is None
    status = actor.status()
    assert isinstance(status, ShardStatusRow)
    assert (status.resting_orders, status.batches, status.commands) == (3, 1, 3)
    assert status.failed is None and status.next_seq == actor.engine.next_seq
    for row in (first, status):
        assert pickle.loads(pickle.dumps(row)) == row
    with pytest.raises(AttributeError):
        first.price = 1  # type: ignore[misc]
    reply = Converter(INSTRUMENTS, {"SYM0": 0, "SYM1": 0}).open_orders(reversed(rows))
    assert [o.client_order_id for o in reply.orders] == ["c1", "c2"]
    assert reply.orders[0].side == pb.SIDE_BUY and reply.orders[0].open_quantity == 5


def test_projections_answer_with_the_cores_structs() -> None:
    """The reader returns its ledger's positions and its risk model's exposure, limits and a
    typed status, from one push, and the positions convert as they are."""
    actor = book(MemoryLog(), FakeClock())
    reader = ShardReader(0, INSTRUMENTS)
    positions = risk = reader
    commands: list[Command] = [order(1), order(2, Side.SELL, account="B"),
                               SetKillSwitch(account="C", engaged=True)]
    first_seq = actor.engine.next_seq
    payload = actor.apply_batch(encode(commands))
    assert reader.on_events([(first_seq, actor.engine.next_seq - 1, payload)]) == (
        actor.engine.next_seq)
    [bought] = positions.positions("A")
    assert (bought.symbol, bought.net_quantity, bought.mark_price) == ("SYM0", 5, 9_000)
    assert [p.account for p in positions.all_positions()] == ["A", "B"]
    assert risk.exposure("B").symbols[0].position == -5
    assert risk.limits("A", "SYM0") == RiskLimitsConfig()
    assert risk.status() == RiskStatusRow(killed_accounts=["C"], halted_symbols=[])
    reply = Converter.positions(positions.all_positions())
    assert [(p.account, p.net_quantity, p.cost) for p in reply.positions] == [
        ("A", 5, "45000"), ("B", -5, "-45000"),
    ]


class _Done:
    """A push that has already been answered (what `ReaderFanout` expects of a `Call`)."""

    def done(self) -> bool:
        return True

    def result(self, timeout_s: float | None = None) -> int:
        return 0


class RecordingReader:
    """A `cluster.edge.publish.Reader` that records the batches pushed to it."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, int]] = []

    def push(self, batches: Sequence[tuple[int, int, bytes]]) -> _Done:
        self.batches.extend((first, last) for first, last, _ in batches)
        return _Done()


def test_a_batch_is_not_pushed_back_to_the_gateway_that_sent_it() -> None:
    """The book publishes a gateway's batch to every reader but that gateway (it has the
    events in the reply); batches of other origins still reach it."""
    from cluster.edge.publish import ReaderFanout

    readers: dict[str, Any] = {  # duck-typed `Reader`s: their pushes are answered at once
        name: RecordingReader() for name in ("risk", "gateway-0", "gateway-1")}
    fanout = ReaderFanout({"risk": readers["risk"]}, linger_s=0.0)
    try:
        fanout.add_reader("gateway-0", readers["gateway-0"], linger_s=0.0)
        fanout.add_reader("gateway-1", readers["gateway-1"], linger_s=0.0)
        book = BookActor(0, INSTRUMENTS, sink_factory=lambda: fanout)
        symbol = INSTRUMENTS[0].symbol

        def order(client_order_id: str) -> bytes:
            commands: list[Command] = [NewOrder(account="a", client_order_id=client_order_id,
                                                symbol=symbol, side=Side.BUY, quantity=1,
                                                price=100, ts_ns=1)]
            return encode(commands)

        first = book.engine.next_seq
        book.apply_batch_with_ends(order("own-1"), origin="gateway-0")
        book.apply_batch_with_ends(order("own-2"), origin="gateway-0")
        middle = book.engine.next_seq
        book.apply_batch_with_ends(order("other"), origin="gateway-1")
        book.apply_batch(order("direct"))  # a client that bypasses gateways: no origin
        last = book.engine.next_seq - 1
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(
            row["pending"] for row in book.reader_stats().values()
        ):
            time.sleep(0.01)
        stats = book.reader_stats()
    finally:
        fanout.close()
    assert stats["gateway-0"]["skipped"] == 2
    assert stats["gateway-0"]["sent"] == 2
    assert stats["gateway-1"]["skipped"] == 1
    assert stats["gateway-1"]["sent"] == 3
    assert (stats["risk"]["sent"], stats["risk"]["skipped"], stats["risk"]["dropped"]) == (
        4, 0, 0)
    assert readers["gateway-0"].batches[0][0] == middle
    assert readers["gateway-0"].batches[-1][1] == last
    assert readers["risk"].batches[0][0] == first
    assert [end for _, end in readers["risk"].batches][-1] == last
