"""Matching core throughput and per-operation latency, in one process.

Runs a seeded, realistic mixed flow (limit orders around a drifting mid, some crossing;
cancels and replaces of live orders; IOC and market orders) over several symbols through
`MatchingEngine` in batches, median of several runs (``ops_per_s``); then the same flow one
command per `MatchingEngine.apply` call, through the same loop (``ops_per_s_batch1``, median
of ``--batch1-runs``); then, in the same run, the same flow prefix through the engine and
through the reference book of tests/ for the ratio; then one command per call, each timed,
for per-operation latency percentiles. Prints the figures and writes
them as JSON under benchmarks/results/.

    python benchmarks/bench_matching.py                 # the README's figures
    python benchmarks/bench_matching.py --operations 200000 --runs 3   # quicker
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tqdm import tqdm

from actors.core.engine import MatchingEngine
from actors.tuning import tune_gc
from cluster.research.flow import FlowConfig, demo_instruments, generate_flow
from protocols.messages import Command, Instrument
from tests.reference_book import ReferenceEngine

RESULTS = Path(__file__).resolve().parent / "results"


def throughput(
    engine_type: type, instruments: list[Instrument], flow: list[Command], batch: int
) -> tuple[float, int]:
    """Return (seconds, events) to apply ``flow`` in batches through a fresh engine."""
    engine = engine_type(instruments)
    events = 0
    start = time.perf_counter()
    for index in range(0, len(flow), batch):
        events += len(engine.apply(flow[index : index + batch]))
    return time.perf_counter() - start, events


def latencies_ns(instruments: list[Instrument], flow: list[Command]) -> list[int]:
    """Return the time of each command applied alone (a batch of one), in nanoseconds."""
    engine = MatchingEngine(instruments)
    clock = time.perf_counter_ns
    apply = engine.apply
    samples = []
    for command in flow:
        started = clock()
        apply((command,))
        samples.append(clock() - started)
    return samples


def percentiles(samples: list[int]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1000

    return {
        "p50_us": at(0.50),
        "p90_us": at(0.90),
        "p99_us": at(0.99),
        "p99_9_us": at(0.999),
        "max_us": ordered[-1] / 1000,
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--operations", type=int, default=1_000_000)
    parser.add_argument("--symbols", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--batch1-runs", type=int, default=3,
                        help="runs of the whole flow one command per apply call")
    parser.add_argument("--reference-operations", type=int, default=50_000,
                        help="flow prefix run through both engines for the ratio")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--gc", choices=["tuned", "default"], default="tuned",
                        help="tuned: the shard actors' GC thresholds (actors.tuning.tune_gc)")
    parser.add_argument("--output", type=Path, default=RESULTS / "matching.json")
    args = parser.parse_args(argv)

    if args.gc == "tuned":
        tune_gc()
    instruments = demo_instruments(args.symbols)
    print(f"generating {args.operations:,} operations over {args.symbols} symbols "
          f"(seed {args.seed}) ...", flush=True)
    flow = generate_flow(instruments, FlowConfig(operations=args.operations, seed=args.seed))
    mix = Counter(type(command).__name__ for command in flow)

    runs = []
    events = 0
    for _ in tqdm(range(args.runs), desc="engine runs", unit="run"):
        gc.collect()
        seconds, events = throughput(MatchingEngine, instruments, flow, args.batch)
        runs.append(seconds)
    median = statistics.median(runs)

    batch1_runs = []
    for _ in tqdm(range(args.batch1_runs), desc="one per call", unit="run"):
        gc.collect()
        batch1_runs.append(throughput(MatchingEngine, instruments, flow, 1)[0])

    prefix = flow[: args.reference_operations]
    fast_prefix, _ = min(
        throughput(MatchingEngine, instruments, prefix, args.batch) for _ in range(3)
    )
    reference_prefix, _ = throughput(ReferenceEngine, instruments, prefix, args.batch)

    latency_flow = flow[: min(len(flow), 200_000)]
    samples = latencies_ns(instruments, latency_flow)

    result: dict[str, object] = {
        "benchmark": "matching",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "gc": args.gc,
        "operations": len(flow),
        "mix": dict(mix),
        "symbols": args.symbols,
        "batch": args.batch,
        "runs_s": [round(run, 4) for run in runs],
        "ops_per_s": round(len(flow) / median),
        "ops_per_s_batch1": round(len(flow) / statistics.median(batch1_runs)),
        "batch1_runs_s": [round(run, 4) for run in batch1_runs],
        "events_per_s": round(events / median),
        "events_per_op": round(events / len(flow), 3),
        "reference": {
            "operations": len(prefix),
            "engine_ops_per_s": round(len(prefix) / fast_prefix),
            "reference_ops_per_s": round(len(prefix) / reference_prefix),
            "speedup": round(reference_prefix / fast_prefix, 1),
        },
        "latency_batch_of_one": {"operations": len(samples), **percentiles(samples)},
        "target_ops_per_s": 1_000_000,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"\nengine: {result['ops_per_s']:,} ops/s (median of {args.runs}), "
          f"{result['ops_per_s_batch1']:,} ops/s one command per call, "
          f"{result['events_per_s']:,} events/s; reference is "
          f"{result['reference']['speedup']}x slower; "  # type: ignore[index]
          f"written to {args.output}")
    return result


if __name__ == "__main__":
    main()
