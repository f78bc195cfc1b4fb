"""What a gateway reads from a shard's journal: the shard's picture at the journal's end, and
events older than the gateway remembers.

A gateway follows each shard's events as they are published, but it starts (or restarts) in
the middle of the log, and a client may resume an execution stream from before the gateway
started. The journal answers both exactly, because matching is deterministic: a private copy
of the shard's engine, started from the newest snapshot and fed the journaled batches, makes
the very events and books the live shard made.

These functions block (disk and CPU): the gateway runs them in a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec

from actors.book_actor import ShardState, build_shard
from cluster.journal import read_batches
from cluster.snapshots import SnapshotStore
from cluster.storage import SHARD_SNAPSHOT, replay_events
from protocols.messages import Event, Instrument

Levels = list[tuple[int, int, int]]
FULL_DEPTH = 1 << 30


class ShardView(msgspec.Struct, frozen=True, kw_only=True):
    """A shard's market-data state after event ``next_seq - 1``."""

    next_seq: int
    books: dict[str, tuple[Levels, Levels]]
    """Per symbol, (bids, asks) as ``(price, quantity, order_count)``, best first."""
    halted_symbols: list[str]
    killed_accounts: list[str]


class JournalHistory:
    """Read one shard's journal for a gateway."""

    def __init__(
        self,
        directory: str | Path,
        shard: int,
        instruments: Sequence[Instrument],
        client_order_id_window: int,
    ) -> None:
        self.directory = Path(directory)
        self.shard = shard
        self.instruments = list(instruments)
        self.client_order_id_window = client_order_id_window

    def view(self) -> ShardView:
        """Replay the journal to its end; return the books, halts and kill switches there."""
        found = SnapshotStore(self.directory / "snapshots").latest(SHARD_SNAPSHOT)
        state = msgspec.msgpack.decode(found[1], type=ShardState) if found is not None else None
        risk, engine = build_shard(
            self.shard, self.instruments, state,
            client_order_id_window=self.client_order_id_window,
        )
        journal = self.directory / "journal"
        if journal.exists():
            for batch in read_batches(journal, engine.next_seq):
                if batch.first_seq != engine.next_seq:
                    raise RuntimeError(
                        f"{journal}: batch starts at event {batch.first_seq}, the replay is at "
                        f"{engine.next_seq}"
                    )
                engine.apply(batch.commands)
        return ShardView(
            next_seq=engine.next_seq,
            books={symbol: book.l2(FULL_DEPTH) for symbol, book in engine.books.items()},
            halted_symbols=risk.halted_symbols(),
            killed_accounts=risk.killed_accounts(),
        )

    def events(self, from_seq: int, to_seq: int | None = None) -> Iterator[list[Event]]:
        """Yield the shard's events ``from_seq..to_seq`` batch by batch."""
        return replay_events(
            self.directory, self.shard, self.instruments, from_seq, to_seq,
            client_order_id_window=self.client_order_id_window,
        )
