"""Replay a run's journals into numpy arrays, and record them as Parquet for DuckDB queries.

    python examples/replay_to_numpy.py                  # records a short run first (no Ray)
    python examples/replay_to_numpy.py --data-dir DIR   # a run of yours (raytrade up --data-dir)

Without --data-dir it writes a short seeded run (5,000 commands, 2 shards, the packaged
instruments) into a temporary folder with the book actor every cluster shard runs, here in
this process: the journals are the same files a cluster writes. Then it loads every shard's
events as numpy structured arrays (`cluster.research.arrays.load_run`), computes each
symbol's VWAP, volume and buy/sell imbalance with numpy, records the run as hive-partitioned
Parquet (`cluster.research.recorder.record_journal`) and asks DuckDB for the same VWAPs and for
1-second OHLCV bars (`cluster.research.queries.MarketData`).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from actors.book_actor import BookActor
from cluster.config import InstrumentRegistry, ShardMap
from cluster.research.arrays import load_run
from cluster.research.flow import FlowConfig, generate_flow
from cluster.research.queries import MarketData, format_table
from cluster.research.recorder import record_journal
from cluster.storage import layout
from cluster.storage.shard import ShardStorageFactory, shard_directory
from protocols.messages import CancelOrder, Command, NewOrder, ReplaceOrder, Side, encode


def record_short_run(data_dir: Path, registry: InstrumentRegistry, shards: int = 2) -> None:
    """Journal a seeded flow into ``data_dir`` as a ``shards``-shard cluster would."""
    layout.write_manifest(data_dir, shards)  # the data dir records its shard count
    shard_map = ShardMap(shards, dict(registry.pins))
    books = {shard: BookActor(shard, [i for i in registry.instruments
                                      if shard_map.shard_of(i.symbol) == shard],
                              log_factory=ShardStorageFactory(shard_directory(data_dir, shard)))
             for shard in range(shards)}
    # one command per millisecond of ingress time, so the run spans 5 s of bars
    flow = generate_flow(registry.instruments,
                         FlowConfig(operations=5_000, seed=11, ts_step_ns=1_000_000),
                         shard_map.shard_of)
    for start in range(0, len(flow), 100):  # batches of 100, as a gateway would send them
        parts: dict[int, list[Command]] = {}
        for command in flow[start : start + 100]:
            assert isinstance(command, NewOrder | CancelOrder | ReplaceOrder)  # all a flow holds
            parts.setdefault(shard_map.shard_of(command.symbol), []).append(command)
        for shard, commands in parts.items():
            books[shard].apply_batch(encode(commands))
    # each batch is on disk (fsynced) before apply_batch returns: the journals can be read now,
    # while their writers hold them open, as a cluster's readers do


def main() -> None:
    """Record (unless given a run), replay into numpy, record Parquet, query DuckDB."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="a run's data dir (default: a new one)")
    parser.add_argument("--instruments", type=Path, help="the run's instrument file")
    args = parser.parse_args()
    registry = InstrumentRegistry.load(args.instruments)

    with tempfile.TemporaryDirectory(prefix="raytrade-numpy-") as scratch:
        data_dir = args.data_dir
        if data_dir is None:
            data_dir = Path(scratch) / "run"
            record_short_run(data_dir, registry)

        # 1. every shard's events as numpy structured arrays (one dtype per event kind)
        run = load_run(data_dir, instruments=registry, progress=False)
        print(f"{run.events:,} events from shards {list(run.shards)} in {run.wall_s:.2f} s: "
              f"{len(run.orders):,} orders, {len(run.trades):,} trades, "
              f"{len(run.cancels):,} cancels, {len(run.rejects):,} rejects")

        # 2. VWAP, volume and aggressor imbalance per symbol, in numpy
        trades = run.trades
        symbols = trades["symbol"]  # int32 indexes into run.symbols
        quantity = trades["quantity"].astype(np.float64)
        price = run.decimal(trades)  # in currency units (divided by each price scale)
        count = len(run.symbols)
        volume = np.bincount(symbols, weights=quantity, minlength=count)
        vwap = np.bincount(symbols, weights=price * quantity, minlength=count) / np.maximum(
            volume, 1)
        signed = np.where(trades["aggressor_side"] == Side.BUY, quantity, -quantity)
        imbalance = np.bincount(symbols, weights=signed, minlength=count)

        # 3. the same run as Parquet files, and DuckDB over them
        out_dir = Path(scratch) / "parquet"
        record_journal(data_dir, out_dir, registry, progress=False)
        market = MarketData(out_dir)
        scales = market.price_scales()
        duck = {row["symbol"]: row["vwap"] / 10 ** scales[row["symbol"]]
                for row in market.vwap().to_pylist()}

        print(f"\n{'symbol':8} {'trades':>7} {'volume':>8} {'vwap numpy':>12} "
              f"{'vwap duckdb':>12} {'buy-sell':>9}")
        for index, symbol in enumerate(run.symbols):
            if volume[index]:
                print(f"{symbol:8} {np.count_nonzero(symbols == index):7d} "
                      f"{volume[index]:8.0f} {vwap[index]:12.4f} {duck[symbol]:12.4f} "
                      f"{imbalance[index]:+9.0f}")
        agree = all(np.isclose(vwap[run.symbol_index(symbol)], value)
                    for symbol, value in duck.items())
        print(f"numpy and DuckDB VWAPs agree: {agree}")

        bars = market.bars("1s")
        print(f"\n1-second bars ({bars.num_rows} rows, prices as decimals):")
        print(format_table(bars, scales, limit=10))


if __name__ == "__main__":
    main()
