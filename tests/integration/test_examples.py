"""The scripts in examples/ run as a user runs them: each in its own process, with a timeout.

quickstart.py, simulation.py and what_if.py --ray start (and must stop) a private Ray of
their own; grpc_plain_client.py runs against a real cluster and gateway started here on the
session's Ray; replay_to_numpy.py needs no Ray. Ray's temporary files go to a short private
folder per script (its socket paths must stay under 108 bytes), which also tells whether the
script left any Ray process behind.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from cluster.config import ClusterConfig, InstrumentRegistry
from cluster.edge.wiring import start_cluster, start_gateways
from cluster.gateway.auth import hash_token
from cluster.gateway.config import GatewayConfig, TokenEntry
from tests.integration.ports import free_port
from tests.integration.processes import processes_naming

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TIMEOUT_S = 180
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def ray_tmp() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="rt-ex-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def run_example(name: str, *args: str, ray_tmp: Path | None = None) -> str:
    """Run ``examples/<name>``; return its output; fail with the output if it fails."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if ray_tmp is not None:
        env["RAY_TMPDIR"] = str(ray_tmp)
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert done.returncode == 0, f"{name} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout




def png_size(path: Path) -> tuple[int, int]:
    """Return a PNG's width and height; fail unless the file starts with the PNG signature
    and an IHDR chunk and ends with the IEND chunk (a truncated file does not)."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} does not start with the PNG signature"
    assert data[12:16] == b"IHDR", f"{path}: no IHDR chunk first"
    assert data[-12:] == b"\0\0\0\0IEND\xaeB`\x82", f"{path} does not end with IEND"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.ray
@pytest.mark.slow
def test_quickstart_trades_prints_positions_and_stops(ray_tmp: Path) -> None:
    """Bob's market buy fills at alice's offer, his sell at her bid; both positions print;
    no Ray process outlives the script."""
    out = run_example("quickstart.py", ray_tmp=ray_tmp)
    assert "fill: bob bought 40 AAPL from alice at 189.55" in out, out
    assert "fill: alice bought 10 AAPL from bob at 189.45" in out, out
    assert "alice AAPL: net -30" in out and "bob AAPL: net +30" in out, out
    assert out.rstrip().endswith("stopped")
    assert processes_naming(ray_tmp) == []


@pytest.mark.ray
@pytest.mark.slow
def test_simulation_plots_and_summarises_a_seeded_run(ray_tmp: Path, tmp_path: Path) -> None:
    """200 steps of the seeded simulation on a private Ray: the agents trade, the journal
    replayed into numpy holds every trade the simulation counted, each symbol's last trade is
    near its final fair value, the agents' PnL sums to zero, and the four plots are whole
    PNGs in the folder given; no Ray process outlives the script."""
    plots = tmp_path / "plots"
    out = run_example("simulation.py", "--steps", "200", "--out", str(plots), ray_tmp=ray_tmp)
    assert out.startswith("seed 7: 200 steps (20 s simulated), 4 symbols on 2 shards, "
                          "7 agents"), out
    counts = re.search(r"^([\d,]+) commands, ([\d,]+) trades \(([\d,]+) in the journal\)",
                       out, re.MULTILINE)
    assert counts is not None, out
    commands, trades, journaled = (int(group.replace(",", "")) for group in counts.groups())
    assert trades > 50 and journaled == trades and commands > trades, out

    rows = re.findall(r"^(SYM\d) +(\d+\.\d\d) +(\d+\.\d\d) +(\d+)$", out, re.MULTILINE)
    assert [row[0] for row in rows] == ["SYM0", "SYM1", "SYM2", "SYM3"], out
    assert sum(int(row[3]) for row in rows) == trades, out
    for _, fair_value, last_price, _ in rows:  # the makers quote around the fair value
        assert abs(Decimal(fair_value) - Decimal(last_price)) < Decimal("0.5"), out

    pnl = dict(re.findall(r"^  (\w+) +([+-][\d,]+\.\d\d)$", out, re.MULTILINE))
    assert sorted(pnl) == ["mm0", "mm1", "momentum0", "noise0", "noise1", "noise2",
                           "noise3"], out
    assert sum(Decimal(value.replace(",", "")) for value in pnl.values()) == 0, out

    names = ["prices.png", "spread.png", "volume.png", "pnl.png"]
    assert f"plots: {', '.join(str(plots / name) for name in names)}" in out, out
    assert sorted(path.name for path in plots.iterdir()) == sorted(names)
    for name in names:
        width, height = png_size(plots / name)
        assert width >= 500 and height >= 200, (name, width, height)
    assert processes_naming(ray_tmp) == []


def test_replay_to_numpy_computes_what_duckdb_computes() -> None:
    """The numpy VWAPs of a short recorded run equal DuckDB's over the Parquet recording, and
    1-second bars come back for every traded symbol."""
    out = run_example("replay_to_numpy.py")
    assert "from shards [0, 1]" in out, out
    assert "numpy and DuckDB VWAPs agree: True" in out, out
    assert "1-second bars (40 rows" in out and "AAPL     2026-01-01T00:00:00Z" in out, out


@pytest.mark.ray
@pytest.mark.slow
def test_what_if_on_a_private_ray_prints_the_table(ray_tmp: Path) -> None:
    """Three variants as Ray tasks: the table compares them with the recording."""
    out = run_example("what_if.py", "--ray", ray_tmp=ray_tmp)
    header, _, recorded, *variants = out.splitlines()[2:8]
    assert header.startswith("variant") and "RISK_MAX_ORDER_QUANTITY" in header, out
    assert recorded.startswith("recorded") and recorded.endswith("yes"), out
    assert [line.split("  ")[0] for line in variants] == [
        "no self-trades", "tight limits", "4 shards"], out
    assert "'tight limits' refused" in out
    assert processes_naming(ray_tmp) == []


def test_the_plain_grpc_client_imports_nothing_of_raytrade() -> None:
    """Only the standard library, grpcio and grpcio-tools: what another language's user has."""
    tree = ast.parse((EXAMPLES / "grpc_plain_client.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert imported <= {"__future__", "argparse", "importlib", "sys", "tempfile", "threading",
                        "time", "decimal", "pathlib", "typing", "grpc", "grpc_tools"}, imported


@pytest.mark.ray
@pytest.mark.grpc
def test_the_plain_grpc_client_trades_through_a_real_gateway(
        ray_session: None, tmp_path: Path) -> None:
    """Against a 1-shard cluster and a plaintext gateway: the quote is accepted, the taker
    fills 4 of it, the stream brings both reports, and the positions are -4 and +4."""
    namespace = f"examples-{uuid.uuid4().hex[:8]}"
    cluster = start_cluster(ClusterConfig(shards=1, namespace=namespace,
                                          data_dir=str(tmp_path / "data")),
                            InstrumentRegistry.load())
    try:
        port = free_port()
        gateways = start_gateways(cluster, [GatewayConfig(port=port, tokens=[
            TokenEntry(sha256=hash_token("t"), name="n", accounts=["a"]),
            TokenEntry(sha256=hash_token("u"), name="m", accounts=["b"]),
        ])])
        try:
            out = run_example("grpc_plain_client.py", "--target", f"127.0.0.1:{port}",
                              "--token", "t", "--taker-token", "u")
        finally:
            gateways.stop()
    finally:
        cluster.stop()
    assert "quote: EXECUTION_TYPE_ACCEPTED" in out and "at 189.50" in out, out
    assert "taker: FILL 4 at 189.50, LIQUIDITY_TAKER" in out, out
    assert "the execution stream brought 2 report(s)" in out, out
    assert "EXECUTION_TYPE_FILL" in out.split("the execution stream")[1], out
    assert "quoter a AAPL: net -4" in out and "taker b AAPL: net +4" in out, out
