"""Matching core throughput and per-operation latency, in one process.

Runs a seeded, realistic mixed flow (limit orders around a drifting mid, some crossing;
cancels and replaces of live orders; IOC and market orders) over several symbols through
`MatchingEngine` in batches, median of several runs (``ops_per_s``); then the same flow one
command per `MatchingEngine.apply` call, through the same loop (``ops_per_s_batch1``, median
of ``--batch1-runs``); then, in the same run, the same flow prefix through the engine and
through the reference book of tests/ for the ratio; then one command per call, each timed,
for per-operation latency percentiles. Then the shard's production core: the same flow through
the engine with the pre-trade risk gate (`RiskLimits`, no limits set) and the 1M-entry client
order id window, as `actors.core.shard.build_shard` builds it for a book actor
(``shard_ops_per_s``, ``shard_ops_per_s_batch1``).

Both builds of the core side by side: this process runs the build the install made (compiled
by Cython when a compiler was present: ``build`` says which), and a child process runs the
same measurements with ``RAYTRADE_PURE=1`` (the same source, interpreted) for the ``pure``
figures and the ``compiled_speedup``. ``batch1_cost_ratio`` is the per-command cost of one
command per call over that of batches (the issue's target: at most 2). Prints the figures and
writes them as JSON under benchmarks/results/.

    python benchmarks/bench_matching.py                 # the README's figures
    python benchmarks/bench_matching.py --operations 200000 --runs 3   # quicker
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tqdm import tqdm

import actors._compiled as core_build
from actors.core.engine import MatchingEngine
from actors.core.shard import build_shard
from actors.tuning import tune_gc
from cluster.research.flow import FlowConfig, demo_instruments, generate_flow
from protocols.messages import Command, Instrument
from tests.reference_book import ReferenceEngine

RESULTS = Path(__file__).resolve().parent / "results"


def throughput(
    engine_type: Callable[[list[Instrument]], object],
    instruments: list[Instrument],
    flow: list[Command],
    batch: int,
) -> tuple[float, int]:
    """Return (seconds, events) to apply ``flow`` in batches through a fresh engine."""
    engine: MatchingEngine = engine_type(instruments)  # type: ignore[assignment]
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


def production_shard(instruments: list[Instrument]) -> MatchingEngine:
    """The engine a book actor runs: risk gate and the production client order id window."""
    return build_shard(0, instruments)[1]


def measure_core(
    instruments: list[Instrument], flow: list[Command], args: argparse.Namespace
) -> dict[str, object]:
    """The throughput figures that both builds report (engine and production shard)."""
    runs = []
    events = 0
    for _ in tqdm(range(args.runs), desc="engine runs", unit="run"):
        gc.collect()
        seconds, events = throughput(MatchingEngine, instruments, flow, args.batch)
        runs.append(seconds)
    batch1_runs = []
    for _ in tqdm(range(args.batch1_runs), desc="one per call", unit="run"):
        gc.collect()
        batch1_runs.append(throughput(MatchingEngine, instruments, flow, 1)[0])
    shard_runs = []
    for _ in tqdm(range(max(1, args.runs // 2)), desc="shard core", unit="run"):
        gc.collect()
        shard_runs.append(throughput(production_shard, instruments, flow, args.batch)[0])
    gc.collect()
    shard_batch1 = throughput(production_shard, instruments, flow, 1)[0]
    median = statistics.median(runs)
    return {
        "runs_s": [round(run, 4) for run in runs],
        "ops_per_s": round(len(flow) / median),
        "ops_per_s_batch1": round(len(flow) / statistics.median(batch1_runs)),
        "batch1_runs_s": [round(run, 4) for run in batch1_runs],
        "batch1_cost_ratio": round(statistics.median(batch1_runs) / median, 2),
        "events_per_s": round(events / median),
        "events_per_op": round(events / len(flow), 3),
        "shard_ops_per_s": round(len(flow) / statistics.median(shard_runs)),
        "shard_ops_per_s_batch1": round(len(flow) / shard_batch1),
    }


def measure_pure(argv: list[str]) -> dict[str, object]:
    """Run this benchmark's core figures in a child process on the pure-Python build."""
    command = [sys.executable, __file__, *argv, "--child"]
    env = {**os.environ, core_build.PURE_ENV: "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    figures: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


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
    parser.add_argument("--no-pure", action="store_true",
                        help="skip the pure-Python build's figures (the child process)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.gc == "tuned":
        tune_gc()
    instruments = demo_instruments(args.symbols)
    print(f"generating {args.operations:,} operations over {args.symbols} symbols "
          f"(seed {args.seed}) ...", flush=True)
    flow = generate_flow(instruments, FlowConfig(operations=args.operations, seed=args.seed))
    mix = Counter(type(command).__name__ for command in flow)
    build = core_build.summary()
    print(build, flush=True)
    figures = measure_core(instruments, flow, args)
    if args.child:  # the parent reads the last line
        print(json.dumps({"build": build, **figures}))
        return figures
    pure = None
    if not args.no_pure:
        print("the same figures on the pure-Python build (RAYTRADE_PURE=1) ...", flush=True)
        pure = measure_pure(sys.argv[1:] if argv is None else argv)

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
        "build": build,
        **figures,
        "pure": pure,
        "compiled_speedup": (
            round(figures["ops_per_s"] / pure["ops_per_s"], 2)  # type: ignore[operator]
            if pure else None
        ),
        "compiled_speedup_shard": (
            round(figures["shard_ops_per_s"] / pure["shard_ops_per_s"], 2)  # type: ignore[operator]
            if pure else None
        ),
        "reference": {
            "operations": len(prefix),
            "engine_ops_per_s": round(len(prefix) / fast_prefix),
            "reference_ops_per_s": round(len(prefix) / reference_prefix),
            "speedup": round(reference_prefix / fast_prefix, 1),
        },
        "latency_batch_of_one": {"operations": len(samples), **percentiles(samples)},
        "target_ops_per_s": 1_000_000,
        "target_batch1_cost_ratio": 2.0,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"\n{build}")
    rows = [("", "batches", "one per call", "shard (gate+window)")]
    for name, row in (("this build", figures), ("pure Python", pure)):
        if row:
            rows.append((name, f"{row['ops_per_s']:,}", f"{row['ops_per_s_batch1']:,}",
                         f"{row['shard_ops_per_s']:,}"))
    for row in rows:
        print(f"{row[0]:<12} {row[1]:>12} {row[2]:>14} {row[3]:>20}   ops/s")
    print(f"compiled speedup {result['compiled_speedup']}x (shard "
          f"{result['compiled_speedup_shard']}x); one per call costs "
          f"{figures['batch1_cost_ratio']}x a batched command; reference is "
          f"{result['reference']['speedup']}x slower; "  # type: ignore[index]
          f"written to {args.output}")
    return result


if __name__ == "__main__":
    main()
