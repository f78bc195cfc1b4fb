"""The market-data recorder and the DuckDB queries over its files (real files, no Ray).

Events come from a real shard: a `BookActor` applying a seeded flow, or a few hand-written
orders where a rule is easier to see. The oracle of the recorded tables is the events
themselves (trades, L2 deltas) and the book's own L1 after each batch (top of book).
"""

from __future__ import annotations

import functools
import os
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.book_actor import BookActor
from cluster.config import InstrumentRegistry
from cluster.research.flow import FlowConfig, demo_instruments, generate_flow
from cluster.research.queries import MarketData, interval_ns, main, parse_time_ns
from cluster.research.recorder import (
    INPUT_SCHEMAS,
    L2,
    SCHEMAS,
    STATE_FOLDER,
    TIMESTAMP,
    TOP_OF_BOOK,
    TRADES,
    MarketDataRecorder,
    PartitionWriter,
    RecordedFile,
    RecorderClosedError,
    RecorderFailedError,
    RecorderLockedError,
    RecordingStateError,
    SequenceGapError,
    UnknownSymbolError,
    decimal_price,
    decimal_prices,
    read_recorded,
    record_journal,
    recorded_files,
)
from cluster.storage.journal import FsyncPolicy
from cluster.storage.shard import ShardStorageFactory, replay_events, shard_directory
from protocols.messages import (
    CancelOrder,
    Command,
    Event,
    LevelChanged,
    NewOrder,
    Side,
    Trade,
    decode_events,
    encode,
)

INSTRUMENTS = demo_instruments(4)
MIDNIGHT_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
BIG = 10**9
EventT = TypeVar("EventT", bound=Event)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def flow(operations: int = 3_000, seed: int = 5, **options: int) -> list[Command]:
    return generate_flow(INSTRUMENTS, FlowConfig(operations=operations, seed=seed, accounts=6,
                                                 **options))


def run(commands: list[Command], batch: int = 50, book: BookActor | None = None,
        ) -> list[list[Event]]:
    """Apply ``commands`` to a shard in batches; return each batch's events."""
    book = book if book is not None else BookActor(0, INSTRUMENTS)
    batches = []
    for index in range(0, len(commands), batch):
        events = decode_events(book.apply_batch(encode(commands[index : index + batch])))
        if events:
            batches.append(events)
    return batches


def journaled(data_dir: Path, commands: list[Command], batch: int = 50) -> list[list[Event]]:
    """Like `run`, journaling into ``data_dir``'s shard 0."""
    book = BookActor(0, INSTRUMENTS, log_factory=ShardStorageFactory(
        shard_directory(data_dir, 0), FsyncPolicy(mode="none")))
    try:
        return run(commands, batch, book)
    finally:
        assert book.log is not None
        book.log.close()  # type: ignore[attr-defined]


def record(directory: Path, batches: list[list[Event]], **options: Any) -> MarketDataRecorder:
    recorder = MarketDataRecorder(directory, 0, INSTRUMENTS, **options)
    for events in batches:
        recorder.record(events)
    recorder.close()
    return recorder


def of_type(batches: list[list[Event]], kind: type[EventT]) -> list[EventT]:
    return [event for events in batches for event in events if isinstance(event, kind)]


def rows(directory: Path, kind: str) -> list[dict[str, Any]]:
    """Every recorded row of ``kind``, ordered by symbol and seq (without ``ts``)."""
    table = read_recorded(directory, kind)
    return table.drop_columns(["ts"]).to_pylist()  # type: ignore[no-any-return]


def trades_from_files(directory: Path) -> list[Trade]:
    return [Trade(**{**row, "aggressor_side": Side(row["aggressor_side"])})
            for row in rows(directory, TRADES)]


def by_seq(events: list[EventT]) -> list[EventT]:
    return sorted(events, key=lambda event: event.seq)


def order(account: str, client_order_id: str, side: Side, price: int, quantity: int,
          ts_ns: int = MIDNIGHT_NS, symbol: str = "SYM0") -> NewOrder:
    return NewOrder(account=account, client_order_id=client_order_id, symbol=symbol, side=side,
                    price=price, quantity=quantity, ts_ns=ts_ns)


# ------------------------------------------------------------------------------ what is recorded


def test_recorded_trades_and_level_changes_equal_the_events(tmp_path: Path) -> None:
    """Every Trade is a row of ``trades`` with all its fields, and every LevelChanged a row of
    ``l2``, nothing more; the files' ``ts`` is ``timestamp[ns, UTC]`` equal to ``ts_ns``."""
    batches = run(flow())
    record(tmp_path, batches, max_rows=700)
    trades = of_type(batches, Trade)
    assert len(trades) > 300
    assert by_seq(trades_from_files(tmp_path)) == trades
    deltas = [LevelChanged(**{**row, "side": Side(row["side"])})
              for row in rows(tmp_path, L2)]
    assert by_seq(deltas) == of_type(batches, LevelChanged)
    for path in recorded_files(tmp_path):
        table = pq.read_table(path)
        kind = RecordedFile.read(path).kind
        assert table.schema.remove_metadata().equals(SCHEMAS[kind])
        assert table.schema.field("ts").type == TIMESTAMP
        assert table.column("ts").cast(pa.int64()).equals(table.column("ts_ns"))


def test_top_of_book_rows_are_the_books_L1_whenever_it_changes(tmp_path: Path) -> None:
    """A ``top_of_book`` row is written for a symbol exactly when its best bid or ask (price or
    quantity) after a batch differs from before it, and it equals the book's own L1."""
    book = BookActor(0, INSTRUMENTS)
    commands = flow(2_000)
    recorder = MarketDataRecorder(tmp_path, 0, INSTRUMENTS, max_rows=500)
    expected = []
    before = {symbol: book.engine.books[symbol].l1() for symbol in book.engine.books}
    for index in range(0, len(commands), 10):
        events = decode_events(book.apply_batch(encode(commands[index : index + 10])))
        recorder.record(events)
        for symbol, engine_book in book.engine.books.items():
            after = engine_book.l1()
            bid, ask = after
            quote = (bid[0] if bid else None, bid[1] if bid else 0,
                     ask[0] if ask else None, ask[1] if ask else 0)
            assert recorder.top_of_book(symbol) == quote
            if after != before[symbol]:
                last = [e for e in events if type(e) is LevelChanged and e.symbol == symbol][-1]
                expected.append({"seq": last.seq, "ts_ns": last.ts_ns, "bid_price": quote[0],
                                 "bid_quantity": quote[1], "ask_price": quote[2],
                                 "ask_quantity": quote[3], "symbol": symbol})
            before[symbol] = after
    recorder.close()
    expected.sort(key=lambda row: (row["symbol"], row["seq"]))
    assert len(expected) > 300
    assert rows(tmp_path, TOP_OF_BOOK) == expected


def test_files_are_partitioned_by_kind_symbol_and_utc_day(tmp_path: Path) -> None:
    """Rows go to ``kind=K/symbol=S/date=YYYY-MM-DD/``, by the UTC day of their ts_ns; a
    flush across midnight writes a file for each day; the metadata names the scale."""
    batches = run(flow(2_000, ts_start_ns=MIDNIGHT_NS - 10_000_000, ts_step_ns=10_000))
    record(tmp_path, batches, max_rows=BIG)
    dates = {path.parent.name for path in recorded_files(tmp_path, TRADES)}
    assert dates == {"date=2025-12-31", "date=2026-01-01"}
    for path in recorded_files(tmp_path):
        info = RecordedFile.read(path)
        assert path.parent == tmp_path / f"kind={info.kind}" / f"symbol={info.symbol}" / \
            f"date={info.date}"
        assert (info.shard_id, info.first_seq, info.price_scale, info.tick_size) == (0, 1, 2, 1)
        days = {value // (86_400 * 10**9) for value in pq.read_table(path)["ts_ns"].to_pylist()}
        assert len(days) == 1
    assert by_seq(trades_from_files(tmp_path)) == of_type(batches, Trade)


def test_decimal_prices_use_the_scale_exactly() -> None:
    """Integer prices become decimals by the instrument's scale, without rounding."""
    assert decimal_price(12345, 2) == Decimal("123.45")
    assert decimal_price(-7, 3) == Decimal("-0.007")
    converted = decimal_prices(pa.array([12345, None, -1, 2**62], pa.int64()), 2)
    assert converted.type == pa.decimal128(38, 2)
    assert converted.to_pylist() == [Decimal("123.45"), None, Decimal("-0.01"),
                                     Decimal(2**62).scaleb(-2)]


# ------------------------------------------------------------------------------ sequence


def test_a_gap_raises_and_takes_nothing(tmp_path: Path) -> None:
    """An event past the next expected seq raises `SequenceGapError` naming both, and nothing
    of that call is taken; feeding the missing events first works."""
    batches = run(flow(500))
    recorder = MarketDataRecorder(tmp_path, 0, INSTRUMENTS, max_rows=BIG, max_age_s=BIG)
    recorder.record(batches[0])
    with pytest.raises(SequenceGapError) as raised:
        recorder.record(batches[2])
    assert (raised.value.expected, raised.value.received) == (batches[1][0].seq,
                                                              batches[2][0].seq)
    assert recorder.next_seq == batches[1][0].seq
    with pytest.raises(SequenceGapError):
        recorder.record(batches[1][:1] + batches[1][2:])  # a hole inside one call
    for events in batches[1:]:
        recorder.record(events)
    recorder.close()
    assert by_seq(trades_from_files(tmp_path)) == of_type(batches, Trade)


def test_events_already_taken_are_ignored(tmp_path: Path) -> None:
    """Batches sent again (at-least-once delivery, a replay from seq 1) add nothing."""
    batches = run(flow(800))
    recorder = MarketDataRecorder(tmp_path, 0, INSTRUMENTS, max_rows=300)
    for events in batches:
        recorder.record(events)
        recorder.record(events)
    for events in batches:
        recorder.record(events)
    recorder.close()
    assert by_seq(trades_from_files(tmp_path)) == of_type(batches, Trade)


def test_an_unknown_symbol_raises(tmp_path: Path) -> None:
    """A trade or level change of a symbol the recorder was not given is refused."""
    batches = run(flow(300))
    recorder = MarketDataRecorder(tmp_path, 0, INSTRUMENTS[:1])
    with pytest.raises(UnknownSymbolError):
        for events in batches:
            recorder.record(events)


# ------------------------------------------------------------------------------ flushing


def test_flush_by_size_bounds_the_buffer(tmp_path: Path) -> None:
    """At the end of the call that reaches ``max_rows`` buffered rows it flushes: the buffer
    never holds more than max_rows plus one call's rows, and the position moves at flushes."""
    batches = run(flow(2_000))
    recorder = MarketDataRecorder(tmp_path, 0, INSTRUMENTS, max_rows=200, max_age_s=BIG)
    positions = set()
    for events in batches:
        recorder.record(events)
        assert recorder.buffered_rows < 200
        positions.add(recorder.position)
        assert recorder.position in (0, events[-1].seq) or recorder.position < events[0].seq
    assert recorder.flushes > 5
    assert len(positions) == recorder.flushes + 1
    recorder.close()
    assert recorder.position == batches[-1][-1].seq


def test_flush_by_age_on_record_and_on_maybe_flush(tmp_path: Path) -> None:
    """With few rows, the oldest unflushed event's age decides: `maybe_flush` flushes at
    ``max_age_s`` and not before; `record` checks the age too."""
    clock = FakeClock()
    batches = run(flow(300))
    recorder = MarketDataRecorder(tmp_path, 0, INSTRUMENTS, max_rows=BIG, max_age_s=5.0,
                                  clock=clock)
    recorder.record(batches[0])
    clock.now = 4.9
    assert recorder.maybe_flush() is False
    recorder.record(batches[1])
    assert recorder.position == 0
    clock.now = 5.0
    assert recorder.maybe_flush() is True
    assert recorder.position == batches[1][-1].seq
    assert recorder.maybe_flush() is False  # nothing pending
    recorder.record(batches[2])  # starts a new age at 5.0
    clock.now = 9.0
    recorder.record(batches[3])
    assert recorder.position == batches[1][-1].seq
    clock.now = 10.0
    recorder.record(batches[4])
    assert recorder.position == batches[4][-1].seq


def test_a_flush_commits_the_position_even_without_rows(tmp_path: Path) -> None:
    """Events that make no rows (rejects) still move the durable position."""
    book = BookActor(0, INSTRUMENTS)
    cancel: list[Command] = [CancelOrder(account="A", client_order_id="x", symbol="SYM0",
                                         order_id=99, ts_ns=MIDNIGHT_NS)]
    events = decode_events(book.apply_batch(encode(cancel)))
    recorder = MarketDataRecorder(tmp_path, 0, INSTRUMENTS)
    recorder.record(events)
    recorder.close()
    assert recorded_files(tmp_path) == []
    assert MarketDataRecorder(tmp_path, 0, INSTRUMENTS).position == events[-1].seq


def test_a_closed_recorder_refuses_work(tmp_path: Path) -> None:
    """After `close` (which flushes) every call raises `RecorderClosedError`."""
    batches = run(flow(200))
    recorder = MarketDataRecorder(tmp_path, 0, INSTRUMENTS)
    recorder.record(batches[0])
    recorder.close()
    recorder.close()
    assert recorder.position == batches[0][-1].seq
    with pytest.raises(RecorderClosedError):
        recorder.record(batches[1])


# ------------------------------------------------------------------------------ recovery


def uninterrupted(tmp_path: Path, batches: list[list[Event]]) -> Path:
    directory = tmp_path / "uninterrupted"
    record(directory, batches, max_rows=BIG)
    return directory


def assert_same_recording(directory: Path, reference: Path) -> None:
    for kind in (TRADES, TOP_OF_BOOK, L2):
        recorded = rows(directory, kind)
        assert recorded == rows(reference, kind), kind
        seqs = [(row["symbol"], row["seq"]) for row in recorded]
        assert len(seqs) == len(set(seqs)), f"{kind}: a row is recorded twice"


def crash_after(directory: Path, batches: list[list[Event]], count: int) -> int:
    """Record ``count`` batches with frequent flushes and drop the recorder without closing
    it (what a killed process leaves); return its last durable position."""
    recorder = MarketDataRecorder(directory, 0, INSTRUMENTS, max_rows=250, max_age_s=BIG)
    for events in batches[:count]:
        recorder.record(events)
    while recorder.buffered_rows == 0:  # the crash must lose buffered rows
        recorder.record(batches[count])
        count += 1
    position = recorder.position
    del recorder
    return position


@pytest.mark.parametrize("refeed", ["from seq 1", "from position + 1"])
def test_a_crash_then_a_refeed_records_each_event_exactly_once(tmp_path: Path,
                                                               refeed: str) -> None:
    """After a crash (buffered rows lost), a new recorder recovers its position from the
    directory; fed again from seq 1 or from ``position + 1`` (replayed from the journal), the
    files equal an uninterrupted run's: no gap, no duplicate, top of book continuous."""
    batches = journaled(tmp_path / "data", flow())
    reference = uninterrupted(tmp_path, batches)
    directory = tmp_path / "recording"
    position = crash_after(directory, batches, len(batches) // 2)
    assert 0 < position < batches[len(batches) // 2][0].seq
    recorder = MarketDataRecorder(directory, 0, INSTRUMENTS, max_rows=250)
    assert recorder.position == position
    if refeed == "from seq 1":
        feed = batches
    else:
        feed = list(replay_events(shard_directory(tmp_path / "data", 0), 0, INSTRUMENTS,
                                  recorder.position + 1))
        assert feed[0][0].seq == position + 1
    for events in feed:
        recorder.record(events)
    recorder.close()
    assert_same_recording(directory, reference)


@functools.cache
def small_run() -> tuple[list[list[Event]], dict[str, list[dict[str, Any]]]]:
    """A short flow's batches and its uninterrupted recording's rows (computed once)."""
    batches = run(flow(1_200, seed=9), batch=40)
    with tempfile.TemporaryDirectory() as directory:
        record(Path(directory), batches, max_rows=BIG)
        return batches, {kind: rows(Path(directory), kind) for kind in (TRADES, TOP_OF_BOOK, L2)}


@settings(max_examples=12, deadline=None)
@given(max_rows=st.integers(60, 600), crashes=st.lists(st.integers(1, 29), max_size=3),
       from_start=st.booleans())
def test_any_crash_points_give_the_uninterrupted_recording(
    max_rows: int, crashes: list[int], from_start: bool
) -> None:
    """Whatever the flush size and wherever the crashes fall, refeeding (from seq 1 or from
    the recovered position) gives exactly the uninterrupted recording."""
    batches, expected = small_run()
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)

        def reopen() -> MarketDataRecorder:
            return MarketDataRecorder(directory, 0, INSTRUMENTS, max_rows=max_rows,
                                      max_age_s=BIG)

        recorder = reopen()
        pending = sorted(set(crashes))
        index = 0
        while index < len(batches):
            recorder.record(batches[index])
            index += 1
            if pending and index >= pending[0]:
                pending.pop(0)
                del recorder  # a crash: buffered rows are lost
                recorder = reopen()
                position = recorder.position
                index = 0 if from_start else next(
                    number for number, events in enumerate(batches) if events[-1].seq > position)
                assert from_start or batches[index][0].seq == position + 1
        recorder.close()
        for kind, wanted in expected.items():
            assert rows(directory, kind) == wanted, kind


def test_top_of_book_carries_the_levels_from_before_the_restart(tmp_path: Path) -> None:
    """The first quote after a restart still shows the side that did not change since before
    it: the levels are restored with the position, not rebuilt from what comes after."""
    book = BookActor(0, INSTRUMENTS)
    before = run([order("A", "1", Side.BUY, 9_900, 5), order("B", "2", Side.SELL, 10_100, 7)],
                 book=book)
    recorder = MarketDataRecorder(tmp_path, 0, INSTRUMENTS)
    for events in before:
        recorder.record(events)
    recorder.flush()
    del recorder
    after = run([order("B", "3", Side.SELL, 10_000, 2, ts_ns=MIDNIGHT_NS + 1)], book=book)
    recorder = MarketDataRecorder(tmp_path, 0, INSTRUMENTS)
    assert recorder.top_of_book("SYM0") == (9_900, 5, 10_100, 7)
    recorder.record(after[0])
    recorder.close()
    quotes = [(row["bid_price"], row["bid_quantity"], row["ask_price"], row["ask_quantity"])
              for row in rows(tmp_path, TOP_OF_BOOK)]
    assert quotes == [(9_900, 5, 10_100, 7), (9_900, 5, 10_000, 2)]


def test_files_of_an_interrupted_flush_and_temporaries_are_removed(tmp_path: Path) -> None:
    """A flush that died before its commit left renamed files (range past the position) and a
    half-written temporary: the next recorder deletes both, then the refeed writes them
    properly. Other shards' files are left alone."""
    batches = run(flow())
    reference = uninterrupted(tmp_path, batches)
    directory = tmp_path / "recording"
    position = crash_after(directory, batches, len(batches) // 2)
    # what the dead flush had written: real files with its range, and a torn temporary
    writer = PartitionWriter(directory, 0, INSTRUMENTS)
    junk = INPUT_SCHEMAS[TRADES].empty_table()
    junk = pa.Table.from_pylist([{name: 0 if name not in {"maker_account", "taker_account",
                                  "maker_client_order_id", "taker_client_order_id"} else "X"
                                  for name in junk.column_names}], schema=INPUT_SCHEMAS[TRADES])
    orphans = writer.write(TRADES, "SYM1", junk, position + 1, position + 50)
    torn = orphans[0].parent / ".shard-0-abc123.tmp"
    torn.write_bytes(b"PAR1 half a footer")
    other_shard = PartitionWriter(directory, 1, INSTRUMENTS).write(TRADES, "SYM1", junk, 1, 9)
    recorder = MarketDataRecorder(directory, 0, INSTRUMENTS, max_rows=250)
    assert recorder.position == position
    assert not orphans[0].exists() and not torn.exists()
    assert other_shard[0].exists()
    for events in batches:
        recorder.record(events)
    recorder.close()
    other_shard[0].unlink()
    assert_same_recording(directory, reference)


def test_a_damaged_newest_commit_falls_back_to_the_one_before(tmp_path: Path) -> None:
    """The commit record keeps two generations: if the newest is damaged the one before it is
    used, the files of the flush after it are removed, and the refeed restores them."""
    batches = run(flow())
    reference = uninterrupted(tmp_path, batches)
    directory = tmp_path / "recording"
    crash_after(directory, batches, len(batches) // 2)
    snaps = sorted((directory / STATE_FOLDER).glob("*.snap"))
    assert len(snaps) == 2
    data = bytearray(snaps[-1].read_bytes())
    data[-3] ^= 0xFF
    snaps[-1].write_bytes(bytes(data))
    older = int(snaps[0].stem.rsplit("-", 1)[1])
    recorder = MarketDataRecorder(directory, 0, INSTRUMENTS, max_rows=250)
    assert recorder.position == older
    for events in batches:
        recorder.record(events)
    recorder.close()
    assert_same_recording(directory, reference)


def test_files_without_a_commit_record_are_refused_not_deleted(tmp_path: Path) -> None:
    """If the commit records are gone, the files' position is unknown: refuse, delete nothing."""
    batches = run(flow())
    record(tmp_path, batches, max_rows=250)
    files = recorded_files(tmp_path)
    for snap in (tmp_path / STATE_FOLDER).glob("*.snap"):
        snap.unlink()
    with pytest.raises(RecordingStateError):
        MarketDataRecorder(tmp_path, 0, INSTRUMENTS)
    assert recorded_files(tmp_path) == files


def test_a_first_flush_that_never_committed_is_discarded(tmp_path: Path) -> None:
    """Files from seq 1 without any commit record are a first flush that died: removed."""
    batches = run(flow(300))
    record(tmp_path, batches, max_rows=BIG)
    for snap in (tmp_path / STATE_FOLDER).glob("*.snap"):
        snap.unlink()
    recorder = MarketDataRecorder(tmp_path, 0, INSTRUMENTS)
    assert recorder.position == 0
    assert recorded_files(tmp_path) == []
    recorder.close()


def test_a_failed_flush_removes_its_files_and_fails_the_recorder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush that cannot write removes what it wrote and refuses further work; a new
    recorder recovers from the last commit."""
    batches = run(flow())
    reference = uninterrupted(tmp_path, batches)
    directory = tmp_path / "recording"
    recorder = MarketDataRecorder(directory, 0, INSTRUMENTS, max_rows=BIG)
    for events in batches[:10]:
        recorder.record(events)
    recorder.flush()
    files = recorded_files(directory)
    for events in batches[10:20]:
        recorder.record(events)
    real_write = recorder.writer.write
    calls = []

    def failing_write(*args: Any) -> list[Path]:
        calls.append(args)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_write(*args)

    monkeypatch.setattr(recorder.writer, "write", failing_write)
    with pytest.raises(OSError, match="No space"):
        recorder.flush()
    assert recorded_files(directory) == files
    with pytest.raises(RecorderFailedError):
        recorder.record(batches[20])
    recorder.close()  # releases the lock without flushing
    recorder = MarketDataRecorder(directory, 0, INSTRUMENTS)
    for events in batches:
        recorder.record(events)
    recorder.close()
    assert_same_recording(directory, reference)


def test_one_recorder_per_shard_at_a_time(tmp_path: Path) -> None:
    """A second recorder of the same shard on the same directory is refused while the first
    lives; another shard's is not; once the first is closed the shard is free."""
    first = MarketDataRecorder(tmp_path, 0, INSTRUMENTS)
    with pytest.raises(RecorderLockedError):
        MarketDataRecorder(tmp_path, 0, INSTRUMENTS)
    MarketDataRecorder(tmp_path, 1, INSTRUMENTS).close()
    first.close()
    MarketDataRecorder(tmp_path, 0, INSTRUMENTS).close()


def test_record_journal_records_a_data_dir_and_resumes(tmp_path: Path) -> None:
    """`record_journal` records every shard of a data dir offline; run again after more
    events it resumes at its position, and the result equals one recording of everything."""
    commands = flow(4_000)
    data = tmp_path / "data"
    registry = InstrumentRegistry(tuple(INSTRUMENTS))
    first = journaled(data, commands[:2_000])
    out = tmp_path / "out"
    assert record_journal(data, out, registry, progress=False) == {0: first[-1][-1].seq}
    assert record_journal(data, out, registry, progress=False) == {0: first[-1][-1].seq}
    book = BookActor(0, INSTRUMENTS, log_factory=ShardStorageFactory(
        shard_directory(data, 0), FsyncPolicy(mode="none")))
    rest = run(commands[2_000:], book=book)
    book.log.close()  # type: ignore[union-attr]
    positions = record_journal(data, out, registry, max_rows=300, progress=False)
    assert positions == {0: rest[-1][-1].seq}
    assert_same_recording(out, uninterrupted(tmp_path, first + rest))


# ------------------------------------------------------------------------------ queries


HAND_TRADES = [  # seq, seconds after midnight, price, quantity, taker, maker, aggressor
    (1, 0.0, 10_000, 1, "T1", "M1", Side.BUY),
    (2, 10.0, 10_500, 2, "T1", "M2", Side.BUY),
    (3, 59.5, 9_900, 3, "M1", "T1", Side.SELL),
    (4, 59.5, 9_950, 1, "M2", "T1", Side.SELL),
    (5, 60.0, 10_100, 1, "T1", "M1", Side.BUY),
    (6, 130.0, 10_200, 5, "M2", "M1", Side.SELL),
]


def hand_recording(directory: Path) -> Path:
    """Write `HAND_TRADES` of SYM0 through the writer (no matching), as a benchmark does."""
    schema = INPUT_SCHEMAS[TRADES]
    rows_ = [{"seq": seq, "ts_ns": MIDNIGHT_NS + int(seconds * 10**9), "price": price,
              "quantity": quantity, "aggressor_side": int(side), "maker_order_id": 100 + seq,
              "maker_account": maker, "maker_client_order_id": f"m{seq}", "maker_leaves": 0,
              "taker_order_id": 200 + seq, "taker_account": taker,
              "taker_client_order_id": f"t{seq}", "taker_leaves": 0}
             for seq, seconds, price, quantity, taker, maker, side in HAND_TRADES]
    writer = PartitionWriter(directory, 0, INSTRUMENTS)
    writer.write(TRADES, "SYM0", pa.Table.from_pylist(rows_[:3], schema=schema), 1, 3)
    writer.write(TRADES, "SYM0", pa.Table.from_pylist(rows_[3:], schema=schema), 4, 6)
    writer.sync()
    return directory


def test_bars_equal_a_hand_computation(tmp_path: Path) -> None:
    """One-minute OHLCV bars: open and close are the first and last trade by seq (4 closes
    the first minute although 3 has the same time), empty minutes have no bar."""
    bars = MarketData(hand_recording(tmp_path)).bars("1m", symbol="SYM0")
    picked = bars.select(["symbol", "bar_ns", "open", "high", "low", "close", "volume",
                          "trades"]).to_pylist()
    minute = 60 * 10**9
    assert [tuple(row.values()) for row in picked] == [
        ("SYM0", MIDNIGHT_NS, 10_000, 10_500, 9_900, 9_950, 7, 4),
        ("SYM0", MIDNIGHT_NS + minute, 10_100, 10_100, 10_100, 10_100, 1, 1),
        ("SYM0", MIDNIGHT_NS + 2 * minute, 10_200, 10_200, 10_200, 10_200, 5, 1),
    ]
    assert bars["vwap"][0].as_py() == pytest.approx((10_000 + 21_000 + 29_700 + 9_950) / 7)
    assert bars.schema.field("bar").type == TIMESTAMP
    assert MarketData(tmp_path).bars("30s", symbol="SYM0")["trades"].to_pylist() == [2, 2, 1, 1]
    assert MarketData(tmp_path).bars("1m", symbol="SYM1").num_rows == 0


def test_vwap_equals_numpy(tmp_path: Path) -> None:
    """VWAP per symbol is sum(price * quantity) / sum(quantity) over its trades."""
    batches = run(flow())
    record(tmp_path, batches, max_rows=600)
    trades = of_type(batches, Trade)
    result = {row["symbol"]: row for row in MarketData(tmp_path).vwap().to_pylist()}
    assert set(result) == {instrument.symbol for instrument in INSTRUMENTS}
    for symbol, row in result.items():
        price = np.array([t.price for t in trades if t.symbol == symbol], dtype=np.float64)
        quantity = np.array([t.quantity for t in trades if t.symbol == symbol],
                            dtype=np.float64)
        assert row["vwap"] == pytest.approx(np.sum(price * quantity) / np.sum(quantity),
                                            rel=1e-12)
        assert row["volume"] == int(quantity.sum())
        assert row["notional"] == sum(t.price * t.quantity for t in trades
                                      if t.symbol == symbol)
        assert row["trades"] == len(price)


def test_fills_per_account_match_the_trades(tmp_path: Path) -> None:
    """An account's fills are its taker and maker legs with its own side; the totals per
    account agree with them, and every symbol's net positions sum to zero."""
    batches = run(flow())
    record(tmp_path, batches, max_rows=600)
    trades = of_type(batches, Trade)
    data = MarketData(tmp_path)
    account = "ACC002"
    fills = data.fills(account)
    expected = sorted(
        [(t.ts_ns, t.symbol, t.seq, "taker", t.aggressor_side.name, t.price, t.quantity)
         for t in trades if t.taker_account == account]
        + [(t.ts_ns, t.symbol, t.seq, "maker",
            Side(3 - t.aggressor_side).name, t.price, t.quantity)
           for t in trades if t.maker_account == account]
    )
    got = [(row["ts_ns"], row["symbol"], row["seq"], row["role"], row["side"], row["price"],
            row["quantity"]) for row in fills.to_pylist()]
    assert got == expected
    totals = data.fills_by_account()
    mine = [row for row in totals.to_pylist() if row["account"] == account]
    assert sum(row["fills"] for row in mine) == len(expected)
    for row in mine:
        bought = sum(f[6] for f in expected if f[1] == row["symbol"] and f[4] == "BUY")
        sold = sum(f[6] for f in expected if f[1] == row["symbol"] and f[4] == "SELL")
        assert (row["bought"], row["sold"], row["net"]) == (bought, sold, bought - sold)
    for instrument in INSTRUMENTS:
        assert sum(row["net"] for row in totals.to_pylist()
                   if row["symbol"] == instrument.symbol) == 0
    only = data.fills(account, symbol="SYM1")
    assert set(only["symbol"].to_pylist()) == {"SYM1"}


def test_spread_is_sampled_as_of_each_interval(tmp_path: Path) -> None:
    """The spread series has one row per interval from the first quote to the last; each row
    shows the quote in force at the interval's end, quiet intervals carry it forward."""
    book = BookActor(0, INSTRUMENTS)
    second = 10**9
    batches = run([order("A", "1", Side.BUY, 9_900, 5, ts_ns=MIDNIGHT_NS)], book=book)
    batches += run([order("B", "2", Side.SELL, 10_100, 7, ts_ns=MIDNIGHT_NS + second // 2)],
                   book=book)
    batches += run([order("B", "3", Side.SELL, 10_000, 2, ts_ns=MIDNIGHT_NS + 3 * second)],
                   book=book)
    record(tmp_path, batches)
    series = MarketData(tmp_path).spread("SYM0", "1s")
    got = [(row["bucket_ns"] - MIDNIGHT_NS, row["bid_price"], row["ask_price"], row["spread"],
            row["updates"], row["mean_spread"]) for row in series.to_pylist()]
    assert got == [
        (0, 9_900, 10_100, 200, 2, 200.0),  # the first quote has no ask: not in the mean
        (second, 9_900, 10_100, 200, 0, None),
        (2 * second, 9_900, 10_100, 200, 0, None),
        (3 * second, 9_900, 10_000, 100, 1, 100.0),
    ]
    assert series["bid_quantity"].to_pylist() == [5, 5, 5, 5]
    assert series["ask_quantity"].to_pylist() == [7, 7, 7, 2]
    window = MarketData(tmp_path).spread("SYM0", "1s", start_ns=MIDNIGHT_NS + 2 * second,
                                         end_ns=MIDNIGHT_NS + 4 * second)
    assert window.to_pylist() == series.to_pylist()[2:]  # the quote from before the window


def test_queries_of_an_empty_recording_return_no_rows(tmp_path: Path) -> None:
    """No files yet: every query answers an empty table with its columns."""
    data = MarketData(tmp_path)
    assert data.bars("1m").num_rows == 0
    assert data.vwap().num_rows == 0
    assert data.spread("SYM0").num_rows == 0
    assert data.fills("A").num_rows == 0
    assert "net" in data.fills_by_account().column_names


def test_intervals_and_times_parse() -> None:
    """Intervals are a count and a unit; times are nanoseconds or ISO 8601 (UTC if naive)."""
    assert interval_ns("1m") == 60 * 10**9
    assert interval_ns("250ms") == 250 * 10**6
    assert interval_ns("1d") == 86_400 * 10**9
    for bad in ("", "1", "m", "1 minute", "0s"):
        with pytest.raises(ValueError):
            interval_ns(bad)
    assert parse_time_ns("2026-01-01T00:00:00") == MIDNIGHT_NS
    assert parse_time_ns("2026-01-01T01:00:00+01:00") == MIDNIGHT_NS
    assert parse_time_ns("2026-01-01T00:00:00.000001Z") == MIDNIGHT_NS + 1_000
    assert parse_time_ns(str(MIDNIGHT_NS + 7)) == MIDNIGHT_NS + 7


def test_the_query_command_prints_decimal_prices(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """``raytrade query bars`` prints prices with the files' scale; bad input exits 2."""
    hand_recording(tmp_path)
    assert main(["bars", "--data", str(tmp_path), "--symbol", "SYM0", "--interval", "1m"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["symbol", "bar", "open", "high", "low", "close", "volume",
                                "trades", "vwap"]
    assert lines[2].split() == ["SYM0", "2026-01-01T00:00:00Z", "100.00", "105.00", "99.00",
                                "99.50", "7", "4", "100.928571"]
    assert lines[3].split()[1] == "2026-01-01T00:01:00Z"
    assert main(["vwap", "--data", str(tmp_path)]) == 0
    assert "SYM0" in capsys.readouterr().out
    assert main(["fills", "--data", str(tmp_path), "--account", "T1",
                 "--start", "2026-01-01T00:00:30", "--end", str(MIDNIGHT_NS + 61 * 10**9)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 + 3 and "99.00" in printed[2] and "101.00" in printed[4]
    assert main(["bars", "--data", str(tmp_path), "--interval", "5x"]) == 2
    assert main(["bars", "--data", str(tmp_path / "missing")]) == 2
    assert main(["nonsense"]) == 2
    capsys.readouterr()


def test_recorder_state_is_small_and_versioned(tmp_path: Path) -> None:
    """The commit record holds the format, the shard, the position and the levels only."""
    batches = run(flow(1_000))
    recorder = record(tmp_path, batches)
    snaps = sorted((tmp_path / STATE_FOLDER).glob("*.snap"))
    payload = snaps[-1].read_bytes()[32:]
    decoded = msgspec.msgpack.decode(payload)
    assert decoded["format"] == 1 and decoded["shard_id"] == 0
    assert decoded["position"] == recorder.position
    assert set(decoded["levels"]) <= {instrument.symbol for instrument in INSTRUMENTS}
    assert os.path.getsize(snaps[-1]) < 20_000
