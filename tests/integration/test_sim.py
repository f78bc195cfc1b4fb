"""The agent simulation on a real local Ray: reproducible to the journal's bytes, with any shards.

Five short runs (150 steps of 100 ms each), each on a fresh cluster and data dir: seed 7 twice
on 2 shards, seed 8 once on 2 shards, seed 7 twice on 4 shards. One more runs the ``raytrade
sim`` command itself, as a subprocess with a private Ray of its own, and reads what it wrote
with the tools a researcher uses (pyarrow, numpy).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from cluster.config import ClusterConfig, Topology
from cluster.edge.wiring import Cluster, start_cluster
from cluster.research.sim import SimConfig, SimResult, journal_digest, main, plot, run_sim
from protocols.errors import ConfigError
from tests.integration.processes import processes_naming

pytestmark = [pytest.mark.ray, pytest.mark.slow]

STEPS = 150
COMMAND_TIMEOUT_S = 240
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_names = itertools.count()

Run = tuple[SimResult, dict[str, str], Path]
"""A run's result, the SHA-256 of each journal segment file (by path), its data dir."""


def segment_hashes(data_dir: Path) -> dict[str, str]:
    """Hash every shard's journal segment files, named by their path under the data dir."""
    return {str(path.relative_to(data_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(data_dir.glob("shard-*/journal/*.seg"))}


@pytest.fixture(scope="module")
def simulate(ray_session: None, tmp_path_factory: pytest.TempPathFactory
             ) -> Callable[[int, int], Run]:
    runs: dict[tuple[int, int, int], Run] = {}

    def run(seed: int, shards: int, copy: int = 0) -> Run:
        key = (seed, shards, copy)
        if key not in runs:
            config = SimConfig(seed=seed, steps=STEPS, shards=shards)
            data_dir = tmp_path_factory.mktemp(f"sim-{seed}-{shards}-{copy}")
            cluster = start_cluster(
                config.cluster_config(str(data_dir), namespace=f"test-sim-{next(_names)}"),
                config.registry())
            try:
                result = run_sim(cluster, config, progress=False)
            finally:
                cluster.stop()
            runs[key] = (result, segment_hashes(data_dir), data_dir)
        return runs[key]

    return run  # type: ignore[return-value]


def series(result: SimResult) -> tuple[object, ...]:
    """Everything a run produced that must not depend on the shards (order ids aside)."""
    return (result.ts_ns, result.symbols, result.pnl, result.net_positions, result.commands,
            result.trades, result.rejects,
            [(row.account, row.symbol, row.net_quantity, row.realized_pnl, row.fees)
             for row in result.positions])


def test_the_same_seed_gives_the_same_journal_bytes(simulate: Callable[..., Run]) -> None:
    """Two runs of one config write byte-identical journals, on 2 shards and on 4."""
    for shards in (2, 4):
        first, first_hashes, data_dir = simulate(7, shards)
        second, second_hashes, _ = simulate(7, shards, 1)
        for shard in range(shards):  # every shard journaled batches, not just its marker
            assert sum((data_dir / name).stat().st_size for name in first_hashes
                       if name.startswith(f"shard-{shard}/")) > 10_000
        assert first_hashes == second_hashes
        assert first.journal_sha256 == second.journal_sha256
        assert series(first) == series(second)


def test_a_different_seed_gives_a_different_run(simulate: Callable[..., Run]) -> None:
    first, first_hashes, _ = simulate(7, 2)
    other, other_hashes, _ = simulate(8, 2)
    assert set(first_hashes) == set(other_hashes)
    assert all(first_hashes[name] != other_hashes[name] for name in first_hashes)
    assert series(first) != series(other)


def test_the_shard_count_changes_nothing_the_agents_see(simulate: Callable[..., Run]) -> None:
    """Each symbol's events come from one shard in sequence, and the simulation orders them by
    symbol: 2 and 4 shards give the same series, trades and positions."""
    assert series(simulate(7, 2)[0]) == series(simulate(7, 4)[0])


def test_agents_trade_and_positions_sum_to_zero(simulate: Callable[..., Run]) -> None:
    """Every symbol trades; the cluster's position read models sum to zero per symbol and agree
    with the simulation's own ledger; the PnL of all agents sums to zero at every step."""
    result, _, _ = simulate(7, 2)
    assert result.trades > 100 and result.commands > result.trades
    assert all(sum(symbol.volume) > 0 for symbol in result.symbols.values())
    totals: dict[str, int] = {}
    for row in result.positions:
        totals[row.symbol] = totals.get(row.symbol, 0) + row.net_quantity
    assert set(totals) == set(result.symbols) and set(totals.values()) == {0}
    read_models = {(row.account, row.symbol): row.net_quantity
                   for row in result.positions if row.net_quantity}
    ledger = {(account, symbol): quantity for account, held in result.net_positions.items()
              for symbol, quantity in held.items()}
    assert read_models == ledger
    assert all(sum(step) == 0 for step in zip(*result.pnl.values(), strict=True))
    makers = [series[-1] for agent, series in result.pnl.items() if agent.startswith("mm")]
    assert max(makers) > 0  # the informed side earns the spread


def test_the_plots_are_written(simulate: Callable[..., Run], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    written = plot(simulate(7, 2)[0], tmp_path / "plots")
    assert sorted(path.name for path in written) == [
        "pnl.png", "prices.png", "spread.png", "volume.png"]
    assert all(path.stat().st_size > 10_000 for path in written)


def test_a_cluster_that_does_not_fit_the_config_is_refused() -> None:
    """run_sim checks the shards and instruments before it starts any actor (this cluster
    object describes one that does not run: nothing here calls Ray)."""
    config = SimConfig(steps=5, shards=2)

    def cluster(shards: int, symbols: int) -> Cluster:
        topology = Topology(config=ClusterConfig(shards=shards),
                            instruments=tuple(SimConfig(symbols=symbols).instruments()), pins={})
        return Cluster(topology, "test-sim-nowhere")

    with pytest.raises(ConfigError, match="shards"):
        run_sim(cluster(1, config.symbols), config, progress=False)
    with pytest.raises(ConfigError, match="instruments"):
        run_sim(cluster(2, config.symbols + 1), config, progress=False)


def test_the_command_refuses_a_data_dir_with_journals_before_starting_anything(
    simulate: Callable[..., Run], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run on top of recorded journals would not be reproducible: exit 2, nothing started."""
    _, _, data_dir = simulate(7, 2)
    status = main(["--data-dir", str(data_dir), "--out", str(tmp_path), "--no-plots", "-q"])
    assert status == 2
    assert "already holds journals" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_the_command_refuses_a_market_data_folder_it_did_not_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--out`` holds market-data/ but no summary.json (not an earlier run's output): a
    recorder would resume what it finds, so exit 2 before starting anything, deleting nothing."""
    foreign = tmp_path / "out" / "market-data" / "theirs.parquet"
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"not ours")
    status = main(["--out", str(tmp_path / "out"), "--no-plots", "-q"])
    assert status == 2
    assert "raytrade sim did not write" in capsys.readouterr().err
    assert foreign.read_bytes() == b"not ours"
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["market-data"]


@pytest.fixture
def ray_tmp() -> Iterator[Path]:
    # short on purpose: Ray's socket paths under RAY_TMPDIR must stay below 108 bytes
    folder = Path(tempfile.mkdtemp(prefix="rt-sim-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)




def test_the_command_writes_plots_journals_parquet_and_numpy(
    ray_tmp: Path, tmp_path: Path
) -> None:
    """``raytrade sim --steps 150 --data-dir D --out O`` in a user's shell (its own Ray): exit
    0; four whole PNGs; D holds both shards' journals, whose digest is the summary's; O's
    Parquet files read with pyarrow hold every trade, top of book and L2 delta, with the price
    scale in their metadata; arrays.npz loads with numpy (no pickle) and agrees; the earlier
    run's market-data/ in O is replaced, not resumed; no Ray process outlives the command."""
    data_dir, out = tmp_path / "data", tmp_path / "out"
    (out / "market-data" / "kind=trades").mkdir(parents=True)  # as if an earlier run wrote O
    stale = out / "market-data" / "kind=trades" / "stale.parquet"
    stale.write_bytes(b"an earlier run's file")
    (out / "summary.json").write_text("{}")
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update(RAY_TMPDIR=str(ray_tmp), TMPDIR=str(ray_tmp), PYTHONUNBUFFERED="1")
    done = subprocess.run(
        [sys.executable, "-m", "cluster.edge.cli", "sim", "--seed", "7", "--steps", str(STEPS),
         "--shards", "2", "--data-dir", str(data_dir), "--out", str(out), "-q"],
        env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert f"raytrade sim: seed 7, {STEPS} steps" in done.stdout, done.stdout
    assert processes_naming(ray_tmp) == []

    for name in ("prices.png", "spread.png", "volume.png", "pnl.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", name
        assert data[-8:-4] == b"IEND" and len(data) > 10_000, name

    summary = json.loads((out / "summary.json").read_text())
    trades = summary["trades"]
    assert trades > 100 and summary["commands"] > trades
    for shard in (0, 1):
        segments = list((data_dir / f"shard-{shard}" / "journal").glob("*.seg"))
        assert segments and sum(path.stat().st_size for path in segments) > 10_000, shard
    assert journal_digest(data_dir, 2) == summary["journal_sha256"]

    market_data = out / "market-data"
    assert not stale.exists()
    symbols = [f"SYM{k}" for k in range(4)]
    recorded = {kind: pq.read_table(market_data / f"kind={kind}")
                for kind in ("trades", "top_of_book", "l2")}
    assert recorded["trades"].num_rows == trades
    assert sorted(set(recorded["trades"].column("symbol").to_pylist())) == symbols
    assert sum(recorded["trades"].column("quantity").to_pylist()) == sum(
        summary["volume"].values())
    assert recorded["top_of_book"].num_rows > 0 and recorded["l2"].num_rows > trades
    for path in market_data.glob("kind=*/symbol=*/date=*/*.parquet"):
        metadata = pq.read_metadata(path).metadata
        assert metadata[b"raytrade.price_scale"] == b"2", path

    with np.load(out / "arrays.npz", allow_pickle=False) as arrays:
        assert list(arrays["symbols"]) == symbols
        assert list(arrays["price_scales"]) == [2, 2, 2, 2]
        assert len(arrays["trades"]) == trades
        assert int(arrays["trades"]["quantity"].sum()) == sum(summary["volume"].values())
        assert len(arrays["levels"]) == recorded["l2"].num_rows
        assert len(arrays["orders"]) > 0 and len(arrays["top"]) > 0
        assert set(arrays["accounts"]) == set(summary["final_pnl"])
