"""The write-ahead journal of one shard: what it holds, how it is laid out, who reads it.

A shard's book actor matches each command batch and, before any event of it leaves the actor,
appends the batch here with the range of event sequence numbers it produced (a batch that
produced no event is not journaled). The journal holds commands, not events: matching is
deterministic, so the shard's other readers (the shard's reader catching up, gateways
resuming streams, researchers) get the events back by replaying the commands through a private
copy of the shard's engine (`cluster.storage.shard`). An append that returned is acknowledged:
every reader will find it, and it survives a crash of the writer's process, and of its host as
far as the fsync policy allows (`FsyncPolicy`).

This module is the journal's public face, and the place where its design is argued; the code
lives in four modules beside it, each with one job::

    journal_errors    the exception tree (JournalError and its five kinds)
    journal_files     the directory's file names, reading one segment, torn tails, durable writes
    journal_readers   read_batches and read_frames, and JournalWalk: the rules every reader shares
    journal_writer    Journal (the single writer): FsyncPolicy, epochs, the lock, recovery

Import from here (``from cluster.storage.journal import Journal, read_batches``); the bytes
inside the files are described in `protocols.journal_format`.

Fencing
    After a node failure Ray can run an old and a new instance of the same actor side by side
    for a few seconds. The old one (a zombie) must never get an acknowledgement for a write the
    new one does not see. Three mechanisms work together:

    * Epochs. Each writer takes ``EPOCH + 1`` at open (or more, if the journal already holds a
      higher epoch: a lost EPOCH file must not put a writer below its predecessors), written
      atomically (temp file, fsync, rename, fsync of the directory), and stamps it on every
      record it writes.
    * The lock. ``flock(LOCK)`` is held by a new writer from before its epoch bump until its
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
    and caches attributes for seconds by default; a replicated log engine would have to take
    the place of these modules behind the same interface.
"""

from __future__ import annotations

from cluster.storage.journal_errors import (
    JournalClosedError,
    JournalCorrupt,
    JournalError,
    JournalFenced,
    JournalLockError,
    JournalWriteError,
)
from cluster.storage.journal_files import EPOCH_FILE, LOCK_FILE, SEGMENT_SUFFIX, list_segments
from cluster.storage.journal_readers import RawFrame, read_batches, read_frames
from cluster.storage.journal_writer import (
    DEFAULT_FSYNC_POLICY,
    DEFAULT_SEGMENT_BYTES,
    FsyncPolicy,
    Journal,
    RecoveryReport,
)

__all__ = [
    "DEFAULT_FSYNC_POLICY",
    "DEFAULT_SEGMENT_BYTES",
    "EPOCH_FILE",
    "LOCK_FILE",
    "SEGMENT_SUFFIX",
    "FsyncPolicy",
    "Journal",
    "JournalClosedError",
    "JournalCorrupt",
    "JournalError",
    "JournalFenced",
    "JournalLockError",
    "JournalWriteError",
    "RawFrame",
    "RecoveryReport",
    "list_segments",
    "read_batches",
    "read_frames",
]
