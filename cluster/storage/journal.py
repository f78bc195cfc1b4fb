"""The write-ahead journal of one shard: segment files, recovery, fencing and readers.

A shard's book actor appends every command batch here before it matches it, and everything
downstream (risk, positions, market data, replays, researchers) reads the same journal at its
own offset. So this module decides what "acknowledged" means: an append that returned (and,
with the default policy, was fsynced) is in the journal, will be found by every reader, and
survives the crash of the writer.

Layout
    One directory per shard holding ``EPOCH`` (the current writer's epoch, as decimal text),
    ``LOCK`` (an empty file for `fcntl.flock`) and segment files named by the first sequence
    number they hold, e.g. ``00000000000000000001.seg``, so a reader finds where a sequence
    starts from the file names alone. The writer starts a new segment when the active one has
    passed ``segment_bytes``. The bytes inside are described in `protocols.journal_format`.

Durability (`FsyncPolicy`)
    ``batch``     fsync after every append, before it returns (one fsync per batch, never per
                  command). An acknowledged append survives a process kill and a host crash,
                  as far as the disk honours fsync.
    ``interval``  fsync on append only if the last fsync is older than ``interval_ms``; the
                  owner also calls `Journal.sync` from a timer. Survives a process kill; a
                  host crash can lose the appends of the last interval (plus timer lateness).
    ``none``      never fsync on the append path. The page cache belongs to the kernel, so
                  this survives a process kill (``kill -9``), not a host crash.
    Structural changes are synced whatever the policy: the new epoch, the ``EpochStarted``
    marker, the end of a segment before the next one is created, the new segment and its
    directory entry. They happen once per writer or per segment, and recovery relies on them.

Recovery ("startup and crash recovery share one code path")
    `Journal.open_writer` takes a new epoch, scans the segments with the same code the readers
    use, and repairs a torn tail: the last frame of the last segment, cut short or failing its
    checksum, with no valid frame anywhere after it. That is what a crash in the middle of a
    write leaves; it was never acknowledged, so it is cut off and reported. Anything bad before
    that point is damage to acknowledged data and raises `JournalCorrupt`: never skipped.
    Readers apply the same rule but only stop at a bad tail (a writer may be mid-write).

Fencing
    After a node failure Ray can run an old and a new instance of the same actor side by side
    for a few seconds. The old one (a zombie) must never get an acknowledgement for a write the
    new one does not see. Three mechanisms work together:

    * Epochs. Each writer takes ``EPOCH + 1`` at open (or more, if the journal already holds a
      higher epoch: a lost EPOCH file must not put a writer below its predecessors), written
      atomically (temp file, fsync, rename, fsync of the directory), and stamps it on every
      record it writes.
    * The lock. ``flock(LOCK)`` is held by a new writer from its epoch bump until its
      ``EpochStarted`` marker is written and synced, and by every writer around the fence check
      and the write of each frame and around each segment rotation. The fence check compares
      ``os.stat(EPOCH)`` with what the writer saw when it took its epoch and re-reads the file
      only if that changed; the writer keeps its EPOCH file open, so the inode cannot be
      reused and a replaced file always looks different.
    * The marker. A new writer appends ``EpochStarted(epoch=E, next_seq=N)`` after its recovery
      and before it serves. Readers, once they have read ``EpochStarted(E)``, skip every later
      record whose epoch is below ``E``; a segment's header carries its creator's epoch too, so
      a reader that starts in the middle of the journal knows the floor.

    Why this is enough. Let writer A hold epoch ``e`` and writer B take ``E > e``. A writes a
    frame only under the lock, right after a fence check under that same hold. If A's hold
    came before B's, the frame was in the file before B bumped EPOCH; B's recovery scan starts
    after the bump, under the lock, so B sees the frame and continues after it, and an
    acknowledgement of it by A is true. (If A's re-check after the write already sees B's
    epoch, A raises `JournalFenced` anyway: the frame stays in the journal unacknowledged,
    like a reply lost in transit, which the gateway's retry by client order id handles.)
    If A's hold came after B's, the check sees the new epoch and A raises `JournalFenced`
    without writing. Segments are created only under the lock after the same check, so a
    superseded writer never creates one, and B's listing (taken under the lock, after the
    bump) holds every segment that will ever count.

    Why the lock. Checking EPOCH before and after each write, without the lock, leaves two
    windows: a zombie frame landing between B's scan and B's marker is before the marker, so
    readers accept it, but B never saw it and numbers its own first batch the same; and a
    zombie rotating into a new segment after B listed the directory puts frames where B's
    marker does not precede them. Both need the zombie to act between its check and its
    write, which the lock forbids. The other checks remain, as defence in depth for a
    filesystem whose locks are not shared between hosts: after its write is durable A
    re-checks EPOCH and raises `JournalFenced` instead of returning, so a zombie frame after
    B's marker (skipped by every reader) is never acknowledged; and B verifies that its
    marker landed exactly where its scan ended, and otherwise refuses to start
    (`JournalLockError`), leaving the frame that slipped in for the next writer's recovery to
    count.

    Across hosts this needs a shared filesystem with coherent ``stat``, atomic ``O_APPEND``
    and a shared ``flock``. NFS, for one, does not make ``O_APPEND`` atomic between clients
    and caches attributes for seconds by default; a replicated log engine can replace this
    module behind the same interface.

Exceptions::

    JournalError              base of everything below
    ├── JournalCorrupt        bad segment header, bad frame or broken sequence before the tail
    ├── JournalFenced         a newer writer took over: do not acknowledge what you appended
    ├── JournalWriteError     write or fsync failed: the writer is dead, reopen to recover
    ├── JournalLockError      the journal lock was held too long, or proved ineffective
    └── JournalClosedError    the writer was used after `Journal.close`
"""

from __future__ import annotations

import bisect
import contextlib
import enum
import fcntl
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, NoReturn, Self

import crc32c
import msgspec

from protocols.journal_format import (
    FRAME_HEADER,
    MAX_PAYLOAD_BYTES,
    RECORD_TAGS,
    SEGMENT_HEADER,
    BatchHead,
    CommandBatch,
    EpochStarted,
    FormatError,
    SegmentHeader,
    decode_record,
    decode_record_head,
    encode_frame,
    encode_frame_into,
    pack_segment_header,
    unpack_segment_header,
)
from protocols.messages import Command

logger = logging.getLogger(__name__)

DEFAULT_SEGMENT_BYTES: Final = 64 << 20
"""Size after which the writer starts a new segment (64 MiB)."""

EPOCH_FILE: Final = "EPOCH"
LOCK_FILE: Final = "LOCK"
SEGMENT_SUFFIX: Final = ".seg"

_SEGMENT_NAME: Final = re.compile(r"^(\d{20})\.seg$")
_TEMPORARY_PREFIX: Final = ".tmp-"
_READ_CHUNK_BYTES: Final = 1 << 20
_NEVER: Final = 1 << 63  # a from_seq no batch reaches: scan without decoding any commands


# --------------------------------------------------------------------------------- exceptions


class JournalError(Exception):
    """Base class of every journal failure."""


# The two names the design uses read as states ("except JournalFenced"), so they keep them.


class JournalCorrupt(JournalError):  # noqa: N818
    """Raised when acknowledged data is damaged or a file is not what the journal expects.

    A bad segment header, a bad frame with valid data after it, a sequence gap or overlap, an
    unreadable EPOCH file. Never raised for a torn tail, which recovery repairs.
    """


class JournalFenced(JournalError):  # noqa: N818
    """Raised when a newer writer has taken over the journal.

    The caller must not acknowledge anything it appended that raised this, and must stop:
    the writer refuses every later append too.
    """


class JournalWriteError(JournalError):
    """Raised when a write or fsync failed (disk full, I/O error).

    After a failed fsync the kernel may have dropped the dirty pages, so nothing since the last
    good fsync can be trusted: the writer refuses every later append, and the owner reopens
    the journal (which recovers) before it serves again.
    """


class JournalLockError(JournalError):
    """Raised when the journal lock could not be taken in time, or proved ineffective.

    Ineffective means another process wrote to the journal while this one held the lock,
    which happens only on a filesystem whose locks are not shared by all writers.
    """


class JournalClosedError(JournalError):
    """Raised when a writer is used after `Journal.close`."""


# ------------------------------------------------------------------------------------ config


class FsyncPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """When the writer makes appends durable; see the module docstring for what each survives."""

    mode: Literal["batch", "interval", "none"] = "batch"
    """``batch``: fsync every append; ``interval``: at most every ``interval_ms`` plus
    `Journal.sync`; ``none``: never on the append path."""
    interval_ms: float = 5.0
    """Longest time an append may stay unsynced in ``interval`` mode, if appends keep coming."""

    def __post_init__(self) -> None:
        if self.mode not in ("batch", "interval", "none"):
            raise ValueError(f"unknown fsync mode {self.mode!r}")
        if self.interval_ms < 0:
            raise ValueError(f"interval_ms must not be negative, got {self.interval_ms}")


DEFAULT_FSYNC_POLICY: Final = FsyncPolicy()


class RecoveryReport(msgspec.Struct, frozen=True, kw_only=True):
    """What a writer found when it opened the journal."""

    epoch: int
    """The epoch the writer took."""
    segments: int
    """Segment files in the journal (before the writer created any)."""
    scanned_segments: int
    records: int
    """Valid frames read in the scanned segments, zombie frames included."""
    batches: int
    skipped_records: int
    """Records of superseded writers found after a newer writer's marker."""
    truncated_bytes: int
    """Size of the torn tail that was cut off (0 if the journal ended cleanly)."""
    last_seq: int
    """Sequence number of the last event the journal holds (0 if none)."""


class RawFrame(msgspec.Struct, frozen=True, kw_only=True):
    """One valid frame as stored: where it is and its payload."""

    segment: Path
    offset: int
    """Byte offset of the frame header in the segment file."""
    payload: bytes


# ------------------------------------------------------------------------------------ files


def list_segments(directory: str | os.PathLike[str]) -> list[Path]:
    """Return the journal's segment files in sequence order."""
    return [path for _, path in _segments(Path(directory))]


def _segments(directory: Path) -> list[tuple[int, Path]]:
    found = []
    with os.scandir(directory) as entries:
        for entry in entries:
            match = _SEGMENT_NAME.match(entry.name)
            if match is not None:
                found.append((int(match.group(1)), Path(entry.path)))
    found.sort()
    return found


def _segment_path(directory: Path, first_seq: int) -> Path:
    return directory / f"{first_seq:020d}{SEGMENT_SUFFIX}"


def _fsync_directory(directory: Path, fsync_function: Callable[[int], None]) -> None:
    # A new or renamed file is durable only once its directory entry is.
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsync_function(descriptor)
    finally:
        os.close(descriptor)


def _write_atomically(
    path: Path, data: bytes, fsync_function: Callable[[int], None], *, replace: bool
) -> None:
    """Make ``path`` hold ``data`` completely or not at all, even across a host crash.

    With ``replace=False`` an existing file is never overwritten (`FileExistsError`).
    """
    descriptor, temporary = tempfile.mkstemp(prefix=_TEMPORARY_PREFIX, dir=path.parent)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view) :]
            fsync_function(descriptor)
        finally:
            os.close(descriptor)
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)  # unlike rename, fails if the name exists
            os.unlink(temporary)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(path.parent, fsync_function)


def _make_directory(directory: Path, fsync_function: Callable[[int], None]) -> None:
    missing = [path for path in (directory, *directory.parents) if not path.exists()]
    directory.mkdir(parents=True, exist_ok=True)
    for path in reversed(missing):  # a new directory is durable once its parent's entry is
        _fsync_directory(path.parent, fsync_function)


def _take_epoch(
    path: Path, epoch: int, fsync_function: Callable[[int], None]
) -> tuple[int, tuple[int, int, int, int]]:
    """Write ``epoch`` to the EPOCH file; return the file, kept open, and its stat key."""
    content = f"{epoch}\n".encode("ascii")
    _write_atomically(path, content, fsync_function, replace=True)
    descriptor = os.open(path, os.O_RDONLY)
    if os.pread(descriptor, 64, 0) != content:
        os.close(descriptor)
        raise JournalLockError(f"{path}: changed by another writer while this one held the lock")
    return descriptor, _stat_key(os.fstat(descriptor))


def _read_epoch(path: str | Path) -> int:
    try:
        with open(path, encoding="ascii") as file:
            text = file.read()
    except FileNotFoundError:
        return 0
    except (OSError, UnicodeDecodeError) as error:
        raise JournalCorrupt(f"{path}: unreadable epoch file: {error}") from error
    if not re.fullmatch(r"\d+\n", text):
        raise JournalCorrupt(f"{path}: malformed epoch file {text[:40]!r}")
    return int(text)


def _stat_key(result: os.stat_result) -> tuple[int, int, int, int]:
    return (result.st_dev, result.st_ino, result.st_mtime_ns, result.st_size)


def _lock(descriptor: int, timeout_s: float, directory: Path) -> None:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    # Wall time on purpose: the injectable clock drives fsync intervals and may be frozen.
    deadline = time.monotonic() + timeout_s
    delay_s = 0.001
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise JournalLockError(
                    f"{directory}: another process held the journal lock for over {timeout_s} s"
                ) from None
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, 0.05)


# ---------------------------------------------------------------------------------- reading


class _SegmentReader:
    """Read one segment's frames through a bounded buffer, never past the size seen at open."""

    def __init__(self, path: Path, first_seq: int) -> None:
        self.path = path
        self._descriptor = os.open(path, os.O_RDONLY)
        try:
            self.size = os.fstat(self._descriptor).st_size
            try:
                self.header: SegmentHeader = unpack_segment_header(
                    os.pread(self._descriptor, SEGMENT_HEADER.size, 0)
                )
            except FormatError as error:
                raise JournalCorrupt(f"{path}: {error}") from None
            if self.header.first_seq != first_seq:
                raise JournalCorrupt(
                    f"{path}: header says the segment starts at {self.header.first_seq}"
                )
        except BaseException:
            os.close(self._descriptor)
            raise
        self.end = SEGMENT_HEADER.size
        """Offset just past the last valid frame read so far."""
        self.bad_offset: int | None = None
        """Where the torn tail begins, once `frames` has stopped at one."""

    def close(self) -> None:
        os.close(self._descriptor)

    def frames(self, *, tolerate_tail: bool) -> Iterator[tuple[int, memoryview]]:
        """Yield ``(offset, payload)`` of each valid frame.

        At a bad frame: if ``tolerate_tail`` and no valid frame follows it, record it in
        `bad_offset` and stop; otherwise raise `JournalCorrupt`.
        """
        header_size = FRAME_HEADER.size
        unpack_header = FRAME_HEADER.unpack_from
        checksum_of = crc32c.crc32c
        buffer = b""
        base = SEGMENT_HEADER.size  # file offset of buffer[0]
        start = 0  # the next frame's position in buffer
        while True:
            offset = base + start
            if offset >= self.size:
                return
            if len(buffer) - start < header_size:
                buffer, base, start = self._refill(buffer, base, start, header_size)
                if len(buffer) - start < header_size:
                    problem = "frame header cut short"
                    break
            length, checksum = unpack_header(buffer, start)
            if not 0 < length <= MAX_PAYLOAD_BYTES:
                problem = f"impossible frame length {length}"
                break
            frame_size = header_size + length
            if len(buffer) - start < frame_size:
                buffer, base, start = self._refill(buffer, base, start, frame_size)
                if len(buffer) - start < frame_size:
                    problem = f"frame cut short ({self.size - offset} of {frame_size} bytes)"
                    break
            payload = memoryview(buffer)[start + header_size : start + frame_size]
            if checksum_of(payload) != checksum:
                problem = "frame checksum mismatch"
                break
            yield offset, payload
            start += frame_size
            self.end = base + start
        if tolerate_tail:
            if self._is_valid_frame(offset):
                # Valid now: a writer recovering without us (readers take no lock) cut this
                # torn tail and appended its marker here. Stop; the next read sees the rest.
                return
            if not self._valid_frame_after(offset):
                self.bad_offset = offset
                return
        raise JournalCorrupt(
            f"{self.path}: {problem} at offset {offset}"
            + (", with valid frames after it" if tolerate_tail else " of a closed segment")
        )

    def _refill(
        self, buffer: bytes, base: int, start: int, needed: int
    ) -> tuple[bytes, int, int]:
        kept = buffer[start:]
        base += start
        read_from = base + len(kept)
        count = min(max(_READ_CHUNK_BYTES, needed - len(kept)), self.size - read_from)
        if count <= 0:
            return kept, base, 0
        more = os.pread(self._descriptor, count, read_from)
        if len(more) < count:  # truncated under us by a recovering writer
            self.size = read_from + len(more)
        return kept + more, base, 0

    def _valid_frame_after(self, bad_offset: int) -> bool:
        # The bad frame's length field cannot be trusted, so look for where frames could start:
        # every payload opens with a one-byte array header and the record's type name.
        longest_tag = max(len(tag) for tag in RECORD_TAGS)
        tag_start = bad_offset + 1 + FRAME_HEADER.size + 1
        while tag_start < self.size:
            chunk = os.pread(
                self._descriptor, _READ_CHUNK_BYTES + longest_tag, tag_start
            )
            if not chunk:
                return False
            for tag in RECORD_TAGS:
                position = chunk.find(tag)
                while position >= 0:
                    if self._is_valid_frame(tag_start + position - 1 - FRAME_HEADER.size):
                        return True
                    position = chunk.find(tag, position + 1)
            tag_start += _READ_CHUNK_BYTES
        return False

    def _is_valid_frame(self, offset: int) -> bool:
        header = os.pread(self._descriptor, FRAME_HEADER.size, offset)
        if len(header) < FRAME_HEADER.size:
            return False
        length: int
        checksum: int
        length, checksum = FRAME_HEADER.unpack(header)
        if not 0 < length <= MAX_PAYLOAD_BYTES or offset + FRAME_HEADER.size + length > self.size:
            return False
        payload = os.pread(self._descriptor, length, offset + FRAME_HEADER.size)
        return len(payload) == length and crc32c.crc32c(payload) == checksum


class _Walk:
    """One pass over the journal applying the rules every reader shares.

    Sequence: each accepted batch starts where the previous one ended, and each segment starts
    where the previous one ended. Fencing: after ``EpochStarted(E)``, or inside a segment
    created by epoch ``E``, records of lower epochs are a superseded writer's and are skipped.
    """

    def __init__(self, segments: list[tuple[int, Path]], start_index: int) -> None:
        self.segments = segments
        self.start_index = start_index
        self.next_seq = segments[start_index][0] if segments else 1
        self.min_epoch = 0
        self.max_epoch = 0
        """Highest epoch of any accepted record or segment header."""
        self.records = 0
        self.batches = 0
        self.skipped_records = 0
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
            reader = _SegmentReader(path, first_seq)
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
            # lock that does not work here; its writer refused to start (see the module doc).
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
    appends. Batches of superseded writers are skipped (see Fencing in the module docstring).
    Stop quietly at an incomplete or damaged last frame (a writer may be in the middle of
    it); raise `JournalCorrupt` for damage anywhere before that, and if the journal's first
    segment starts after ``from_seq``. Raise `FileNotFoundError` if the directory is missing.
    """
    if from_seq < 1:
        raise ValueError(f"from_seq starts at 1, got {from_seq}")
    segments = _segments(Path(directory))
    if not segments:
        return
    if segments[0][0] > from_seq:
        raise JournalCorrupt(
            f"{directory}: the journal starts at {segments[0][0]}, after {from_seq}"
        )
    # Segments are named by their first sequence number: start at the last one at or before.
    start = bisect.bisect_right([first for first, _ in segments], from_seq) - 1
    yield from _Walk(segments, start).batches_from(from_seq)


def read_frames(directory: str | os.PathLike[str]) -> Iterator[RawFrame]:
    """Yield every valid frame of every segment with its location, without fencing rules.

    Meant for tools and tests that look at the bytes; it stops at a torn tail and raises
    `JournalCorrupt` for damage before it, like `read_batches`.
    """
    segments = _segments(Path(directory))
    for index, (first_seq, path) in enumerate(segments):
        reader = _SegmentReader(path, first_seq)
        try:
            for offset, payload in reader.frames(tolerate_tail=index == len(segments) - 1):
                yield RawFrame(segment=path, offset=offset, payload=bytes(payload))
        finally:
            reader.close()


# ---------------------------------------------------------------------------------- writing


class _State(enum.Enum):
    OPEN = enum.auto()
    FENCED = enum.auto()
    FAILED = enum.auto()
    CLOSED = enum.auto()


class Journal:
    """The single writer of a shard's journal; create it with `Journal.open_writer`.

    Not thread-safe: the owning actor appends from one thread.
    """

    def __init__(
        self,
        *,
        directory: Path,
        epoch: int,
        next_seq: int,
        recovery_report: RecoveryReport,
        fsync: FsyncPolicy,
        segment_bytes: int,
        clock: Callable[[], float],
        fsync_function: Callable[[int], None],
        lock_timeout_s: float,
        lock_descriptor: int,
        epoch_descriptor: int,
        epoch_key: tuple[int, int, int, int],
        segment_descriptor: int,
        segment_first_seq: int,
        segment_size: int,
    ) -> None:
        self.directory = directory
        self.epoch = epoch
        """This writer's epoch, stamped on every record it writes."""
        self.next_seq = next_seq
        """First sequence number of the next batch to append."""
        self.recovery_report = recovery_report
        self.fsync_policy = fsync
        self._segment_bytes = segment_bytes
        self._clock = clock
        self._fsync = fsync_function
        self._lock_timeout_s = lock_timeout_s
        self._lock_descriptor = lock_descriptor
        self._epoch_path = str(directory / EPOCH_FILE)  # a str stats faster than a Path
        # Kept open so that the inode cannot be reused by a later EPOCH file: a replaced file
        # then always differs in stat, even when mtime has coarse granularity.
        self._epoch_descriptor = epoch_descriptor
        self._epoch_key = epoch_key
        self._segment_descriptor = segment_descriptor
        self._segment_first_seq = segment_first_seq
        self._segment_size = segment_size
        self._sync_every_append = fsync.mode == "batch"
        self._sync_on_interval = fsync.mode == "interval"
        self._interval_s = fsync.interval_ms / 1000
        self._last_sync = clock()
        self._dirty = False
        self._state = _State.OPEN
        self._buffer = bytearray()

    # ------------------------------------------------------------ opening

    @classmethod
    def open_writer(
        cls,
        directory: str | os.PathLike[str],
        *,
        fsync: FsyncPolicy = DEFAULT_FSYNC_POLICY,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        scan_all_segments: bool = True,
        clock: Callable[[], float] = time.monotonic,
        fsync_function: Callable[[int], None] = os.fsync,
        lock_timeout_s: float = 30.0,
    ) -> Journal:
        """Take over the journal in ``directory`` (created if missing) as its new writer.

        Take a new epoch, which fences every earlier writer; recover (check the segments, cut
        off a torn tail, find where the sequence continues); append and sync
        ``EpochStarted``. With ``scan_all_segments=False`` only the last segment is read,
        which keeps the open fast on a long journal; readers still check the rest.

        ``clock`` (seconds, monotonic) drives the ``interval`` policy and ``fsync_function``
        does every fsync; both exist so that tests can control and count them.

        Raise `JournalCorrupt` for damage before the tail and `JournalLockError` if another
        process holds the lock longer than ``lock_timeout_s``.
        """
        if segment_bytes < 1:
            raise ValueError(f"segment_bytes must be positive, got {segment_bytes}")
        path = Path(directory)
        _make_directory(path, fsync_function)
        descriptors: list[int] = []
        try:
            lock_descriptor = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
            descriptors.append(lock_descriptor)
            _lock(lock_descriptor, lock_timeout_s, path)
            try:
                journal = cls._take_over(
                    path,
                    descriptors,
                    fsync=fsync,
                    segment_bytes=segment_bytes,
                    scan_all_segments=scan_all_segments,
                    clock=clock,
                    fsync_function=fsync_function,
                    lock_timeout_s=lock_timeout_s,
                    lock_descriptor=lock_descriptor,
                )
            finally:
                fcntl.flock(lock_descriptor, fcntl.LOCK_UN)
        except BaseException:
            for descriptor in descriptors:
                os.close(descriptor)
            raise
        return journal

    @classmethod
    def _take_over(
        cls,
        directory: Path,
        descriptors: list[int],
        *,
        fsync: FsyncPolicy,
        segment_bytes: int,
        scan_all_segments: bool,
        clock: Callable[[], float],
        fsync_function: Callable[[int], None],
        lock_timeout_s: float,
        lock_descriptor: int,
    ) -> Journal:
        # 1. A new epoch, durable before anything is read: from here on every earlier
        #    writer's fence check fails.
        epoch_path = directory / EPOCH_FILE
        epoch = _read_epoch(epoch_path) + 1
        epoch_descriptor, epoch_key = _take_epoch(epoch_path, epoch, fsync_function)
        descriptors.append(epoch_descriptor)
        for entry in os.listdir(directory):
            if entry.startswith(_TEMPORARY_PREFIX):  # left by a crash in _write_atomically
                os.unlink(directory / entry)

        # 2. Recovery: the same walk the readers do, then repair a torn tail.
        segments = _segments(directory)
        walk = _Walk(segments, 0 if scan_all_segments else max(len(segments) - 1, 0))
        for _ in walk.batches_from(_NEVER):
            pass
        truncated_bytes = 0
        if segments and walk.bad_offset is not None:
            truncated_bytes = walk.last_size - walk.bad_offset
            last_path = segments[-1][1]
            descriptor = os.open(last_path, os.O_WRONLY)
            try:
                os.ftruncate(descriptor, walk.bad_offset)
                fsync_function(descriptor)
            finally:
                os.close(descriptor)
            logger.warning(
                "journal %s: cut off a torn tail of %d bytes at offset %d of %s",
                directory, truncated_bytes, walk.bad_offset, last_path.name,
            )
        if walk.max_epoch >= epoch:
            # EPOCH is behind the journal (deleted, or restored from an older backup). A writer
            # below the epochs already in the journal would have all its records skipped.
            logger.warning(
                "journal %s: EPOCH said %d but the journal holds epoch %d; taking epoch %d",
                directory, epoch - 1, walk.max_epoch, walk.max_epoch + 1,
            )
            epoch = walk.max_epoch + 1
            descriptors.remove(epoch_descriptor)
            os.close(epoch_descriptor)
            epoch_descriptor, epoch_key = _take_epoch(epoch_path, epoch, fsync_function)
            descriptors.append(epoch_descriptor)
        next_seq = walk.next_seq
        report = RecoveryReport(
            epoch=epoch,
            segments=len(segments),
            scanned_segments=len(segments) - walk.start_index,
            records=walk.records,
            batches=walk.batches,
            skipped_records=walk.skipped_records,
            truncated_bytes=truncated_bytes,
            last_seq=next_seq - 1,
        )

        # 3. The marker, appended to the last segment: the one any earlier writer still
        #    appends to, so that its late frames land after the marker and are skipped.
        if segments:
            segment_first_seq, segment_path = segments[-1]
            marker_offset = walk.last_end  # where the scan ended, torn tail cut off
        else:
            segment_first_seq, segment_path = next_seq, _segment_path(directory, next_seq)
            _write_atomically(
                segment_path,
                pack_segment_header(epoch=epoch, first_seq=next_seq),
                fsync_function,
                replace=False,
            )
            marker_offset = SEGMENT_HEADER.size
        segment_descriptor = os.open(segment_path, os.O_WRONLY | os.O_APPEND)
        descriptors.append(segment_descriptor)
        marker = encode_frame(EpochStarted(epoch=epoch, next_seq=next_seq))
        try:
            written = os.write(segment_descriptor, marker)
            fsync_function(segment_descriptor)
        except OSError as error:
            raise JournalWriteError(
                f"{segment_path}: could not write the marker: {error}"
            ) from error
        if written != len(marker):
            raise JournalWriteError(f"{segment_path}: short write of the marker")
        segment_size = os.fstat(segment_descriptor).st_size
        if segment_size != marker_offset + len(marker):
            raise JournalLockError(
                f"{directory}: another process appended to {segment_path.name} during "
                f"recovery; the journal lock does not work on this filesystem"
            )
        logger.info(
            "journal %s: writer epoch %d took over; %d segments, %d records, %d batches, "
            "%d skipped, %d bytes of torn tail cut, continuing at sequence %d",
            directory, epoch, report.segments, report.records, report.batches,
            report.skipped_records, truncated_bytes, next_seq,
        )
        return cls(
            directory=directory,
            epoch=epoch,
            next_seq=next_seq,
            recovery_report=report,
            fsync=fsync,
            segment_bytes=segment_bytes,
            clock=clock,
            fsync_function=fsync_function,
            lock_timeout_s=lock_timeout_s,
            lock_descriptor=lock_descriptor,
            epoch_descriptor=epoch_descriptor,
            epoch_key=epoch_key,
            segment_descriptor=segment_descriptor,
            segment_first_seq=segment_first_seq,
            segment_size=segment_size,
        )

    # ------------------------------------------------------------ appending

    def append(self, first_seq: int, last_seq: int, commands: Sequence[Command]) -> None:
        """Append one batch: the commands that produced events ``first_seq..last_seq``.

        When this returns, the batch is in the journal with the durability of the policy, and
        no newer writer had taken over. Raise `ValueError` if ``first_seq`` is not
        `next_seq` (a gap or overlap is a bug in the caller), `JournalFenced` if a newer
        writer took over (do not acknowledge the batch), `JournalWriteError` if the disk
        failed.
        """
        if self._state is not _State.OPEN:
            self._raise_unusable()
        if first_seq != self.next_seq:
            raise ValueError(
                f"batch starts at {first_seq}, the journal continues at {self.next_seq}"
            )
        if last_seq < first_seq:
            raise ValueError(f"batch ends at {last_seq}, before its start {first_seq}")
        if not commands:
            raise ValueError("a batch holds at least one command")
        batch = CommandBatch(
            epoch=self.epoch,
            first_seq=first_seq,
            last_seq=last_seq,
            commands=commands if isinstance(commands, list) else list(commands),
        )
        encode_frame_into(batch, self._buffer)
        _lock(self._lock_descriptor, self._lock_timeout_s, self.directory)
        try:
            self._check_fence()
            if self._segment_size >= self._segment_bytes and self._segment_first_seq < first_seq:
                self._rotate(first_seq)
            self._write(self._buffer)
        finally:
            fcntl.flock(self._lock_descriptor, fcntl.LOCK_UN)
        if self._sync_every_append or (
            self._sync_on_interval and self._clock() - self._last_sync >= self._interval_s
        ):
            self._sync()
        self._check_fence()
        self.next_seq = last_seq + 1

    def sync(self) -> None:
        """Make every append so far durable, whatever the policy, then check the fence.

        The owner calls this from a timer in ``interval`` mode. Raise `JournalFenced` or
        `JournalWriteError` like `append`.
        """
        if self._state is not _State.OPEN:
            self._raise_unusable()
        if self._dirty:
            self._sync()
        self._check_fence()

    def close(self) -> None:
        """Sync what is pending (unless the policy is ``none``) and release the files."""
        if self._state is _State.CLOSED:
            return
        try:
            if self._state is _State.OPEN and self._dirty and self.fsync_policy.mode != "none":
                self._sync()
        finally:
            self._state = _State.CLOSED
            for descriptor in (
                self._segment_descriptor, self._epoch_descriptor, self._lock_descriptor
            ):
                os.close(descriptor)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exception_type: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------ internals

    def _check_fence(self) -> None:
        try:
            key = _stat_key(os.stat(self._epoch_path))
        except FileNotFoundError:
            current = None
        else:
            if key == self._epoch_key:
                return
            current = _read_epoch(self._epoch_path)
            if current == self.epoch:
                self._epoch_key = key  # rewritten with the same epoch: still ours
                return
        self._state = _State.FENCED
        raise JournalFenced(
            f"{self.directory}: writer epoch {self.epoch} was superseded by epoch {current}"
        )

    def _write(self, frame: bytearray) -> None:
        try:
            written = os.write(self._segment_descriptor, frame)
        except OSError as error:
            self._fail_write(f"write failed: {error}", error)
        if written != len(frame):
            self._fail_write(f"short write ({written} of {len(frame)} bytes)", None)
        self._segment_size += written
        self._dirty = True

    def _fail_write(self, problem: str, cause: OSError | None) -> NoReturn:
        self._state = _State.FAILED
        # Cut a partial frame off (we hold the lock, so nobody appended after it); a later
        # writer would otherwise find damage followed by its own valid frames.
        with contextlib.suppress(OSError):
            os.ftruncate(self._segment_descriptor, self._segment_size)
        raise JournalWriteError(f"{self.directory}: {problem}") from cause

    def _sync(self) -> None:
        try:
            self._fsync(self._segment_descriptor)
        except OSError as error:
            self._state = _State.FAILED
            raise JournalWriteError(f"{self.directory}: fsync failed: {error}") from error
        self._dirty = False
        self._last_sync = self._clock()

    def _rotate(self, first_seq: int) -> None:
        # Sync the segment being closed first: only the last segment may have a torn tail.
        self._sync()
        path = _segment_path(self.directory, first_seq)
        try:
            _write_atomically(
                path,
                pack_segment_header(epoch=self.epoch, first_seq=first_seq),
                self._fsync,
                replace=False,
            )
            descriptor = os.open(path, os.O_WRONLY | os.O_APPEND)
        except FileExistsError:
            self._state = _State.FAILED
            raise JournalCorrupt(f"{path}: segment exists already") from None
        except OSError as error:
            self._state = _State.FAILED
            raise JournalWriteError(f"{path}: could not create segment: {error}") from error
        os.close(self._segment_descriptor)
        self._segment_descriptor = descriptor
        self._segment_first_seq = first_seq
        self._segment_size = SEGMENT_HEADER.size
        logger.info("journal %s: started segment %s", self.directory, path.name)

    def _raise_unusable(self) -> NoReturn:
        if self._state is _State.FENCED:
            raise JournalFenced(f"{self.directory}: writer epoch {self.epoch} was superseded")
        if self._state is _State.FAILED:
            raise JournalWriteError(f"{self.directory}: an earlier write or fsync failed")
        raise JournalClosedError(f"{self.directory}: the writer is closed")
