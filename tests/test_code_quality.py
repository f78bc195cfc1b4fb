"""The code holds its own rules: lint, strict typing of the cores, one-way dependencies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*command: str) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"


def test_ruff_finds_nothing() -> None:
    """ruff check passes on the whole tree (rules and their exceptions in pyproject.toml)."""
    _run(sys.executable, "-m", "ruff", "check", ".")


@pytest.mark.slow
def test_mypy_passes() -> None:
    """mypy passes; the pure cores and the vocabulary are checked in strict mode."""
    _run(sys.executable, "-m", "mypy")


def test_dependencies_point_one_way() -> None:
    """import-linter: cluster -> actors -> protocols, and the cores import no framework."""
    _run(str(Path(sys.executable).parent / "lint-imports"))
