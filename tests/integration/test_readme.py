"""The README's Python snippet, run as a user would: against a real `raytrade up`."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_python_block() -> str:
    """Return the README's ```python block that uses the Python client."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (block,) = [block for block in blocks if "ray_client import Client" in block]
    return block


def test_the_readme_snippet_trades_and_reads_positions(tmp_path: Path) -> None:
    """The snippet connects, trades, sees bob's 40 lots (not an empty read model), and leaves
    no order resting behind it."""
    # Ray's temp files in a private folder with a short path (its socket paths must stay under
    # 108 bytes, which pytest's tmp_path is not)
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt-readme-"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": str(ray_tmp)}
    up = subprocess.Popen(
        [sys.executable, "-m", "cluster.edge.cli", "up", "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        assert up.stdout is not None
        lines: list[str] = []
        address = None
        deadline = time.monotonic() + 120
        while address is None:
            assert time.monotonic() < deadline, "raytrade up did not come up:\n" + "".join(lines)
            line = up.stdout.readline()
            assert line or up.poll() is None, "raytrade up exited:\n" + "".join(lines)
            lines.append(line)
            found = re.search(r"Ray at (\S+),", line)
            address = found.group(1) if found else None
        # "auto" finds the Ray started last on the machine; name it, so that another Ray
        # running here (the test session's) cannot be picked instead
        snippet = subprocess.run(
            [sys.executable, "-c", readme_python_block()], capture_output=True, text=True,
            timeout=120, env={**env, "RAY_ADDRESS": address}, check=False,
        )
        assert snippet.returncode == 0, snippet.stdout + snippet.stderr
        assert "account='bob'" in snippet.stdout and "net_quantity=40" in snippet.stdout, (
            snippet.stdout)
        check = subprocess.run(
            [sys.executable, "-c", "from cluster.clients.ray_client import Client\n"
             "from cluster.edge.wiring import connect\n"
             "print(len(Client(connect('raytrade', 'auto')).open_orders('alice', 'AAPL')))"],
            capture_output=True, text=True, timeout=120, env={**env, "RAY_ADDRESS": address},
            check=False,
        )
        assert check.returncode == 0, check.stderr
        assert check.stdout.strip().splitlines()[-1] == "0", "the snippet left orders resting"
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            up.kill()
            up.communicate()
        shutil.rmtree(ray_tmp, ignore_errors=True)
