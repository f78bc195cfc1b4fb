"""Researchers' replay: a journal streamed into numpy arrays (cluster.research.arrays).

1. A child process journals the seeded benchmark flow (8 symbols, batches of 1000 commands)
   into a one-shard data dir in a temporary folder until it holds N events, so this process's
   peak RSS is the replay's alone.
2. `iter_chunks` replays it into arrays, chunk by chunk (the chunks are dropped, as a fold
   over a journal larger than memory would): events/s by wall clock and by CPU, peak RSS.
3. For comparison, the bare replay (`replay_events`, the events as objects) on the same
   journal, and three ways of building the arrays from the same 100k events held in memory:
   the module's (events gathered per type, converted a field at a time with ``np.fromiter``;
   its time includes the top-of-book fold, which the others skip), a tuple per event with
   ``np.array(rows, dtype)``, and tuples assigned row by row into preallocated buffers.

    python benchmarks/bench_replay_numpy.py            # ~1M events
    python benchmarks/bench_replay_numpy.py --quick    # ~100k events

The process does not tune the garbage collector (`actors.tuning.tune_gc`): a researcher's
notebook does not either.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from tqdm import tqdm

from actors.book_actor import BookActor
from cluster.research import arrays
from cluster.research.arrays import iter_chunks
from cluster.research.flow import FlowConfig, demo_instruments, iter_flow
from cluster.storage import layout
from cluster.storage.journal import FsyncPolicy
from cluster.storage.shard import ShardStorageFactory, replay_events, shard_directory
from protocols.messages import Command, Event, encode

RESULTS = Path(__file__).resolve().parent / "results"
INSTRUMENTS = demo_instruments(8)
COMPARED_EVENTS = 100_000


def write_journal(data_dir: Path, events: int) -> dict[str, int]:
    """Journal the benchmark flow into a one-shard data dir until it holds ``events`` events."""
    layout.write_manifest(data_dir, 1)
    directory = shard_directory(data_dir, 0)
    book = BookActor(0, INSTRUMENTS, snapshot_every_events=10**12,
                     log_factory=ShardStorageFactory(directory, FsyncPolicy(mode="none")))
    batch: list[Command] = []
    commands = 0
    with tqdm(total=events, unit="event", unit_scale=True,
              desc=f"journaling {events:,} events") as bar:
        for command in iter_flow(INSTRUMENTS, FlowConfig(operations=events, seed=7)):
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
    journal_bytes = sum(path.stat().st_size for path in (directory / "journal").glob("*.seg"))
    return {"events": book.engine.next_seq - 1, "commands": commands,
            "journal_bytes": journal_bytes}


def time_chunks(data_dir: Path, chunk_events: int, progress: bool) -> dict[str, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    events = chunks = rows = 0
    for chunk in iter_chunks(data_dir, instruments=INSTRUMENTS, chunk_events=chunk_events,
                             progress=progress):
        events += chunk.events
        chunks += 1
        rows += sum(len(getattr(chunk, name)) for name in arrays.ARRAY_NAMES)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"events": events, "chunks": chunks, "rows": rows, "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3), "events_per_s": round(events / wall),
            "events_per_cpu_s": round(events / cpu)}


def time_bare_replay(data_dir: Path) -> dict[str, Any]:
    wall = time.perf_counter()
    events = sum(len(batch) for batch in replay_events(shard_directory(data_dir, 0), 0,
                                                       INSTRUMENTS))
    wall = time.perf_counter() - wall
    return {"events": events, "wall_s": round(wall, 3), "events_per_s": round(events / wall)}


# ------------------------------------------------------------------ ways of building arrays


def build_fieldwise(batches: list[list[Event]]) -> dict[str, np.ndarray]:
    """The module's way (cluster.research.arrays._Builder)."""
    builder = arrays._Builder(0, arrays._Table(i.symbol for i in INSTRUMENTS), arrays._Table())
    for events in batches:
        builder.add(events, 0, len(events))
    chunk = builder.flush()
    return {name: getattr(chunk, name) for name in arrays.ARRAY_NAMES if name != "top"}


class _Interning(dict[str, int]):
    def __missing__(self, name: str) -> int:
        self[name] = len(self)
        return self[name]


def _row_functions() -> dict[type, tuple[str, np.dtype[Any], Callable[[Any], tuple[Any, ...]]]]:
    """Return, per event type, a function that builds its row as a tuple, written out as one
    would by hand: ``lambda e: (e.seq, e.ts_ns, 0, symbols[e.symbol], ...)``."""
    names = {"symbols": _Interning(), "accounts": _Interning()}
    for instrument in INSTRUMENTS:
        names["symbols"].setdefault(instrument.symbol, len(names["symbols"]))

    def value(column: arrays._Column) -> str:
        if column.source == "shard":
            return "0"
        if column.table:
            return f"{column.table}[e.{column.source}]"
        return f"e.{column.source}"

    return {
        kind: (name, arrays._DTYPES[name],
               eval(f"lambda e: ({', '.join(map(value, columns))},)", dict(names)))
        for name, kind, columns in arrays._KINDS
    }


def build_tuples(batches: list[list[Event]]) -> dict[str, np.ndarray]:
    """A tuple per event, kept in a list per type; ``np.array(rows, dtype)`` at the end."""
    functions = _row_functions()
    rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name, _, _ in functions.values()}
    for events in batches:
        for event in events:
            if type(event) in functions:
                name, _, row = functions[type(event)]
                rows[name].append(row(event))
    return {name: np.array(rows[name], dtype=dtype) for name, dtype, _ in functions.values()}


def build_preallocated(batches: list[list[Event]]) -> dict[str, np.ndarray]:
    """A tuple per event, assigned row by row into preallocated structured buffers."""
    functions = _row_functions()
    total = sum(len(events) for events in batches)
    buffers = {name: np.empty(total, dtype=dtype) for name, dtype, _ in functions.values()}
    used = dict.fromkeys(buffers, 0)
    for events in batches:
        for event in events:
            if type(event) in functions:
                name, _, row = functions[type(event)]
                buffers[name][used[name]] = row(event)
                used[name] += 1
    return {name: buffers[name][: used[name]].copy() for name in buffers}


def compare_builders(data_dir: Path, events: int) -> dict[str, Any]:
    batches: list[list[Event]] = []
    held = 0
    for batch in replay_events(shard_directory(data_dir, 0), 0, INSTRUMENTS):
        batches.append(batch)
        held += len(batch)
        if held >= events:
            break
    results: dict[str, Any] = {"events": held}
    outputs = {}
    for build in (build_fieldwise, build_tuples, build_preallocated):
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            outputs[build.__name__] = build(batches)
            best = min(best, time.perf_counter() - started)
        results[build.__name__.removeprefix("build_") + "_ns_per_event"] = round(best / held * 1e9)
    reference = outputs["build_fieldwise"]
    for name, output in outputs.items():
        assert all(np.array_equal(reference[key], output[key]) for key in reference), name
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="~100k events")
    parser.add_argument("--chunk-events", type=int, default=100_000)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS / "replay_numpy.json")
    parser.add_argument("--write-journal", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.events = 100_000
    if args.write_journal is not None:  # the child process of step 1
        print(json.dumps(write_journal(args.write_journal, args.events)))
        return {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("RAYTRADE_BENCH_TMP")) as scratch:
        data_dir = Path(scratch) / "data"
        child = subprocess.run(
            [sys.executable, __file__, "--write-journal", str(data_dir),
             "--events", str(args.events)],
            check=True, stdout=subprocess.PIPE, text=True,
        )
        journal = json.loads(child.stdout.strip().splitlines()[-1])
        chunked = time_chunks(data_dir, args.chunk_events, not args.no_progress)
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        bare = time_bare_replay(data_dir)
        builders = compare_builders(data_dir, COMPARED_EVENTS)
    report: dict[str, Any] = {
        "benchmark": "replay_numpy",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpus": os.cpu_count(),
        "events": chunked["events"],
        "events_per_s": chunked["events_per_s"],
        "chunk_events": args.chunk_events,
        "peak_rss_mb": round(peak_rss_mb, 1),
        "journal": journal,
        "iter_chunks": chunked,
        "bare_replay": bare,
        "builders": builders,
    }
    print()
    print(f"{'':28}{'events':>12}{'wall s':>10}{'events/s':>12}{'events/CPU s':>14}")
    print(f"{'iter_chunks (arrays)':28}{chunked['events']:>12,}{chunked['wall_s']:>10.3f}"
          f"{chunked['events_per_s']:>12,}{chunked['events_per_cpu_s']:>14,}")
    print(f"{'replay_events (objects)':28}{bare['events']:>12,}{bare['wall_s']:>10.3f}"
          f"{bare['events_per_s']:>12,}{'':>14}")
    print(f"chunks of {args.chunk_events:,} events: {chunked['chunks']}, rows {chunked['rows']:,}"
          f", peak RSS {peak_rss_mb:.0f} MB")
    print(f"building arrays from {builders['events']:,} events in memory, ns per event: "
          f"field-wise {builders['fieldwise_ns_per_event']} (with the top of book), "
          f"tuples + np.array {builders['tuples_ns_per_event']}, "
          f"preallocated rows {builders['preallocated_ns_per_event']}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.output}")
    return report


if __name__ == "__main__":
    main()
