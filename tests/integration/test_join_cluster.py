"""`raytrade up --address` joins a Ray someone else runs, and `raytrade down` leaves it running.

Issue 11, item 1. A host process starts a Ray the way an operator's `ray start` would leave one
(here: `cluster.edge.wiring.start_ray` in its own process, serving until the test closes its
stdin); the `raytrade` command, as a user runs it, starts the actors there and exits, refuses
to start a second copy in the same namespace, is seen by `status` and by a Python client that
trades, is stopped by `down` while the host's Ray keeps serving, and comes back from its data
dir on the next `up --address`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

VENV_BIN = str(Path(sys.executable).parent)
NAMESPACE = "joined"
COMMAND_TIMEOUT_S = 180.0

HOST = textwrap.dedent("""
    import sys
    from cluster.edge import handles
    from cluster.edge.wiring import start_ray

    print(start_ray(num_cpus=2, namespace="host"), flush=True)
    sys.stdin.read()  # serve until the test closes stdin
    handles.stop_ray()
""")

TRADE = textwrap.dedent("""
    import sys
    from cluster.clients.ray_client import Client
    from cluster.edge.wiring import connect

    client = Client(connect(sys.argv[1], sys.argv[2], timeout_s=30))
    events = client.sell("alice", "AAPL", 100, 18_950, client_order_id=sys.argv[3])
    print(type(events[0]).__name__, events[0].seq)
""")


@pytest.fixture
def shell() -> Iterator[dict[str, str]]:
    """A user's shell: the virtualenv on PATH, no RAY_* settings, a private short temp dir."""
    with tempfile.TemporaryDirectory(prefix="rt-join-") as folder:
        env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
        env.update(TMPDIR=folder, RAY_TMPDIR=folder, PYTHONUNBUFFERED="1",
                   PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}")
        yield env


@pytest.fixture
def host(shell: dict[str, str]) -> Iterator[str]:
    """A running Ray that this test did not start through raytrade; yield its address."""
    process = subprocess.Popen([sys.executable, "-c", HOST], env=shell, text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        address = process.stdout.readline().strip()
        assert address, "the host's Ray did not start"
        yield address
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def raytrade(shell: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["raytrade", *args], env=shell, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT_S, check=False)


def trade(shell: dict[str, str], address: str, client_order_id: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", TRADE, NAMESPACE, address, client_order_id],
                          env=shell, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def test_up_joins_a_running_ray_and_down_leaves_it_running(
    shell: dict[str, str], host: str, tmp_path: Path
) -> None:
    where = ["--address", host, "--namespace", NAMESPACE]
    data = ["--shards", "1", "--data-dir", str(tmp_path / "data")]

    up = raytrade(shell, "up", *where, *data)
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"Ray at {host}" in up.stdout
    assert "raytrade keeps running in that Ray; stop it with: raytrade down" in up.stdout

    again = raytrade(shell, "up", *where, *data)
    assert again.returncode == 1, again.stdout + again.stderr
    assert f"raytrade already runs in namespace '{NAMESPACE}'" in again.stderr

    status = raytrade(shell, "status", *where)
    assert status.returncode == 0, status.stderr
    assert "shard 0:" in status.stdout and "supervisor-shard-0: running" in status.stdout

    kind, seq = trade(shell, host, "first")
    assert kind == "OrderAccepted"

    down = raytrade(shell, "down", *where)
    assert down.returncode == 0, down.stdout + down.stderr
    assert f"the Ray at {host} keeps running" in down.stdout

    gone = raytrade(shell, "status", *where)
    assert gone.returncode == 1
    assert NAMESPACE in gone.stderr  # no raytrade in that namespace, said in one line

    # the host's Ray still serves: raytrade comes back there, from its data dir
    back = raytrade(shell, "up", *where, *data)
    assert back.returncode == 0, back.stdout + back.stderr
    kind, next_seq = trade(shell, host, "second")
    assert kind == "OrderAccepted" and int(next_seq) > int(seq)  # the journal was recovered
    assert trade(shell, host, "first")[0] == "OrderRejected"  # the first id is remembered
    down = raytrade(shell, "down", *where)
    assert down.returncode == 0, down.stdout + down.stderr
