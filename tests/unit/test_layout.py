"""The data dir's manifest: a start with another shard count is refused before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.storage import layout
from protocols.errors import ConfigError
from protocols.journal_format import SEGMENT_HEADER


def _journal(data_dir: Path, shard: int, *, frames: bool) -> None:
    """Make a shard folder whose one segment holds its header, and frames if asked."""
    journal = data_dir / f"shard-{shard}" / "journal"
    journal.mkdir(parents=True)
    size = SEGMENT_HEADER.size + (40 if frames else 0)
    (journal / "00000000000000000001.seg").write_bytes(b"\0" * size)
    (journal / "EPOCH").write_text("1")


def test_a_new_data_dir_is_fine_and_stays_untouched(tmp_path: Path) -> None:
    """Checking a data dir that does not exist yet creates nothing."""
    state = layout.check_data_dir(tmp_path / "new", 3)
    assert state.recorded_shards is None and not state.holds_events
    assert not (tmp_path / "new").exists()


def test_the_manifest_records_the_shard_count(tmp_path: Path) -> None:
    """`write_manifest` creates the folder; the count reads back, and the same count passes."""
    layout.write_manifest(tmp_path / "data", 2)
    manifest = layout.read_manifest(tmp_path / "data")
    assert manifest is not None and manifest.shards == 2
    state = layout.check_data_dir(tmp_path / "data", 2)
    assert state.recorded_shards == 2 and not state.inferred
    assert [path.name for path in (tmp_path / "data").iterdir()] == [layout.MANIFEST]


def test_another_shard_count_on_journals_is_refused_and_names_both(tmp_path: Path) -> None:
    """A data dir with journals of 2 shards refuses 3, saying how many it holds."""
    data = tmp_path / "data"
    layout.write_manifest(data, 2)
    _journal(data, 0, frames=True)
    _journal(data, 1, frames=False)
    with pytest.raises(ConfigError, match=r"holds 2 shards .*--shards 3 would re-route"):
        layout.check_data_dir(data, 3)
    assert not (data / "shard-2").exists()


def test_a_data_dir_from_before_the_manifest_has_its_count_inferred(tmp_path: Path) -> None:
    """Without a manifest the shard-k folders tell the count (the highest k, plus one)."""
    data = tmp_path / "data"
    for shard in range(3):
        _journal(data, shard, frames=True)
    (data / "shard-x").mkdir()  # not a shard folder
    state = layout.check_data_dir(data, 3)
    assert state.recorded_shards == 3 and state.inferred and state.holds_events
    with pytest.raises(ConfigError, match=r"holds 3 shards \(from its shard-k folders\)"):
        layout.check_data_dir(data, 2)


def test_a_count_without_events_may_change(tmp_path: Path) -> None:
    """Folders whose segments hold only headers carry no orders: another count is safe."""
    data = tmp_path / "data"
    layout.write_manifest(data, 2)
    _journal(data, 0, frames=False)
    _journal(data, 1, frames=False)
    state = layout.check_data_dir(data, 4)
    assert state.recorded_shards == 2 and not state.holds_events


def test_a_snapshot_counts_as_data(tmp_path: Path) -> None:
    """A snapshot (even with its journal segments pruned) is recorded state."""
    snapshots = tmp_path / "data" / "shard-0" / "snapshots"
    snapshots.mkdir(parents=True)
    (snapshots / f"book-{7:020d}.snap").write_bytes(b"x")
    assert layout.holds_events(tmp_path / "data")


def test_a_damaged_manifest_is_a_config_error(tmp_path: Path) -> None:
    """A manifest that does not decode is reported with its path, not guessed around."""
    (tmp_path / layout.MANIFEST).write_text("{shards: two")
    with pytest.raises(ConfigError, match="is damaged"):
        layout.check_data_dir(tmp_path, 2)


def test_a_file_where_the_data_dir_should_be_is_a_config_error(tmp_path: Path) -> None:
    """--data-dir naming a file is refused."""
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is not a folder"):
        layout.check_data_dir(tmp_path / "file", 2)


def test_a_cluster_book_refuses_a_data_dir_without_the_manifest(tmp_path: Path) -> None:
    """A book on a node that does not see the shared data dir must not start an empty journal."""
    from cluster.storage.shard import ShardStorageFactory, shard_directory

    directory = shard_directory(tmp_path / "data", 0)
    with pytest.raises(ConfigError, match="does not see the cluster's data dir"):
        ShardStorageFactory(directory, require_manifest=True)()
    assert not (directory / "journal").exists()  # nothing was created
    layout.write_manifest(tmp_path / "data", 1)
    storage = ShardStorageFactory(directory, require_manifest=True)()
    snapshot, batches = storage.load()  # becomes the shard's writer
    assert snapshot is None and list(batches) == []
    storage.close()
    assert (directory / "journal").is_dir()
    ShardStorageFactory(shard_directory(tmp_path / "other", 0))().close()  # in-process: no need
