"""The journal's failures, one class each, so that an owner can tell them apart.

The book actor must never acknowledge a batch once a newer writer took over, must restart
after a failed fsync, and must not serve over damaged data; each of those is its own class.
The tree::

    JournalError              base of everything below
    ├── JournalCorrupt        bad segment header, bad frame or broken sequence before the tail
    ├── JournalFenced         a newer writer took over: do not acknowledge what you appended
    ├── JournalWriteError     write or fsync failed: the writer is dead, reopen to recover
    ├── JournalLockError      the journal lock was held too long, or proved ineffective
    └── JournalClosedError    the writer was used after `Journal.close`

These are infrastructure failures inside a shard; what crosses the API is in `protocols.errors`.
"""

from __future__ import annotations


class JournalError(Exception):
    """Base class of every journal failure."""


# The two names the design uses read as states ("except JournalFenced"), so they keep them.


class JournalCorrupt(JournalError):  # noqa: N818
    """Raised when acknowledged data is damaged or a file is not what the journal expects.

    A bad segment header, a bad frame with valid data after it, a sequence gap or overlap, a
    journal that starts after the sequence number asked for, an unreadable EPOCH file, a
    segment file that already exists when the writer creates it. Never raised for a torn
    tail, which recovery repairs.
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
