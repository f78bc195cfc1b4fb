"""Shared test configuration: hypothesis profiles, and a fixture that puts the root logger back.

``dev`` (the default) is quick; ``ci`` is thorough and derandomized, so a CI failure
reproduces. Pick one with ``HYPOTHESIS_PROFILE=ci``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=200, deadline=None)
settings.register_profile(
    "ci",
    max_examples=1000,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    # CI's second run of the core's tests on the interpreted build (test_compiled_core): the
    # same derandomized search with fewer examples, for CI's time; the compiled build, which
    # every process runs, gets the full 1000
    "ci-pure",
    parent=settings.get_profile("ci"),
    max_examples=300,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    """Remove the handlers a test added to the root logger and restore its level (for tests
    of `cluster.logs.configure_logging`, which installs one)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
