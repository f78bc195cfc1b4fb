"""Rules of the snapshot store: atomic saves, newest-valid lookup, pruning, bad files skipped."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from cluster.storage.snapshots import SNAPSHOT_HEADER, SnapshotStore


class FsyncCounter:
    """An fsync that really syncs and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, descriptor: int) -> None:
        os.fsync(descriptor)
        self.calls += 1


def test_latest_returns_the_newest_snapshot(tmp_path: Path) -> None:
    """latest() gives the highest seq saved for the name, with its payload."""
    store = SnapshotStore(tmp_path)
    store.save("book-0", 10, b"ten")
    store.save("book-0", 30, b"thirty")
    store.save("book-0", 20, b"twenty")
    store.save("risk-0", 99, b"other name")
    assert store.latest("book-0") == (30, b"thirty")
    assert store.latest("risk-0") == (99, b"other name")


def test_latest_of_an_unknown_name_is_none(tmp_path: Path) -> None:
    """No snapshot is not an error: the caller replays the whole journal."""
    store = SnapshotStore(tmp_path / "created")
    assert store.latest("book-0") is None
    assert (tmp_path / "created").is_dir()


def test_max_seq_excludes_snapshots_ahead_of_the_journal(tmp_path: Path) -> None:
    """latest(max_seq=n) ignores snapshots with seq > n."""
    store = SnapshotStore(tmp_path)
    for seq in (10, 20, 30):
        store.save("book-0", seq, str(seq).encode())
    assert store.latest("book-0", max_seq=29) == (20, b"20")
    assert store.latest("book-0", max_seq=20) == (20, b"20")
    assert store.latest("book-0", max_seq=9) is None


def test_save_writes_the_documented_file(tmp_path: Path) -> None:
    """The file is {name}-{seq:020d}.snap: a 32-byte header then the payload."""
    store = SnapshotStore(tmp_path)
    path = store.save("book-0", 7, b"state")
    assert path == tmp_path / "book-0-00000000000000000007.snap"
    data = path.read_bytes()
    assert data[:8] == b"RAYTSNAP"
    assert data[SNAPSHOT_HEADER.size :] == b"state"
    assert len(data) == SNAPSHOT_HEADER.size + 5


def test_save_syncs_the_file_and_its_directory(tmp_path: Path) -> None:
    """A save is durable when it returns: the file and the directory entry are fsynced."""
    counter = FsyncCounter()
    store = SnapshotStore(tmp_path, fsync_function=counter)
    store.save("book-0", 1, b"x" * 100_000)
    assert counter.calls == 2


def test_saving_the_same_seq_again_replaces_it(tmp_path: Path) -> None:
    """A restarted actor may snapshot the same seq again; the file is replaced atomically."""
    store = SnapshotStore(tmp_path)
    store.save("book-0", 5, b"first")
    store.save("book-0", 5, b"second")
    assert store.latest("book-0") == (5, b"second")
    assert store.sequences("book-0") == [5]


def test_save_prunes_to_the_newest_keep_per_name(tmp_path: Path) -> None:
    """After a save only the newest `keep` snapshots of that name remain; others untouched."""
    store = SnapshotStore(tmp_path, keep=2)
    store.save("risk-0", 1, b"r")
    for seq in range(1, 6):
        store.save("book-0", seq, b"b")
    assert store.sequences("book-0") == [4, 5]
    assert store.sequences("risk-0") == [1]


def test_an_out_of_order_save_keeps_the_file_it_wrote(tmp_path: Path) -> None:
    """Saving an older seq than the kept ones never deletes the file just written."""
    store = SnapshotStore(tmp_path, keep=2)
    for seq in (10, 20):
        store.save("book-0", seq, b"new")
    path = store.save("book-0", 5, b"old")
    assert path.exists()
    assert store.latest("book-0") == (20, b"new")


def test_a_corrupted_newest_snapshot_falls_back_to_the_previous(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A snapshot whose checksum fails is skipped with a warning, never fatal."""
    store = SnapshotStore(tmp_path)
    store.save("book-0", 10, b"good state")
    newest = store.save("book-0", 20, b"newer state")
    data = bytearray(newest.read_bytes())
    data[-1] ^= 0xFF
    newest.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="cluster.storage.snapshots"):
        assert store.latest("book-0") == (10, b"good state")
    assert "checksum mismatch" in caplog.text


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[:-3], "payload is"),
        (lambda data: data[:10], "shorter than the header"),
        (lambda data: b"", "shorter than the header"),
        (lambda data: b"NOTASNAP" + data[8:], "magic"),
        (lambda data: data[:8] + (9).to_bytes(4, "little") + data[12:], "format version"),
        (lambda data: data[:12] + (21).to_bytes(8, "little") + data[20:], "seq 21"),
    ],
)
def test_partial_or_foreign_snapshots_are_skipped(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: Callable[[bytes], bytes],
    message: str,
) -> None:
    """A cut-short, foreign or mislabelled file is skipped in favour of an older snapshot."""
    store = SnapshotStore(tmp_path)
    store.save("book-0", 10, b"good state")
    newest = store.save("book-0", 20, b"newer state")
    newest.write_bytes(damage(newest.read_bytes()))
    with caplog.at_level(logging.WARNING, logger="cluster.storage.snapshots"):
        assert store.latest("book-0") == (10, b"good state")
    assert message in caplog.text


def test_only_bad_snapshots_give_none(tmp_path: Path) -> None:
    """If no snapshot is intact, latest() is None and the caller replays from the start."""
    store = SnapshotStore(tmp_path)
    store.save("book-0", 10, b"state").write_bytes(b"garbage")
    assert store.latest("book-0") is None


def test_a_leftover_temporary_file_is_ignored(tmp_path: Path) -> None:
    """A temporary file left by a crash mid-save is neither listed nor read."""
    store = SnapshotStore(tmp_path)
    store.save("book-0", 10, b"state")
    (tmp_path / ".tmp-abc123").write_bytes(b"half a snapshot")
    (tmp_path / ".tmp-book-0-00000000000000000099.snap").write_bytes(b"half")
    assert store.sequences("book-0") == [10]
    assert store.latest("book-0") == (10, b"state")


def test_names_that_prefix_each_other_do_not_mix(tmp_path: Path) -> None:
    """Snapshots of "book" and "book-0" stay apart although one name prefixes the other."""
    store = SnapshotStore(tmp_path)
    store.save("book", 1, b"plain")
    store.save("book-0", 2, b"shard")
    assert store.latest("book") == (1, b"plain")
    assert store.latest("book-0") == (2, b"shard")


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    """Names must be plain file-name words, seq non-negative, keep at least one."""
    store = SnapshotStore(tmp_path)
    for name in ("", "../escape", ".hidden", "a/b", "-dash"):
        with pytest.raises(ValueError, match="snapshot name"):
            store.save(name, 1, b"x")
    with pytest.raises(ValueError, match="negative"):
        store.save("book-0", -1, b"x")
    with pytest.raises(ValueError, match="keep"):
        SnapshotStore(tmp_path, keep=0)
