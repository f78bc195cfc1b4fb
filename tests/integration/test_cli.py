"""The ``raytrade`` command for real: `up` serves until interrupted, `status` finds it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_up_serves_status_reports_and_ctrl_c_stops_cleanly(tmp_path: Path) -> None:
    """`raytrade up` starts its own local Ray and shards, `raytrade status --address` shows
    them with their supervisors, and SIGINT stops everything with exit code 0."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    up = subprocess.Popen(
        [sys.executable, "-m", "cluster.edge.cli", "up", "--shards", "2", "--namespace", "cli-test",
         "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        lines = []
        deadline = time.monotonic() + 120
        address = None
        assert up.stdout is not None
        while address is None:
            assert time.monotonic() < deadline, "raytrade up did not come up:\n" + "".join(lines)
            line = up.stdout.readline()
            assert line or up.poll() is None, "raytrade up exited:\n" + "".join(lines)
            lines.append(line)
            found = re.search(r"Ray at (\S+), data", line)
            address = found.group(1) if found else None
        status = subprocess.run(
            [sys.executable, "-m", "cluster.edge.cli", "status", "--namespace", "cli-test",
             "--address", address],
            capture_output=True, text=True, timeout=120, env=env, check=False,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        assert "shard 0:" in status.stdout and "shard 1:" in status.stdout
        assert "supervisor-shard-1: running" in status.stdout
        up.send_signal(signal.SIGINT)
        rest, _ = up.communicate(timeout=120)
        assert up.returncode == 0, "".join(lines) + rest
        assert "stopped." in rest
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        if up.stdout is not None:
            up.stdout.close()
