"""A shard's durable storage, as the actors see it: journal, snapshots and replay.

One folder per shard under the cluster's data directory::

    <data_dir>/shard-<k>/journal/     segment files (cluster.storage.journal)
    <data_dir>/shard-<k>/snapshots/   book, risk and position snapshots (cluster.storage.snapshots)

`ShardStorage` is the book actor's `ShardLog`: it opens the journal as the shard's writer
(taking a new epoch, so a zombie predecessor is fenced), hands back the newest snapshot and the
batches journaled after it, appends, and saves snapshots. `ProjectionStorage` is what a shard's
reader needs: its own snapshots, and the shard's events replayed from the journal by a
private copy of the shard's engine (`replay_events`), which is also the researchers' replay.
Every copy is built and fed by `actors.core.shard` (`build_shard`, `replay_batch`), the path
the book actor's own recovery takes, so all of them decide alike.

Snapshot sequence numbers are the last event a snapshot includes; a snapshot newer than the
journal's end (possible only if the journal lost an unsynced tail under the ``interval`` or
``none`` policy) is never used.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec

from actors.core.shard import CLIENT_ORDER_ID_WINDOW, ShardState, build_shard, replay_batch
from cluster.storage import layout
from cluster.storage.journal import FsyncPolicy, Journal, read_batches
from cluster.storage.snapshots import SnapshotStore
from protocols.errors import ConfigError
from protocols.journal_format import CommandBatch
from protocols.messages import Command, Event, Instrument

log = logging.getLogger(__name__)

SHARD_SNAPSHOT = "shard"


def shard_directory(data_dir: str | Path, shard_id: int) -> Path:
    """Return the folder of one shard's journal and snapshots."""
    return Path(data_dir) / f"shard-{shard_id}"


class ShardStorage:
    """The book actor's journal and snapshots (a `ShardLog`)."""

    def __init__(
        self,
        directory: str | Path,
        *,
        fsync: FsyncPolicy | None = None,
        snapshots_kept: int = 3,
    ) -> None:
        self.directory = Path(directory)
        self.fsync = fsync or FsyncPolicy()
        self.snapshots = SnapshotStore(self.directory / "snapshots", keep=snapshots_kept)
        self.journal: Journal | None = None

    def load(self) -> tuple[ShardState | None, Iterator[CommandBatch]]:
        """Become the shard's writer; return the newest usable snapshot and the batches after it."""
        self.journal = Journal.open_writer(self.directory / "journal", fsync=self.fsync)
        last_seq = self.journal.next_seq - 1
        found = self.snapshots.latest(SHARD_SNAPSHOT, max_seq=last_seq)
        state = None
        from_seq = 1
        if found is not None:
            seq, payload = found
            state = msgspec.msgpack.decode(payload, type=ShardState)
            from_seq = seq + 1
        batches: Iterator[CommandBatch] = iter(())
        if last_seq >= from_seq:
            batches = read_batches(self.directory / "journal", from_seq)
        return state, batches

    def append(self, first_seq: int, last_seq: int, commands: Sequence[Command]) -> None:
        """Journal a batch per the fsync policy; raise `JournalFenced` if superseded."""
        assert self.journal is not None, "load() first: it makes this process the writer"
        self.journal.append(first_seq, last_seq, commands)

    def sync(self) -> None:
        """Flush what the ``interval`` policy has not yet synced."""
        if self.journal is not None:
            self.journal.sync()

    def save_snapshot(self, next_seq: int, state: ShardState) -> None:
        """Store ``state``, which covers every event before ``next_seq``."""
        self.snapshots.save(SHARD_SNAPSHOT, next_seq - 1, msgspec.msgpack.encode(state))

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()
            self.journal = None


class ShardStorageFactory:
    """Build a `ShardStorage` in the actor's own process (the journal is not picklable).

    With ``require_manifest`` (what a cluster's book actors get), the shard's data dir must
    already hold the manifest that `raytrade up` / `start_cluster` wrote there: a book started
    on a node that does not see the cluster's (shared) data dir refuses to start rather than
    begin an empty journal of its own.
    """

    def __init__(self, directory: str | Path, fsync: FsyncPolicy | None = None, *,
                 require_manifest: bool = False) -> None:
        self.directory = str(directory)
        self.fsync = fsync
        self.require_manifest = require_manifest

    def __call__(self) -> ShardStorage:
        if self.require_manifest:
            data_dir = Path(self.directory).parent
            if not (data_dir / layout.MANIFEST).is_file():
                raise ConfigError(
                    f"shard storage {self.directory}: {data_dir} holds no {layout.MANIFEST}, "
                    f"so this node does not see the cluster's data dir (mount the shared "
                    f"volume here at the same path); refusing to start an empty journal"
                )
        return ShardStorage(self.directory, fsync=self.fsync)


class ShardReplay:
    """A private copy of a shard, rebuilt from its storage: newest snapshot, then the journal.

    Matching is deterministic, so replaying gives the very events and books the live shard
    made, provided ``client_order_id_window`` is the shard's (it decides which resubmissions
    are recognised). Projections, gateways and researchers replay through this one path.
    """

    def __init__(
        self,
        directory: str | Path,
        shard_id: int,
        instruments: Sequence[Instrument],
        *,
        snapshot_max_seq: int | None = None,
        client_order_id_window: int = CLIENT_ORDER_ID_WINDOW,
    ) -> None:
        """Start from the newest valid snapshot whose last event is at most ``snapshot_max_seq``
        (any snapshot if None)."""
        self.directory = Path(directory)
        snapshots = SnapshotStore(self.directory / "snapshots")
        found = snapshots.latest(SHARD_SNAPSHOT, max_seq=snapshot_max_seq)
        state = msgspec.msgpack.decode(found[1], type=ShardState) if found is not None else None
        self.risk, self.engine = build_shard(
            shard_id, instruments, state, client_order_id_window=client_order_id_window
        )

    def batches(self) -> Iterator[tuple[CommandBatch, list[Event]]]:
        """Re-apply each journaled batch after the snapshot; yield it with its events.

        Raise `ReplayDivergedError` if the replay diverges from the journal's recorded ranges.
        """
        journal = self.directory / "journal"
        if not journal.exists():
            return
        for batch in read_batches(journal, self.engine.next_seq):
            yield batch, replay_batch(self.engine, batch, str(self.directory))


def replay_events(
    directory: str | Path,
    shard_id: int,
    instruments: Sequence[Instrument],
    from_seq: int = 1,
    to_seq: int | None = None,
    *,
    client_order_id_window: int = CLIENT_ORDER_ID_WINDOW,
) -> Iterator[list[Event]]:
    """Yield a shard's events ``from_seq..to_seq`` (to the journal's end if None), batch by batch,
    replayed from the newest snapshot at or before ``from_seq - 1`` (see `ShardReplay`)."""
    replay = ShardReplay(directory, shard_id, instruments, snapshot_max_seq=from_seq - 1,
                         client_order_id_window=client_order_id_window)
    for batch, events in replay.batches():
        # A batch's events are numbered first_seq..last_seq in order, so only the batches at
        # the two ends of the range need filtering; the others (all of a full replay) are
        # yielded as they are, without a copy and an attribute read per event.
        if batch.first_seq >= from_seq and (to_seq is None or batch.last_seq <= to_seq):
            wanted = events
        else:
            wanted = [event for event in events if event.seq >= from_seq]
            if to_seq is not None:
                wanted = [event for event in wanted if event.seq <= to_seq]
        if wanted:
            yield wanted
        if to_seq is not None and batch.last_seq >= to_seq:
            return


class ProjectionStorage:
    """A shard reader's snapshots, and the shard's events replayed from the journal."""

    def __init__(
        self,
        directory: str | Path,
        shard_id: int,
        instruments: Sequence[Instrument],
        *,
        client_order_id_window: int = CLIENT_ORDER_ID_WINDOW,
        snapshots_kept: int = 3,
    ) -> None:
        self.directory = Path(directory)
        self.shard_id = shard_id
        self.instruments = list(instruments)
        self.client_order_id_window = client_order_id_window
        self.snapshots = SnapshotStore(self.directory / "snapshots", keep=snapshots_kept)

    def events(self, from_seq: int, to_seq: int | None = None) -> Iterator[Sequence[Event]]:
        """Yield the shard's events ``from_seq..to_seq`` (to the journal's end if None)."""
        return replay_events(
            self.directory, self.shard_id, self.instruments, from_seq, to_seq,
            client_order_id_window=self.client_order_id_window,
        )

    def load_snapshot(self, name: str) -> tuple[int, bytes] | None:
        """Return the newest valid snapshot of this projection as ``(last event, payload)``."""
        return self.snapshots.latest(name)

    def save_snapshot(self, name: str, seq: int, payload: bytes) -> None:
        """Store this projection's state, which includes every event up to ``seq``."""
        self.snapshots.save(name, seq, payload)


class ProjectionStorageFactory:
    """Build a `ProjectionStorage` in the actor's own process."""

    def __init__(
        self,
        directory: str | Path,
        shard_id: int,
        instruments: Sequence[Instrument],
        client_order_id_window: int = CLIENT_ORDER_ID_WINDOW,
    ) -> None:
        self.directory = str(directory)
        self.shard_id = shard_id
        self.instruments = list(instruments)
        self.client_order_id_window = client_order_id_window

    def __call__(self) -> ProjectionStorage:
        return ProjectionStorage(
            self.directory, self.shard_id, self.instruments,
            client_order_id_window=self.client_order_id_window,
        )
