"""The agent simulation on a real local Ray: reproducible to the journal's bytes, with any shards.

Five short runs (300 steps of 100 ms each), each on a fresh cluster and data dir: seed 7 twice
on 2 shards, seed 8 once on 2 shards, seed 7 twice on 4 shards.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from cluster.config import ClusterConfig, Topology
from cluster.edge.wiring import Cluster, start_cluster
from cluster.research.sim import SimConfig, SimResult, main, plot, run_sim
from protocols.errors import ConfigError

pytestmark = [pytest.mark.ray, pytest.mark.slow]

STEPS = 300
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
