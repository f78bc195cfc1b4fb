"""Market-data queries: DuckDB over the recorder's Parquet files, and their size.

1. Build a recording of N trades (8 symbols, 20 accounts, a random walk of prices, one trade
   every 2 ms: 10M trades span about 5.6 hours) by writing trade rows straight through the
   recorder's `PartitionWriter` in flushes of ``--rows-per-flush`` rows (the recorder's
   default ``max_rows``), so the files have the layout, schema and metadata a live recording
   has, without paying for matching.
2. Time the queries of `cluster.research.queries.MarketData` over the whole recording: 1-minute
   bars of every symbol, VWAP per symbol, fills per account and symbol (and one account's
   fills). Each is run three times; the median is reported (the files are in the page cache
   after the build, so this is the warm case).
3. Compare the files' size with the raw rows: each trade as a packed struct of 14 int64
   (seq, ts_ns, symbol, price, quantity, side, and per side order id, account, client order id
   and leaves, strings counted as 8-byte ids), 112 bytes a trade.

    python benchmarks/bench_query.py            # 10M trades
    python benchmarks/bench_query.py --quick    # 1M trades
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from cluster.research.flow import demo_instruments
from cluster.research.queries import MarketData
from cluster.research.recorder import INPUT_SCHEMAS, TRADES, PartitionWriter, recorded_files

RESULTS = Path(__file__).resolve().parent / "results"
RAW_COLUMNS = 14
START_NS = 1_767_225_600_000_000_000 + 14 * 3_600 * 10**9 + 30 * 60 * 10**9  # 14:30 UTC
STEP_NS = 2_000_000


def build(directory: Path, trades: int, rows_per_flush: int, symbols: int, accounts: int,
          seed: int) -> dict[str, Any]:
    """Write ``trades`` trade rows through the recorder's writer; return what it made."""
    instruments = demo_instruments(symbols)
    writer = PartitionWriter(directory, 0, instruments)
    rng = np.random.default_rng(seed)
    names = pa.array([instrument.symbol for instrument in instruments])
    account_names = pa.array([f"ACC{index:03d}" for index in range(accounts)])
    prices = np.full(symbols, 10_000, dtype=np.int64)
    started = time.perf_counter()
    first = 1
    with tqdm(total=trades, unit="trade", desc=f"writing {trades:,} trades") as bar:
        while first <= trades:
            count = min(rows_per_flush, trades - first + 1)
            seq = np.arange(first, first + count, dtype=np.int64)
            symbol = rng.integers(0, symbols, count)
            steps = rng.integers(-1, 2, count)
            quantity = rng.integers(1, 101, count, dtype=np.int64)
            side = rng.integers(1, 3, count).astype(np.int8)
            maker_account = rng.integers(0, accounts, count)
            taker_account = rng.integers(0, accounts, count)
            for index in range(symbols):
                mask = symbol == index
                rows = int(mask.sum())
                if not rows:
                    continue
                walk = prices[index] + np.cumsum(steps[mask])
                walk = np.maximum(walk, 1)
                prices[index] = walk[-1]
                ids = seq[mask]
                table = pa.Table.from_arrays([
                    pa.array(ids),
                    pa.array(START_NS + ids * STEP_NS),
                    pa.array(walk),
                    pa.array(quantity[mask]),
                    pa.array(side[mask]),
                    pa.array(ids * 2),
                    account_names.take(pa.array(maker_account[mask])),
                    pc.binary_join_element_wise("M", pc.cast(pa.array(ids), pa.string()), ""),
                    pa.array(rng.integers(0, 100, rows, dtype=np.int64)),
                    pa.array(ids * 2 + 1),
                    account_names.take(pa.array(taker_account[mask])),
                    pc.binary_join_element_wise("T", pc.cast(pa.array(ids), pa.string()), ""),
                    pa.array(np.zeros(rows, dtype=np.int64)),
                ], schema=INPUT_SCHEMAS[TRADES])
                writer.write(TRADES, str(names[index]), table, first, first + count - 1)
            writer.sync()
            first += count
            bar.update(count)
    elapsed = time.perf_counter() - started
    files = recorded_files(directory, TRADES)
    return {
        "files": len(files),
        "parquet_bytes": sum(path.stat().st_size for path in files),
        "write_s": round(elapsed, 3),
        "write_trades_per_s": round(trades / elapsed),
    }


def timed(query: Callable[[], pa.Table], runs: int = 3) -> tuple[float, list[float], int]:
    """Return the median of ``runs`` timings, all of them, and the result's row count."""
    seconds = []
    rows = 0
    for _ in range(runs):
        started = time.perf_counter()
        rows = query().num_rows
        seconds.append(time.perf_counter() - started)
    return round(statistics.median(seconds), 4), [round(value, 4) for value in seconds], rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1M trades")
    parser.add_argument("--trades", type=int, default=10_000_000)
    parser.add_argument("--rows-per-flush", type=int, default=200_000)
    parser.add_argument("--symbols", type=int, default=8)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0,
                        help="DuckDB threads (0: DuckDB's default, every core)")
    parser.add_argument("--keep", type=Path, help="build the recording here and keep it")
    parser.add_argument("--output", type=Path, default=RESULTS / "query.json")
    args = parser.parse_args()
    trades = 1_000_000 if args.quick else args.trades
    directory = args.keep or Path(tempfile.mkdtemp(prefix="raytrade-bench-query-"))
    try:
        built = build(directory, trades, args.rows_per_flush, args.symbols, args.accounts,
                      args.seed)
        connection = duckdb.connect()
        if args.threads:
            connection.execute(f"SET threads = {int(args.threads)}")
        threads = connection.sql("SELECT current_setting('threads')").fetchall()[0]
        data = MarketData(directory, connection)
        bars_s, bars_runs, bars_rows = timed(lambda: data.bars("1m"))
        vwap_s, vwap_runs, vwap_rows = timed(data.vwap)
        accounts_s, accounts_runs, accounts_rows = timed(data.fills_by_account)
        one_s, one_runs, one_rows = timed(lambda: data.fills("ACC003"))
    finally:
        if args.keep is None:
            shutil.rmtree(directory, ignore_errors=True)
    raw_bytes = trades * RAW_COLUMNS * 8
    report = {
        "benchmark": "query",
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyarrow": pa.__version__,
        "cpus": os.cpu_count(),
        "duckdb_threads": threads[0] if threads else None,
        "quick": args.quick,
        "trades": trades,
        "symbols": args.symbols,
        "accounts": args.accounts,
        "rows_per_flush": args.rows_per_flush,
        "files": built["files"],
        "parquet_bytes": built["parquet_bytes"],
        "raw_bytes": raw_bytes,
        "raw_row": f"{RAW_COLUMNS} x int64 per trade",
        "parquet_to_raw": round(built["parquet_bytes"] / raw_bytes, 4),
        "parquet_bytes_per_trade": round(built["parquet_bytes"] / trades, 2),
        "write_s": built["write_s"],
        "write_trades_per_s": built["write_trades_per_s"],
        "bars_1m_s": bars_s,
        "bars_1m_rows": bars_rows,
        "vwap_s": vwap_s,
        "vwap_rows": vwap_rows,
        "fills_by_account_s": accounts_s,
        "fills_by_account_rows": accounts_rows,
        "fills_one_account_s": one_s,
        "fills_one_account_rows": one_rows,
        "runs_s": {"bars_1m": bars_runs, "vwap": vwap_runs, "fills_by_account": accounts_runs,
                   "fills_one_account": one_runs},
    }
    print(json.dumps(report, indent=2))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
