"""Atomic snapshots of actor state, so that a restart replays only the journal's tail.

An actor that restarts loads its newest snapshot and replays the journal after it. The
journal is the source of truth and the snapshot only an optimisation, so a snapshot that is
damaged, cut short or of another format is skipped (and logged) and the caller falls back to an
older one, or to the whole journal. Only failing to write one raises.

A snapshot is the file ``{name}-{seq:020d}.snap``, where ``seq`` is the last journal sequence
number the state includes (replay resumes at ``seq + 1``)::

    offset  size  field
    0       8     magic b"RAYTSNAP"
    8       4     format version (1), unsigned little-endian
    12      8     seq, as in the file name
    20      8     payload length in bytes
    28      4     CRC32C of the payload
    32      n     payload (the actor's own encoding of its state)

It is written to a temporary file, fsynced, renamed into place and its directory fsynced, so
a crash leaves either the whole snapshot or none (plus, at worst, a temporary file that
`SnapshotStore.latest` ignores).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

import crc32c

logger = logging.getLogger(__name__)

SNAPSHOT_MAGIC: Final = b"RAYTSNAP"
SNAPSHOT_VERSION: Final = 1
SNAPSHOT_HEADER: Final = struct.Struct("<8sIQQI")
"""Snapshot header: magic, format version, seq, payload length, payload CRC32C."""

_NAME: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_TEMPORARY_PREFIX: Final = ".tmp-"
_SUFFIX: Final = ".snap"


class SnapshotStore:
    """Keep the newest snapshots of each named state in one directory."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        keep: int = 3,
        *,
        fsync_function: Callable[[int], None] = os.fsync,
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep at least one snapshot, got keep={keep}")
        self.directory = Path(directory)
        self.keep = keep
        self._fsync = fsync_function
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, name: str, seq: int) -> Path:
        """Return where the snapshot of ``name`` at ``seq`` lives."""
        _check_name(name)
        return self.directory / f"{name}-{seq:020d}{_SUFFIX}"

    def save(self, name: str, seq: int, payload: bytes) -> Path:
        """Write a snapshot of ``name`` at ``seq`` atomically, then keep only the newest few.

        A snapshot at the same ``seq`` is replaced. Return the snapshot's path.
        """
        if seq < 0:
            raise ValueError(f"seq must not be negative, got {seq}")
        path = self.path(name, seq)
        header = SNAPSHOT_HEADER.pack(
            SNAPSHOT_MAGIC, SNAPSHOT_VERSION, seq, len(payload), crc32c.crc32c(payload)
        )
        descriptor, temporary = tempfile.mkstemp(prefix=_TEMPORARY_PREFIX, dir=self.directory)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(header)
                file.write(payload)
                file.flush()
                self._fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        directory_descriptor = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self._fsync(directory_descriptor)
        finally:
            os.close(directory_descriptor)
        self._prune(name, keep_seq=seq)
        return path

    def sequences(self, name: str) -> list[int]:
        """Return the sequence numbers of the stored snapshots of ``name``, oldest first.

        Listed by file name: a damaged snapshot is listed too.
        """
        _check_name(name)
        prefix = f"{name}-"
        found = []
        for entry in os.listdir(self.directory):
            if not (entry.startswith(prefix) and entry.endswith(_SUFFIX)):
                continue
            digits = entry[len(prefix) : -len(_SUFFIX)]
            if len(digits) == 20 and digits.isdigit():  # also keeps "a" from matching "a-b-..."
                found.append(int(digits))
        found.sort()
        return found

    def latest(self, name: str, max_seq: int | None = None) -> tuple[int, bytes] | None:
        """Return ``(seq, payload)`` of the newest intact snapshot of ``name``, or None.

        Only snapshots with ``seq <= max_seq`` count, if ``max_seq`` is given (a snapshot
        ahead of the journal, which can happen after the journal lost an unsynced tail, must
        not be used). Damaged or partial snapshots are skipped and logged.
        """
        for seq in reversed(self.sequences(name)):
            if max_seq is not None and seq > max_seq:
                continue
            path = self.path(name, seq)
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue  # pruned by a concurrent save
            except OSError as error:
                logger.warning("snapshot %s skipped: unreadable: %s", path, error)
                continue
            problem = _problem(data, seq)
            if problem is None:
                return seq, data[SNAPSHOT_HEADER.size :]
            logger.warning("snapshot %s skipped: %s", path, problem)
        return None

    def _prune(self, name: str, keep_seq: int) -> None:
        sequences = self.sequences(name)
        for seq in sequences[: max(len(sequences) - self.keep, 0)]:
            if seq == keep_seq:
                continue  # an out-of-order save must not delete the file it just wrote
            with contextlib.suppress(FileNotFoundError):
                self.path(name, seq).unlink()
                logger.debug("snapshot %s-%d pruned", name, seq)


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"snapshot name {name!r} must be letters, digits, '_', '.', '-', not starting with "
            "'.' or '-'"
        )


def _problem(data: bytes, seq: int) -> str | None:
    """Say what is wrong with a snapshot file's bytes, or return None if it is intact."""
    if len(data) < SNAPSHOT_HEADER.size:
        return f"{len(data)} bytes, shorter than the header"
    magic, version, stored_seq, length, checksum = SNAPSHOT_HEADER.unpack_from(data)
    if magic != SNAPSHOT_MAGIC:
        return f"magic {magic!r}, expected {SNAPSHOT_MAGIC!r}"
    if version != SNAPSHOT_VERSION:
        return f"format version {version}, this code reads {SNAPSHOT_VERSION}"
    if stored_seq != seq:
        return f"header says seq {stored_seq}, the file name {seq}"
    if length != len(data) - SNAPSHOT_HEADER.size:
        return f"payload is {len(data) - SNAPSHOT_HEADER.size} bytes, header says {length}"
    if crc32c.crc32c(memoryview(data)[SNAPSHOT_HEADER.size :]) != checksum:
        return "payload checksum mismatch"
    return None
