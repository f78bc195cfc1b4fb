"""Read a shard's journal: the batches in order, or the raw frames, while a writer appends.

The book actor's recovery, projections, gateways and researchers read a shard's batches with
`read_batches` (through `cluster.storage.shard`), and the writer's recovery scans the journal
with the same `JournalWalk`, so a reader and a recovering writer agree on every batch
("startup and crash recovery share one code path"). Reading takes no lock and never writes: a
reader stops quietly at a bad last frame (the writer may be in the middle of it) and raises
`JournalCorrupt` for damage before it.

Fencing, as a reader applies it: once it has read ``EpochStarted(E)``, or inside a segment whose
header says epoch ``E``, every record of a lower epoch belongs to a superseded writer (a zombie
that appended after its successor took over) and is skipped. Why that is enough is told in
`cluster.storage.journal`.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator
from pathlib import Path

import msgspec

from cluster.storage.journal_errors import JournalCorrupt
from cluster.storage.journal_files import SegmentReader, numbered_segments
from protocols.journal_format import (
    BatchHead,
    CommandBatch,
    EpochStarted,
    decode_record,
    decode_record_head,
)


class RawFrame(msgspec.Struct, frozen=True, kw_only=True):
    """One valid frame as stored: where it is and its payload."""

    segment: Path
    """The segment file that holds the frame."""
    offset: int
    """Byte offset of the frame header in the segment file."""
    payload: bytes
    """The encoded record (see `protocols.journal_format`)."""


class JournalWalk:
    """One pass over the journal applying the rules every reader shares.

    Sequence: each accepted batch starts where the previous one ended, and each segment starts
    where the previous one ended. Fencing: after ``EpochStarted(E)``, or inside a segment
    created by epoch ``E``, records of lower epochs are a superseded writer's and are skipped.
    Only the last segment may end in a torn tail. After the pass the counters say what it saw.
    """

    def __init__(self, segments: list[tuple[int, Path]], start_index: int) -> None:
        """Walk ``segments`` (as `numbered_segments` lists them) from ``start_index`` on."""
        self.segments = segments
        self.start_index = start_index
        self.next_seq = segments[start_index][0] if segments else 1
        """First sequence number of the next batch the journal may hold."""
        self.min_epoch = 0
        """Records of lower epochs are skipped (a superseded writer's)."""
        self.max_epoch = 0
        """Highest epoch of any accepted record or segment header."""
        self.records = 0
        """Valid frames read, skipped ones included."""
        self.batches = 0
        """Batches accepted."""
        self.skipped_records = 0
        """Records of superseded writers skipped."""
        self.last_end = 0
        """Offset past the last valid frame of the last segment."""
        self.last_size = 0
        """Size of the last segment as read."""
        self.bad_offset: int | None = None
        """Where the last segment's torn tail begins, if it has one."""

    def batches_from(self, from_seq: int) -> Iterator[CommandBatch]:
        """Yield the accepted batches whose last sequence number is at least ``from_seq``."""
        last_index = len(self.segments) - 1
        for index in range(self.start_index, len(self.segments)):
            first_seq, path = self.segments[index]
            reader = SegmentReader(path, first_seq)
            try:
                if first_seq != self.next_seq:
                    raise JournalCorrupt(
                        f"{path}: segment starts at {first_seq} but the journal before it "
                        f"ends at {self.next_seq - 1}"
                    )
                self.min_epoch = max(self.min_epoch, reader.header.epoch)
                self.max_epoch = max(self.max_epoch, self.min_epoch)
                for offset, payload in reader.frames(tolerate_tail=index == last_index):
                    batch = self._accept(path, offset, payload, from_seq)
                    if batch is not None:
                        yield batch
                if index == last_index:
                    self.last_end = reader.end
                    self.last_size = reader.size
                    self.bad_offset = reader.bad_offset
            finally:
                reader.close()

    def _accept(
        self, path: Path, offset: int, payload: memoryview, from_seq: int
    ) -> CommandBatch | None:
        self.records += 1
        wanted = self.next_seq >= from_seq
        try:
            record = decode_record(payload) if wanted else decode_record_head(payload)
        except msgspec.DecodeError as error:
            raise JournalCorrupt(
                f"{path}: undecodable record at offset {offset}: {error}"
            ) from None
        if record.epoch < self.min_epoch:
            self.skipped_records += 1
            return None
        if record.epoch > self.max_epoch:
            self.max_epoch = record.epoch
        if isinstance(record, EpochStarted):
            # A smaller next_seq is a marker written after a zombie frame slipped in past a
            # lock that does not work here; its writer refused to start (see "Why the lock"
            # in cluster.storage.journal).
            if record.next_seq > self.next_seq:
                raise JournalCorrupt(
                    f"{path}: epoch {record.epoch} starts at {record.next_seq} at offset "
                    f"{offset}, but the journal before it ends at {self.next_seq - 1}"
                )
            self.min_epoch = record.epoch
            return None
        if record.first_seq != self.next_seq or record.last_seq < record.first_seq:
            raise JournalCorrupt(
                f"{path}: batch {record.first_seq}..{record.last_seq} at offset {offset} does "
                f"not continue the journal at {self.next_seq}"
            )
        self.next_seq = record.last_seq + 1
        self.batches += 1
        if record.last_seq < from_seq:
            return None
        if isinstance(record, BatchHead):
            full = decode_record(payload)
            assert isinstance(full, CommandBatch)
            return full
        return record


def read_batches(directory: str | os.PathLike[str], from_seq: int = 1) -> Iterator[CommandBatch]:
    """Yield, in order, every batch whose sequence range includes or follows ``from_seq``.

    Read-only and lock-free: projections, replays and researchers use it while a writer
    appends. Batches of superseded writers are skipped (see the module docstring).
    Stop quietly at an incomplete or damaged last frame (a writer may be in the middle of
    it); raise `JournalCorrupt` for damage anywhere before that, and if the journal's first
    segment starts after ``from_seq``. Raise `FileNotFoundError` if the directory is missing.
    """
    if from_seq < 1:
        raise ValueError(f"from_seq starts at 1, got {from_seq}")
    segments = numbered_segments(Path(directory))
    if not segments:
        return
    if segments[0][0] > from_seq:
        raise JournalCorrupt(
            f"{directory}: the journal starts at {segments[0][0]}, after {from_seq}"
        )
    # Segments are named by their first sequence number: start at the last one at or before.
    start = bisect.bisect_right([first for first, _ in segments], from_seq) - 1
    yield from JournalWalk(segments, start).batches_from(from_seq)


def read_frames(directory: str | os.PathLike[str]) -> Iterator[RawFrame]:
    """Yield every valid frame of every segment with its location, without fencing rules.

    Meant for tools and tests that look at the bytes; it stops at a torn tail and raises
    `JournalCorrupt` for damage before it, like `read_batches`.
    """
    segments = numbered_segments(Path(directory))
    for index, (first_seq, path) in enumerate(segments):
        reader = SegmentReader(path, first_seq)
        try:
            for offset, payload in reader.frames(tolerate_tail=index == len(segments) - 1):
                yield RawFrame(segment=path, offset=offset, payload=bytes(payload))
        finally:
            reader.close()
