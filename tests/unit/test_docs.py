"""The docs cite tests by name: each one cited must exist, so a rename cannot orphan a claim."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def cited_tests(document: Path) -> list[tuple[str, str]]:
    """Return every (test file, test function) a document cites as `path::name` or `::name`
    (a bare ``::name`` continues the last file cited on the same line)."""
    cited = []
    for line in document.read_text().splitlines():
        current = None
        for match in re.finditer(r"`(tests/[\w/]+\.py)?::(\w+)`", line):
            current = match.group(1) or current
            if current is not None:
                cited.append((current, match.group(2)))
    return cited


@pytest.mark.parametrize("document", ["docs/THREAT_MODEL.md"])
def test_every_test_a_document_cites_exists(document: str) -> None:
    """Each cited test file exists and defines the cited test function."""
    cited = cited_tests(ROOT / document)
    assert len(cited) > 10, "the threat model cites its tests"
    missing = [(path, name) for path, name in cited
               if not (ROOT / path).exists()
               or not re.search(rf"^\s*(async )?def {name}\b", (ROOT / path).read_text(), re.M)]
    assert missing == []
