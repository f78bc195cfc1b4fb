"""What Ray costs: the benchmark flow through the shard actors versus in-process.

For 1, 2 and 4 shards and batches of 1, 100, 1000 and 10000 commands, send the seeded flow of
bench_matching through the Python client (batches split by shard, sent concurrently, up to
``--in-flight`` batches outstanding; batches of 1 are sent one at a time, to measure a single
order's round trip through risk and book). Report commands/s and batch round-trip p50/p99.
In the same run, the same flow goes through the same `BookActor` class in this process (no
Ray, same journal policy) for the ratio.

    python benchmarks/bench_shards.py                 # the README's figures
    python benchmarks/bench_shards.py --quick         # a smaller, faster run
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tqdm import tqdm

from actors.book_actor import BookActor
from actors.tuning import tune_gc
from cluster.clients.ray_client import Client
from cluster.config import ClusterConfig, InstrumentRegistry, ShardMap, shard_instruments
from cluster.edge.wiring import start_cluster, start_ray
from cluster.research.flow import FlowConfig, demo_instruments, generate_flow
from cluster.storage.journal import FsyncPolicy
from cluster.storage.shard import ShardStorageFactory
from protocols.messages import Command, encode

RESULTS = Path(__file__).resolve().parent / "results"


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def in_process(
    registry: InstrumentRegistry, shard_map: ShardMap, flow: list[Command], batch: int,
    fsync: str,
) -> float:
    """Return commands/s through in-process book actors (one per shard), no Ray."""
    grouped = shard_instruments(registry, shard_map)
    with tempfile.TemporaryDirectory() as directory:
        books = {
            shard: BookActor(shard, instruments, log_factory=ShardStorageFactory(
                Path(directory) / f"shard-{shard}", FsyncPolicy(mode=fsync)))  # type: ignore[arg-type]
            for shard, instruments in grouped.items()
        }
        started = time.perf_counter()
        for index in range(0, len(flow), batch):
            parts: dict[int, list[Command]] = {}
            for command in flow[index : index + batch]:
                parts.setdefault(shard_map.shard_of(command.symbol), []).append(command)  # type: ignore[union-attr]
            for shard, part in parts.items():
                books[shard].apply_batch(encode(part))
        return len(flow) / (time.perf_counter() - started)


def through_ray(client: Client, flow: list[Command], batch: int, in_flight: int) -> dict[str, Any]:
    latencies: list[float] = []
    pending: deque[tuple[float, Any]] = deque()
    started = time.perf_counter()
    for index in range(0, len(flow), batch):
        if len(pending) >= in_flight:
            sent_at, submitted = pending.popleft()
            submitted.result()
            latencies.append((time.perf_counter() - sent_at) * 1000)
        pending.append((time.perf_counter(), client.submit_async(flow[index : index + batch])))
    while pending:
        sent_at, submitted = pending.popleft()
        submitted.result()
        latencies.append((time.perf_counter() - sent_at) * 1000)
    elapsed = time.perf_counter() - started
    return {
        "commands": len(flow),
        "commands_per_s": round(len(flow) / elapsed),
        "batch_p50_ms": round(statistics.median(latencies), 3),
        "batch_p99_ms": round(percentile(latencies, 0.99), 3),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 100, 1000, 10000])
    parser.add_argument("--operations", type=int, default=200_000,
                        help="commands per run of batches >= 1000 (fewer for small batches)")
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--fsync", choices=["batch", "interval", "none"], default="batch")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="shards 1 2, fewer commands")
    parser.add_argument("--output", type=Path, default=RESULTS / "shards.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.shards, args.operations = [1, 2], 50_000
    tune_gc()
    instruments = demo_instruments(8)
    registry = InstrumentRegistry(tuple(instruments))
    sizes = {1: 2_000, 100: max(20_000, args.operations // 4)}
    results: list[dict[str, Any]] = []
    start_ray(num_cpus=2)
    total = sum(sizes.get(batch, args.operations) for batch in args.batches)
    for shards in args.shards:
        shard_map = ShardMap(shards)
        flow = generate_flow(
            instruments, FlowConfig(operations=total, seed=args.seed), shard_map.shard_of
        )
        with tempfile.TemporaryDirectory() as data_dir:
            config = ClusterConfig(shards=shards, namespace=f"bench-{shards}",
                                   data_dir=data_dir, fsync=args.fsync)
            cluster = start_cluster(config, registry)
            client = Client(cluster)
            try:
                done = 0
                for batch in tqdm(args.batches, desc=f"{shards} shard(s)", unit="config"):
                    # every configuration continues the same flow on the same cluster
                    count = sizes.get(batch, args.operations)
                    part = flow[done : done + count]
                    done += count
                    flight = 1 if batch == 1 else args.in_flight
                    row = {"shards": shards, "batch": batch, "in_flight": flight,
                           **through_ray(client, part, batch, flight)}
                    if batch >= 100:
                        row["in_process_commands_per_s"] = round(
                            in_process(registry, shard_map, part, batch, args.fsync))
                        row["ray_vs_in_process"] = round(
                            row["commands_per_s"] / row["in_process_commands_per_s"], 3)
                    results.append(row)
                    print(json.dumps(row), flush=True)
            finally:
                cluster.stop()
    report = {
        "benchmark": "shards",
        "python": platform.python_version(),
        "fsync": args.fsync,
        "in_flight": args.in_flight,
        "results": results,
        "targets": {"ray_vs_in_process_at_1000x4": 0.8, "single_order_p50_ms": 2.0},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.output}")
    return report


if __name__ == "__main__":
    main()
