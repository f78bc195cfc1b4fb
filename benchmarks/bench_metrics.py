"""What metrics cost: the CPU benchmark with metrics on and off, alternated in one run.

Issue 12 item 4 asks that metrics be cheap enough to leave on: at most 3% of throughput. This
runs `bench_cpu.py` (a fresh local Ray and cluster each time; batched gRPC, single gRPC, the
Python client, the in-process shard) with ``--metrics on`` and ``--metrics off``, alternating
(on, off, on, off, ...), and compares medians: batched gRPC orders per second and CPU per
order for each path. Ratios hold on a noisy machine where absolute figures do not.

    python benchmarks/bench_metrics.py            # 3 rounds of bench_cpu --quick each way
    python benchmarks/bench_metrics.py --rounds 2

Writes ``benchmarks/results/metrics.json``: keys ``rounds``, ``on`` and ``off`` (the medians),
``throughput_cost_pct`` (batched gRPC orders/s lost with metrics on) and
``cpu_cost_pct`` (per path: extra CPU per order with metrics on).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PATHS = {
    "batched_grpc": "batched_grpc_us_per_order",
    "single_grpc": "single_grpc_us_per_order",
    "client_batched": "client_batched_us_per_order",
    "in_process": "in_process_us_per_order",
}


def _run(metrics: str, folder: Path) -> dict[str, Any]:
    out = folder / f"cpu-{metrics}"
    subprocess.run([sys.executable, str(HERE / "bench_cpu.py"), "--quick", "--metrics", metrics,
                    "--output", str(out)], check=True, stdout=subprocess.DEVNULL)
    report: dict[str, Any] = json.loads((out / "cpu.json").read_text())
    return report


def _figures(report: dict[str, Any]) -> dict[str, float]:
    summary = report.get("summary", report)
    figures = {key: float(summary[name]) for key, name in PATHS.items() if name in summary}
    figures["batched_orders_per_s"] = float(report["batched_grpc"]["orders_per_s"])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs each way")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    runs: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory(prefix="raytrade-bench-metrics-") as folder:
        for round_ in range(args.rounds):
            for metrics in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
                print(f"round {round_ + 1}/{args.rounds}: metrics {metrics} ...", flush=True)
                runs[metrics].append(_figures(_run(metrics, Path(folder))))
    medians = {mode: {key: statistics.median(run[key] for run in rows) for key in rows[0]}
               for mode, rows in runs.items()}
    on, off = medians["on"], medians["off"]
    report = {
        "rounds": args.rounds, "on": on, "off": off, "runs": runs,
        "throughput_cost_pct": round(100 * (1 - on["batched_orders_per_s"]
                                            / off["batched_orders_per_s"]), 1),
        "cpu_cost_pct": {key: round(100 * (on[key] / off[key] - 1), 1)
                         for key in PATHS if key in on and key in off},
    }
    print(f"{'':28}{'metrics on':>14}{'metrics off':>14}{'cost':>9}")
    print(f"{'batched gRPC orders/s':28}{on['batched_orders_per_s']:>14,.0f}"
          f"{off['batched_orders_per_s']:>14,.0f}{report['throughput_cost_pct']:>8}%")
    for key in PATHS:
        if key in on and key in off:
            print(f"{key + ' us/order':28}{on[key]:>14,.1f}{off[key]:>14,.1f}"
                  f"{report['cpu_cost_pct'][key]:>8}%")
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / "metrics.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
