"""How long a snapshot stops a shard's command path: snapshots written before the batch
returns (foreground) against written on their own thread (background, what a cluster's book
actors do: `BookActor(snapshot_in_background=True)`).

The seeded benchmark flow in batches of 1000 is applied to one book actor in this process,
with a real journal (one fsync per batch, as a cluster's) and snapshots every 200k events,
until the shard holds ``--events`` events (the 1M-entry client order id window fills up on
the way, so later snapshots are the big ones). Each batch's wall time is measured; the
batches that took a snapshot (or ran while one was being written) show the pause. The two
modes alternate (``--rounds`` of each) in one run, so a machine that slows down biases
neither. Prints and writes ``benchmarks/results/snapshot_pause.json``: per mode, the slowest
batch, p99.9 and p50 of the batches, and the process's CPU time (the writer thread's work is
in it: a background snapshot costs the same CPU, later).

    python benchmarks/bench_snapshot_pause.py             # 1M events, 2 rounds (~1 min)
    python benchmarks/bench_snapshot_pause.py --quick     # 400k events, 1 round
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tqdm import tqdm

from actors.book_actor import BookActor
from actors.tuning import tune_gc
from cluster.research.flow import FlowConfig, demo_instruments, iter_flow
from cluster.storage.journal import FsyncPolicy
from cluster.storage.shard import ShardStorageFactory
from protocols.messages import Command, encode

RESULTS = Path(__file__).resolve().parent / "results"
INSTRUMENTS = demo_instruments(8)
BATCH = 1000


def run(directory: Path, events: int, snapshot_every: int, background: bool) -> dict[str, Any]:
    """Apply the flow until the shard holds ``events`` events; return the batch timings."""
    book = BookActor(0, INSTRUMENTS, snapshot_every_events=snapshot_every,
                     snapshot_in_background=background,
                     log_factory=ShardStorageFactory(directory, FsyncPolicy(mode="batch")))
    payloads: list[bytes] = []
    batch: list[Command] = []
    for command in iter_flow(INSTRUMENTS, FlowConfig(operations=events, seed=7)):
        batch.append(command)
        if len(batch) == BATCH:
            payloads.append(encode(batch))
            batch = []
    seconds: list[float] = []
    cpu_before = time.process_time()
    mode = "background" if background else "foreground"
    with tqdm(total=events, unit="event", desc=f"{mode:>10}") as bar:
        for payload in payloads:
            before = book.engine.next_seq
            started = time.perf_counter()
            book.apply_batch(payload)
            seconds.append(time.perf_counter() - started)
            bar.update(book.engine.next_seq - before)
            if book.engine.next_seq > events:
                break
    book.snapshot()  # waits for a background write still going: its CPU counts too
    cpu_s = time.process_time() - cpu_before
    book.log.close()  # type: ignore[union-attr]
    ordered = sorted(seconds)
    return {
        "events": book.engine.next_seq - 1,
        "batches": len(seconds),
        "snapshots": len(list((directory / "snapshots").glob("*"))),
        "slowest_batch_ms": round(ordered[-1] * 1000, 1),
        "slowest_5_batches_ms": [round(value * 1000, 1) for value in ordered[-5:]],
        "p999_batch_ms": round(ordered[int(0.999 * (len(ordered) - 1))] * 1000, 1),
        "p50_batch_ms": round(statistics.median(ordered) * 1000, 2),
        "cpu_s": round(cpu_s, 2),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--snapshot-every", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS / "snapshot_pause.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.rounds = 400_000, 1
    tune_gc()
    runs: dict[str, list[dict[str, Any]]] = {"foreground": [], "background": []}
    with tempfile.TemporaryDirectory(prefix="raytrade-snapshot-pause-") as scratch:
        for index in range(args.rounds):
            for background in (False, True) if index % 2 == 0 else (True, False):
                mode = "background" if background else "foreground"
                directory = Path(scratch) / f"{mode}-{index}"
                row = run(directory, args.events, args.snapshot_every, background)
                runs[mode].append(row)
                print(f"{mode}: {json.dumps(row)}", flush=True)
    report = {
        "benchmark": "snapshot_pause", "python": platform.python_version(),
        "events": args.events, "snapshot_every_events": args.snapshot_every,
        "batch": BATCH, "fsync": "batch",
        "slowest_batch_ms": {mode: [row["slowest_batch_ms"] for row in rows]
                             for mode, rows in runs.items()},
        "p999_batch_ms": {mode: [row["p999_batch_ms"] for row in rows]
                          for mode, rows in runs.items()},
        "cpu_s": {mode: [row["cpu_s"] for row in rows] for mode, rows in runs.items()},
        "runs": runs,
    }
    print(json.dumps({key: report[key] for key in ("slowest_batch_ms", "p999_batch_ms",
                                                    "cpu_s")}))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.output}")
    return report


if __name__ == "__main__":
    main()
