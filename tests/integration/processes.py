"""What processes are running: for tests that check a command left nothing behind."""

from __future__ import annotations

from pathlib import Path


def processes_naming(folder: Path) -> list[str]:
    """Return the command lines of running processes that name ``folder`` (Ray's, if any)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(folder) in command:
                found.append(command)
    return found
