"""Run a multi-node Ray script in its own process: several real raylets on loopback.

A test's script builds its nodes with `ray.cluster_utils.Cluster` (the session's own local Ray
stays untouched in the pytest process), gets ``sys.argv[1]`` as Ray's temp dir (short: Ray's
socket paths must stay below 108 bytes) and ``sys.argv[2]`` as raytrade's data dir, and prints
its findings as one JSON line last.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_on_raylets(script: str, data_dir: Path, *, timeout_s: float) -> dict[str, Any]:
    """Run ``script``; return the JSON object it printed last (fail with its output if not)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env["PYTHONPATH"] = str(ROOT)
    with tempfile.TemporaryDirectory(prefix="rt-nodes-") as ray_tmp:
        done = subprocess.run(
            [sys.executable, "-c", script, ray_tmp, str(data_dir)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s, check=False,
        )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report
