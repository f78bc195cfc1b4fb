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

from cluster.storage.shard import ShardReplay, replay_events
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
        replay = ShardReplay(self.directory, self.shard, self.instruments,
                             client_order_id_window=self.client_order_id_window)
        for _ in replay.batches():
            pass
        return ShardView(
            next_seq=replay.engine.next_seq,
            books={symbol: book.l2(FULL_DEPTH) for symbol, book in replay.engine.books.items()},
            halted_symbols=replay.risk.halted_symbols(),
            killed_accounts=replay.risk.killed_accounts(),
        )

    def events(self, from_seq: int, to_seq: int | None = None) -> Iterator[list[Event]]:
        """Yield the shard's events ``from_seq..to_seq`` batch by batch."""
        return replay_events(
            self.directory, self.shard, self.instruments, from_seq, to_seq,
            client_order_id_window=self.client_order_id_window,
        )
