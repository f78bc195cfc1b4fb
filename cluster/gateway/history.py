"""What a gateway reads from a shard's journal: the shard's picture at the journal's end, and
events older than the gateway remembers.

A gateway follows each shard's events as they are published, but it starts (or restarts) in
the middle of the log, and a client may resume an execution stream from before the gateway
started. The journal answers both exactly, because matching is deterministic: a private copy
of the shard's engine, started from the newest snapshot and fed the journaled batches, makes
the very events and books the live shard made.

These functions block (disk and CPU): the gateway runs them in a worker thread.

The journal is also the authority on where a shard's log ends (every event is journaled
before it is published): `JournalHistory.last_seq` lets a stream refuse a cursor beyond it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec

from cluster.storage.journal_files import numbered_segments
from cluster.storage.journal_readers import JournalWalk
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
    client_order_ids: list[tuple[str, str]] = []
    """The shard's idempotency window there, (account, client order id), oldest first."""


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
        """Replay the journal to its end; return the books, halts, kill switches and the
        idempotency window there."""
        replay = ShardReplay(self.directory, self.shard, self.instruments,
                             client_order_id_window=self.client_order_id_window)
        for _ in replay.batches():
            pass
        return ShardView(
            next_seq=replay.engine.next_seq,
            books={symbol: book.l2(FULL_DEPTH) for symbol, book in replay.engine.books.items()},
            halted_symbols=replay.risk.halted_symbols(),
            killed_accounts=replay.risk.killed_accounts(),
            client_order_ids=[(account, client_order_id) for account, client_order_id, _, _
                              in replay.engine.remembered()],
        )

    def events(self, from_seq: int, to_seq: int | None = None) -> Iterator[list[Event]]:
        """Yield the shard's events ``from_seq..to_seq`` batch by batch."""
        return replay_events(
            self.directory, self.shard, self.instruments, from_seq, to_seq,
            client_order_id_window=self.client_order_id_window,
        )

    def last_seq(self) -> int:
        """Return the seq of the journal's last event (0 if it holds none).

        Read only the newest segment, batch heads only: segments are named by their first
        seq, and `JournalWalk` applies the readers' rules (fencing, torn tail) to it.
        """
        journal = self.directory / "journal"
        if not journal.exists():
            return 0
        segments = numbered_segments(journal)
        if not segments:
            return 0
        walk = JournalWalk(segments, len(segments) - 1)
        for _ in walk.batches_from(_PAST_EVERY_SEQ):
            pass
        return walk.next_seq - 1


_PAST_EVERY_SEQ = 1 << 63
"""A ``from_seq`` no batch reaches: the walk decodes heads only and yields nothing."""
