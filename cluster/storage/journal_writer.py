"""The journal's single writer: epochs, the lock, fencing, durability and recovery.

`Journal.open_writer` makes a process the writer of one shard's journal; the book actor
appends each command batch through it after matching it and before any of its events leaves
the actor. So this module decides what "acknowledged" means: an append that returned (and,
with the default policy, was fsynced) is in the journal, will be found by every reader, and
survives the crash of the writer. Before an append, once the active segment has reached
``segment_bytes``, the writer starts a new segment named by the batch's first sequence number.

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
    `Journal.open_writer` takes a new epoch, scans the segments with the readers' own
    `JournalWalk`, cuts off a torn tail (never acknowledged: see `cluster.storage.journal_files`)
    and reports it; damage before the tail raises `JournalCorrupt` and is never skipped.

Fencing
    Each writer takes a higher epoch than every writer before it, holds ``flock(LOCK)``
    around each fence check and write, and appends ``EpochStarted`` before it serves, so a
    superseded writer (a zombie) never gets an acknowledgement for a write its successor does
    not see. The argument, across writer and readers, is in `cluster.storage.journal`.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, NoReturn, Self

import msgspec

from cluster.storage.journal_errors import (
    JournalClosedError,
    JournalCorrupt,
    JournalFenced,
    JournalLockError,
    JournalWriteError,
)
from cluster.storage.journal_files import (
    EPOCH_FILE,
    LOCK_FILE,
    TEMPORARY_PREFIX,
    cut_tail,
    make_directory,
    numbered_segments,
    segment_path,
    write_atomically,
)
from cluster.storage.journal_readers import JournalWalk
from protocols.journal_format import (
    SEGMENT_HEADER,
    CommandBatch,
    EpochStarted,
    encode_frame,
    encode_frame_into,
    pack_segment_header,
)
from protocols.messages import Command

# The journal's public name, so that log configuration keeps working whichever module logs.
logger = logging.getLogger("cluster.storage.journal")

DEFAULT_SEGMENT_BYTES: Final = 64 << 20
"""Size after which the writer starts a new segment (64 MiB)."""

_NEVER: Final = 1 << 63  # a from_seq no batch reaches: scan without decoding any commands


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


# ----------------------------------------------------------------------------- epoch and lock


def _take_epoch(
    path: Path, epoch: int, fsync_function: Callable[[int], None]
) -> tuple[int, tuple[int, int, int, int]]:
    """Write ``epoch`` to the EPOCH file; return the file, kept open, and its stat key."""
    content = f"{epoch}\n".encode("ascii")
    write_atomically(path, content, fsync_function, replace=True)
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


# ------------------------------------------------------------------------------------ writer


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
        make_directory(path, fsync_function)
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
            if entry.startswith(TEMPORARY_PREFIX):  # left by a crash in write_atomically
                os.unlink(directory / entry)

        # 2. Recovery: the same walk the readers do, then repair a torn tail.
        segments = numbered_segments(directory)
        walk = JournalWalk(segments, 0 if scan_all_segments else max(len(segments) - 1, 0))
        for _ in walk.batches_from(_NEVER):
            pass
        truncated_bytes = 0
        if segments and walk.bad_offset is not None:
            truncated_bytes = walk.last_size - walk.bad_offset
            last_path = segments[-1][1]
            cut_tail(last_path, walk.bad_offset, fsync_function)
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
            segment_first_seq, active_path = segments[-1]
            marker_offset = walk.last_end  # where the scan ended, torn tail cut off
        else:
            segment_first_seq, active_path = next_seq, segment_path(directory, next_seq)
            write_atomically(
                active_path,
                pack_segment_header(epoch=epoch, first_seq=next_seq),
                fsync_function,
                replace=False,
            )
            marker_offset = SEGMENT_HEADER.size
        segment_descriptor = os.open(active_path, os.O_WRONLY | os.O_APPEND)
        descriptors.append(segment_descriptor)
        marker = encode_frame(EpochStarted(epoch=epoch, next_seq=next_seq))
        try:
            written = os.write(segment_descriptor, marker)
            fsync_function(segment_descriptor)
        except OSError as error:
            raise JournalWriteError(
                f"{active_path}: could not write the marker: {error}"
            ) from error
        if written != len(marker):
            raise JournalWriteError(f"{active_path}: short write of the marker")
        segment_size = os.fstat(segment_descriptor).st_size
        if segment_size != marker_offset + len(marker):
            raise JournalLockError(
                f"{directory}: another process appended to {active_path.name} during "
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
        path = segment_path(self.directory, first_seq)
        try:
            write_atomically(
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
