"""Run the agent simulation on a private local Ray, draw its plots and summarise it.

    python examples/simulation.py                          # 400 steps, plots in a new folder
    python examples/simulation.py --out plots --steps 2000 --seed 8

Market makers quote around a latent fair value (a seeded random walk with jumps), noise takers
hit their quotes and a momentum trader follows the moves: each kind is a Ray actor, trading
through the Python client with a 2-shard cluster in simulated time (`cluster.research.sim`).
The same seed gives the same journal, byte for byte. The script writes prices.png (mid and
fair value), spread.png, volume.png and pnl.png, then prints the trades, each symbol's final
fair value beside its last trade price (read from the journals replayed into numpy,
`cluster.research.arrays.load_run`) and each agent's PnL. Ray, the cluster and the journals'
temporary folder are gone when it ends (also on Ctrl-C or an error); the plots stay. Takes
10-30 s, mostly Ray's start-up. ``raytrade sim`` does the same from the command line and also
writes the run as Parquet and numpy files.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

from cluster.edge.local_run import LocalRun
from cluster.research.arrays import load_run
from cluster.research.sim import SimConfig, plot, run_sim
from protocols.prices import format_price


def money(amount: int, scale: int) -> str:
    """PnL is price units x quantity: in currency, divided by 10**scale."""
    return f"{Decimal(amount).scaleb(-scale):+,.{scale}f}"


def main() -> None:
    """Simulate, plot, replay into numpy, summarise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,
                        help="folder for the PNGs (default: a new temporary one, kept)")
    parser.add_argument("--steps", type=int, default=400, help="steps of 100 ms simulated time")
    parser.add_argument("--seed", type=int, default=7, help="seed of the run")
    args = parser.parse_args()
    if importlib.util.find_spec("matplotlib") is None:
        sys.exit("this example draws with matplotlib: pip install 'raytrade[bench]'")

    # 2 shards, 4 symbols (SYM0..SYM3), 2 market makers, 4 noise takers, 1 momentum trader
    config = SimConfig(seed=args.seed, steps=args.steps, shards=2)
    registry = config.registry()  # the instruments, pinned to the shards in turn
    with tempfile.TemporaryDirectory(prefix="raytrade-sim-") as data_dir:
        cluster_config = config.cluster_config(data_dir)
        # LocalRun owns what it starts: close() stops the cluster and Ray, whatever happened
        run = LocalRun(verbose=False)
        try:
            run.start_ray(num_cpus=2, namespace=cluster_config.namespace)
            cluster = run.start_cluster(cluster_config, registry)
            result = run_sim(cluster, config, progress=False)
        finally:
            run.close()
        # the journals outlive the cluster until this block ends: every shard into numpy
        replay = load_run(data_dir, instruments=registry, progress=False)

    out = args.out if args.out is not None else Path(tempfile.mkdtemp(prefix="raytrade-plots-"))
    written = plot(result, out)

    agents = len(result.pnl)
    print(f"seed {config.seed}: {config.steps:,} steps ({config.duration_s:g} s simulated), "
          f"{config.symbols} symbols on {config.shards} shards, {agents} agents")
    print(f"{result.commands:,} commands, {result.trades:,} trades "
          f"({len(replay.trades):,} in the journal), in {result.elapsed_s:.1f} s")

    print(f"\n{'symbol':8} {'fair value':>10} {'last price':>10} {'trades':>7}")
    trades = replay.trades
    for instrument in registry.instruments:
        series = result.symbols[instrument.symbol]
        # a symbol lives on one shard, whose rows are in sequence: its last row is its last trade
        mine = trades[trades["symbol"] == replay.symbol_index(instrument.symbol)]
        last = format_price(int(mine["price"][-1]), instrument.price_scale) if len(mine) else "-"
        print(f"{instrument.symbol:8} "
              f"{format_price(series.fair_value[-1], instrument.price_scale):>10} "
              f"{last:>10} {len(mine):7d}")

    scale = max(instrument.price_scale for instrument in registry.instruments)
    print("\nPnL per agent (marked to mid, gross of fees):")
    for agent, pnl in result.pnl.items():
        print(f"  {agent:10} {money(pnl[-1], scale):>10}")
    print(f"\nplots: {', '.join(str(path) for path in written)}")


if __name__ == "__main__":
    main()
