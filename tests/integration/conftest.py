"""One local Ray per test session, shared by every integration test.

Ray starts once, with 2 CPUs and no dashboard, in the system temp folder; each test module
starts its own raytrade cluster in its own namespace and stops it at the end.

`cluster.edge.handles` is imported before anything imports ``ray``: it sets Ray's
authentication mode first (see its docstring).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from cluster.edge import handles
from cluster.edge.wiring import start_ray


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """Start the session's Ray (private, local) and shut it down after the last test.

    Its workers report metrics every second instead of Ray's 10 s, so the Prometheus test
    sees a flow's counts within seconds.
    """
    os.environ.setdefault("RAY_metrics_report_interval_ms", "1000")
    start_ray(num_cpus=2, namespace="raytrade-tests")
    yield
    handles.stop_ray()
