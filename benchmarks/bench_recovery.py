"""Recovery: replay speed, time from kill to serving again, and journal append cost.

1. For shards holding about 100k and 1M journaled events (the seeded benchmark flow, applied
   in batches of 1000), replay the journal through a fresh engine (the recovery path) and
   report events/s.
2. Start a one-shard cluster on that data, SIGKILL its book actor, and time until a command
   is answered again (Ray's restart + recovery), with the periodic snapshot in place and with
   every snapshot removed.
3. Append batches of 1 and 1000 commands to a journal under each fsync policy: commands/s
   and per-append latency.

    python benchmarks/bench_recovery.py            # the README's figures
    python benchmarks/bench_recovery.py --quick    # 100k events only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec
from tqdm import tqdm

from actors.book_actor import BookActor
from actors.tuning import tune_gc
from cluster.clients.ray_client import Client, ShardUnavailableError
from cluster.config import ClusterConfig, InstrumentRegistry
from cluster.edge.wiring import start_cluster, start_ray
from cluster.research.flow import FlowConfig, demo_instruments, iter_flow
from cluster.storage.journal import FsyncPolicy, Journal
from cluster.storage.shard import ShardStorageFactory, replay_events, shard_directory
from protocols.messages import Command, NewOrder, Side, encode

RESULTS = Path(__file__).resolve().parent / "results"
INSTRUMENTS = demo_instruments(8)


def build_shard(directory: Path, events: int, snapshot_every: int) -> dict[str, Any]:
    """Journal the benchmark flow into ``directory`` until it holds ``events`` events."""
    book = BookActor(0, INSTRUMENTS, snapshot_every_events=snapshot_every,
                     log_factory=ShardStorageFactory(directory, FsyncPolicy(mode="none")))
    flow = iter_flow(INSTRUMENTS, FlowConfig(operations=events, seed=7))
    batch: list[Command] = []
    commands = 0
    with tqdm(total=events, unit="event", desc=f"journaling {events:,} events") as bar:
        for command in flow:
            batch.append(command)
            if len(batch) == 1000:
                before = book.engine.next_seq
                book.apply_batch(encode(batch))
                bar.update(book.engine.next_seq - before)
                commands += len(batch)
                batch = []
                if book.engine.next_seq > events:
                    break
    book.log.close()  # type: ignore[union-attr]
    return {"events": book.engine.next_seq - 1, "commands": commands,
            "journal_bytes": sum(p.stat().st_size for p in (directory / "journal").glob("*.seg"))}


def replay_speed(directory: Path) -> dict[str, Any]:
    started = time.perf_counter()
    events = sum(len(batch) for batch in replay_events(directory, 0, INSTRUMENTS))
    elapsed = time.perf_counter() - started
    return {"events": events, "seconds": round(elapsed, 3), "events_per_s": round(events / elapsed)}


def recovery_in_process(directory: Path) -> float:
    """Seconds for a new book actor to recover from ``directory`` (no Ray)."""
    started = time.perf_counter()
    book = BookActor(0, INSTRUMENTS,
                     log_factory=ShardStorageFactory(directory, FsyncPolicy(mode="none")))
    elapsed = time.perf_counter() - started
    book.log.close()  # type: ignore[union-attr]
    return elapsed


def kill_to_serving(data_dir: Path, namespace: str) -> float:
    """Seconds from SIGKILL of the book actor to the next answered command (on Ray)."""
    config = ClusterConfig(shards=1, namespace=namespace, data_dir=str(data_dir))
    cluster = start_cluster(config, InstrumentRegistry(tuple(INSTRUMENTS)))
    try:
        client = Client(cluster)
        pid = client.book(0).pid().result()
        probe = NewOrder(account="probe", client_order_id="", symbol="SYM0", side=Side.BUY,
                         price=1, quantity=1)
        os.kill(pid, signal.SIGKILL)
        killed = time.perf_counter()
        number = 0
        while True:
            number += 1
            try:
                client.submit([msgspec.structs.replace(probe, client_order_id=f"probe-{number}")])
                return time.perf_counter() - killed
            except ShardUnavailableError:
                time.sleep(0.01)
    finally:
        cluster.stop()


def append_costs(root: Path) -> list[dict[str, Any]]:
    orders = [
        NewOrder(account=f"ACC{i % 20}", client_order_id=f"C{i}", symbol=f"SYM{i % 8}",
                 side=Side.BUY if i % 2 else Side.SELL, price=10_000 + i % 50,
                 quantity=1 + i % 100, ts_ns=1 + i)
        for i in range(1000)
    ]
    rows = []
    for mode in ("batch", "interval", "none"):
        for size, appends in ((1, 2_000), (1000, 300)):
            directory = root / f"append-{mode}-{size}"
            latencies = []
            with Journal.open_writer(directory, fsync=FsyncPolicy(mode=mode)) as journal:
                started = time.perf_counter()
                for _ in range(appends):
                    first = journal.next_seq
                    began = time.perf_counter()
                    journal.append(first, first + size - 1, orders[:size])
                    latencies.append((time.perf_counter() - began) * 1e6)
                elapsed = time.perf_counter() - started
            latencies.sort()
            rows.append({
                "fsync": mode,
                "batch": size,
                "commands_per_s": round(appends * size / elapsed),
                "append_p50_us": round(statistics.median(latencies), 1),
                "append_p99_us": round(latencies[int(0.99 * len(latencies))], 1),
            })
            print(json.dumps(rows[-1]), flush=True)
            shutil.rmtree(directory)
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--snapshot-every", type=int, default=200_000,
                        help="the book actor's periodic snapshot interval, in events")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS / "recovery.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = [100_000]
    tune_gc()
    report: dict[str, Any] = {"benchmark": "recovery", "python": platform.python_version(),
                              "snapshot_every_events": args.snapshot_every, "shards": []}
    start_ray(num_cpus=2)
    with tempfile.TemporaryDirectory(dir=os.environ.get("RAYTRADE_BENCH_TMP")) as scratch:
        root = Path(scratch)
        for size in args.sizes:
            data_dir = root / f"data-{size}"
            directory = shard_directory(data_dir, 0)
            row: dict[str, Any] = build_shard(directory, size, args.snapshot_every)
            row["replay"] = replay_speed(directory)
            with_snapshot = round(recovery_in_process(directory), 3)
            row["recover_in_process_s"] = {"with_snapshot": with_snapshot}
            row["kill_to_serving_s"] = {
                "with_snapshot": round(kill_to_serving(data_dir, f"recovery-{size}-a"), 3)
            }
            for snapshot in (directory / "snapshots").glob("*"):
                snapshot.unlink()
            row["recover_in_process_s"]["without_snapshot"] = round(
                recovery_in_process(directory), 3)
            row["kill_to_serving_s"]["without_snapshot"] = round(
                kill_to_serving(data_dir, f"recovery-{size}-b"), 3)
            report["shards"].append(row)
            print(json.dumps(row), flush=True)
        report["journal_append"] = append_costs(root)
    report["targets"] = {"replay_events_per_s": 500_000, "kill_to_serving_1m_events_s": 2.0}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.output}")
    return report


if __name__ == "__main__":
    main()
