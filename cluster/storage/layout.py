"""What a data dir holds, checked before a cluster starts on it.

A data dir holds one folder per shard (``shard-k/``: its journal and snapshots) and a small
manifest, ``raytrade-data.json``, that records the shard count the data was written with. The
count is part of the data's identity: a symbol's shard decides which journal holds its orders
and which bits its order ids carry (see `cluster.config`), so starting on the same journals
with another count would send symbols to shards that never saw their orders. `check_data_dir`
refuses that before Ray starts and before any new ``shard-k/`` folder exists; a data dir
written before the manifest existed has its count inferred from its ``shard-k`` folders.

Pure file logic (no Ray), so the rules are unit-tested on temporary folders.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final

import msgspec

from protocols.errors import ConfigError
from protocols.journal_format import SEGMENT_HEADER

MANIFEST: Final = "raytrade-data.json"
"""The manifest's file name in the data dir."""
MANIFEST_FORMAT: Final = 1

_SHARD_FOLDER: Final = re.compile(r"^shard-(\d+)$")


class DataDirManifest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the data dir's manifest records about the data in it."""

    format: int = MANIFEST_FORMAT
    """Version of this manifest's layout."""
    shards: int
    """The shard count the journals were written with."""


class DataDirState(msgspec.Struct, frozen=True, kw_only=True):
    """What `check_data_dir` found in a data dir."""

    path: Path
    """The data dir, resolved."""
    recorded_shards: int | None
    """The shard count of the manifest, or inferred from ``shard-k`` folders; None if new."""
    inferred: bool
    """True if ``recorded_shards`` comes from the folders (no manifest yet)."""
    holds_events: bool
    """True if any shard's journal holds a command or any snapshot exists."""


def shard_folders(data_dir: str | os.PathLike[str]) -> dict[int, Path]:
    """Return the data dir's ``shard-k`` folders by shard number (empty if there are none)."""
    root = Path(data_dir)
    if not root.is_dir():
        return {}
    found = {}
    for entry in root.iterdir():
        match = _SHARD_FOLDER.match(entry.name)
        if match and entry.is_dir():
            found[int(match.group(1))] = entry
    return found


def read_manifest(data_dir: str | os.PathLike[str]) -> DataDirManifest | None:
    """Return the data dir's manifest, or None if it has none; raise `ConfigError` if unreadable."""
    path = Path(data_dir) / MANIFEST
    try:
        payload = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error}") from error
    try:
        return msgspec.json.decode(payload, type=DataDirManifest)
    except msgspec.DecodeError as error:
        raise ConfigError(f"{path} is damaged ({error}); it records the data dir's shard "
                          "count: fix or remove it") from error


def holds_events(data_dir: str | os.PathLike[str]) -> bool:
    """Return whether any shard of the data dir journaled a command or wrote a snapshot.

    A fresh shard's segment holds only its header; anything longer holds at least one frame.
    """
    for folder in shard_folders(data_dir).values():
        journal = folder / "journal"
        if journal.is_dir() and any(
            segment.stat().st_size > SEGMENT_HEADER.size for segment in journal.glob("*.seg")
        ):
            return True
        snapshots = folder / "snapshots"
        if snapshots.is_dir() and any(snapshots.glob("*.snap")):
            return True
    return False


def check_data_dir(data_dir: str | os.PathLike[str], shards: int) -> DataDirState:
    """Check that a cluster of ``shards`` shards may start on ``data_dir``; say what is there.

    Raise `ConfigError` if the data dir holds events written with another shard count. Touch
    nothing: a data dir that does not exist yet is fine (and stays absent).
    """
    path = Path(data_dir).resolve()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"data dir {path} is not a folder")
    manifest = read_manifest(path)
    folders = shard_folders(path)
    if manifest is not None:
        recorded: int | None = manifest.shards
    else:
        recorded = max(folders) + 1 if folders else None
    state = DataDirState(path=path, recorded_shards=recorded, inferred=manifest is None,
                         holds_events=holds_events(path))
    if recorded is not None and recorded != shards and state.holds_events:
        source = "its shard-k folders" if state.inferred else MANIFEST
        raise ConfigError(
            f"data dir {path} holds {recorded} shards (from {source}); --shards {shards} would "
            f"re-route symbols to shards whose journals never saw their orders: start with "
            f"--shards {recorded}, or use a new --data-dir"
        )
    return state


def write_manifest(data_dir: str | os.PathLike[str], shards: int) -> Path:
    """Record ``shards`` in the data dir's manifest (creating the folder); return its path.

    Written to a temporary file and renamed, so a crash leaves the old manifest or the new one.
    """
    root = Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    path = root / MANIFEST
    temporary = root / f".{MANIFEST}.tmp-{os.getpid()}"
    temporary.write_bytes(msgspec.json.encode(DataDirManifest(shards=shards)) + b"\n")
    os.replace(temporary, path)
    return path
