"""The files of a journal directory: their names, reading one segment, and durable writes.

Both the readers (`cluster.storage.journal_readers`) and the writer's recovery
(`cluster.storage.journal_writer`) read segments through `SegmentReader`, so "where does the
valid data end, and is what follows a torn tail or damage?" has one answer. The writer's
structural changes (a new segment, the EPOCH file, the directory itself) go through
`write_atomically` and `make_directory`, which make a file and its directory entry durable.

Layout
    One directory per shard holding ``EPOCH`` (the current writer's epoch, as decimal text),
    ``LOCK`` (an empty file for `fcntl.flock`) and segment files named by the first sequence
    number they hold, e.g. ``00000000000000000001.seg``, so a reader finds where a sequence
    starts from the file names alone. The bytes inside a segment are described in
    `protocols.journal_format`.

Torn tails
    A crash in the middle of a write leaves the last frame of the last segment cut short or
    failing its checksum, with no valid frame anywhere after it. `SegmentReader.frames` stops
    there and records where it begins (``bad_offset``); the writer's recovery cuts it off
    (`cut_tail`). A bad frame with a valid frame after it, or in a segment that is not the
    last, is damage to acknowledged data and raises `JournalCorrupt`.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import crc32c

from cluster.storage.journal_errors import JournalCorrupt
from protocols.journal_format import (
    FRAME_HEADER,
    MAX_PAYLOAD_BYTES,
    RECORD_TAGS,
    SEGMENT_HEADER,
    FormatError,
    SegmentHeader,
    unpack_segment_header,
)

EPOCH_FILE: Final = "EPOCH"
LOCK_FILE: Final = "LOCK"
SEGMENT_SUFFIX: Final = ".seg"
TEMPORARY_PREFIX: Final = ".tmp-"
"""Prefix of the temporary files `write_atomically` leaves behind if it crashes."""

_SEGMENT_NAME: Final = re.compile(r"^(\d{20})\.seg$")
_READ_CHUNK_BYTES: Final = 1 << 20


# ------------------------------------------------------------------------------------ names


def list_segments(directory: str | os.PathLike[str]) -> list[Path]:
    """Return the journal's segment files in sequence order."""
    return [path for _, path in numbered_segments(Path(directory))]


def numbered_segments(directory: Path) -> list[tuple[int, Path]]:
    """Return ``(first sequence number, path)`` of each segment file, in sequence order."""
    found = []
    with os.scandir(directory) as entries:
        for entry in entries:
            match = _SEGMENT_NAME.match(entry.name)
            if match is not None:
                found.append((int(match.group(1)), Path(entry.path)))
    found.sort()
    return found


def segment_path(directory: Path, first_seq: int) -> Path:
    """Return the path of the segment that starts at ``first_seq``."""
    return directory / f"{first_seq:020d}{SEGMENT_SUFFIX}"


# ---------------------------------------------------------------------------- durable writes


def _fsync_directory(directory: Path, fsync_function: Callable[[int], None]) -> None:
    # A new or renamed file is durable only once its directory entry is.
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsync_function(descriptor)
    finally:
        os.close(descriptor)


def write_atomically(
    path: Path, data: bytes, fsync_function: Callable[[int], None], *, replace: bool
) -> None:
    """Make ``path`` hold ``data`` completely or not at all, even across a host crash.

    With ``replace=False`` an existing file is never overwritten (`FileExistsError`).
    """
    descriptor, temporary = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, dir=path.parent)
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


def make_directory(directory: Path, fsync_function: Callable[[int], None]) -> None:
    """Create ``directory`` and its missing parents, each durably."""
    missing = [path for path in (directory, *directory.parents) if not path.exists()]
    directory.mkdir(parents=True, exist_ok=True)
    for path in reversed(missing):  # a new directory is durable once its parent's entry is
        _fsync_directory(path.parent, fsync_function)


def cut_tail(path: Path, offset: int, fsync_function: Callable[[int], None]) -> None:
    """Cut the segment at ``path`` back to ``offset`` bytes, durably (a torn tail's repair)."""
    descriptor = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(descriptor, offset)
        fsync_function(descriptor)
    finally:
        os.close(descriptor)


# ---------------------------------------------------------------------------------- reading


class SegmentReader:
    """Read one segment's frames through a bounded buffer, never past the size seen at open.

    Raise `JournalCorrupt` at open if the header is damaged or names another first sequence
    number than the file name; close it after use.
    """

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
        """Release the file."""
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

