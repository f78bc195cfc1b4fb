"""A shard's reader feeds the market-data recorder; a failing recorder never fails the reader.

Real journal and real Parquet files, no Ray: the reader (`ShardReader`) is fed the way the
book actor's pushes feed it, and restarted the way Ray restarts it (a new object on the same
storage).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from actors.book_actor import BookActor
from actors.projections import ShardReader
from cluster.research.flow import FlowConfig, demo_instruments, generate_flow
from cluster.research.recorder import TRADES, RecorderFactory, read_recorded
from cluster.storage.journal import FsyncPolicy
from cluster.storage.shard import (
    ProjectionStorageFactory,
    ShardStorageFactory,
    replay_events,
)
from protocols.messages import Event, Trade, encode

INSTRUMENTS = demo_instruments(3)


def _journal(directory: Path, operations: int) -> list[tuple[int, int, bytes]]:
    """Trade a seeded flow into a real journal; return the pushes a reader would get."""
    book = BookActor(0, INSTRUMENTS, log_factory=ShardStorageFactory(directory, FsyncPolicy()))
    commands = generate_flow(INSTRUMENTS, FlowConfig(operations=operations, seed=4, accounts=5))
    pushes = []
    for index in range(0, len(commands), 100):
        first = book.engine.next_seq
        payload = book.apply_batch(encode(commands[index : index + 100]))
        if book.engine.next_seq > first:
            pushes.append((first, book.engine.next_seq - 1, payload))
    return pushes


def _trades(directory: Path) -> list[tuple[int, int, int]]:
    return sorted((event.seq, event.price, event.quantity)
                  for events in replay_events(directory, 0, INSTRUMENTS)
                  for event in events if type(event) is Trade)


def _reader(directory: Path, recorder: object) -> ShardReader:
    return ShardReader(0, INSTRUMENTS,
                       log_factory=ProjectionStorageFactory(directory, 0, INSTRUMENTS),
                       recorder_factory=recorder)  # type: ignore[arg-type]


def test_a_restarted_reader_records_each_trade_once(tmp_path: Path) -> None:
    pushes = _journal(tmp_path / "shard", 3000)
    out = tmp_path / "market-data"
    factory = RecorderFactory(out, 0, INSTRUMENTS, max_age_s=3600)
    first = _reader(tmp_path / "shard", factory)
    first.on_events(pushes[: len(pushes) // 2])
    first.recorder.flush()  # type: ignore[union-attr]
    first.on_events(pushes[len(pushes) // 2 : -3])  # buffered, never flushed: lost with it
    del first  # the process dies (its lock goes with it)
    second = _reader(tmp_path / "shard", factory)  # caught up from the journal
    second.on_events(pushes)  # pushes again from the start: the old ones are ignored
    second.recorder.close()  # type: ignore[union-attr]
    rows = read_recorded(out, TRADES).to_pylist()
    got = sorted((row["seq"], row["price"], row["quantity"]) for row in rows)
    assert got == _trades(tmp_path / "shard") and got


class _Broken:
    """A recorder whose disk is full."""

    opened = 0

    def __init__(self) -> None:
        _Broken.opened += 1

    position = 0

    def record(self, events: Sequence[Event]) -> None:
        raise OSError(28, "No space left on device")

    def maybe_flush(self) -> bool:
        raise OSError(28, "No space left on device")

    def close(self) -> None:
        raise OSError(28, "No space left on device")


def test_a_failing_recorder_never_fails_the_read_models(tmp_path: Path) -> None:
    reader = _reader(tmp_path / "shard", _Broken)  # before the shard trades: live pushes
    assert _Broken.opened == 1 and reader.recorder is not None
    pushes = _journal(tmp_path / "shard", 1500)
    healthy = ShardReader(0, INSTRUMENTS)
    healthy.on_events(pushes)
    reader.on_events(pushes[:5])
    assert reader.recorder is None and reader.recorder_failures == 1
    reader.on_events(pushes[5:10])  # within the retry delay: not opened again
    assert _Broken.opened == 1
    reader._recorder_retry_at = 0.0  # the delay is over: the next events open it again
    reader.on_events(pushes[10:])
    assert _Broken.opened == 2 and reader.recorder_failures == 2
    reader.ping()
    assert reader.state_hashes() == healthy.state_hashes()
    assert reader.next_seq == healthy.next_seq
