"""Scale-out: the same flow on 1, 2 and 4 shards, each book on its own Ray node.

For each shard count N, a child process starts N + 1 real raylets on loopback
(`ray.cluster_utils.Cluster`: a head, and N book nodes with ``raytrade_book: 1``), a raytrade
cluster of N shards with ``books_per_node = 1`` (so every book has a node to itself), and sends
the seeded flow of bench_matching through the Python client (batches of ``--batch``, split by
shard, ``--in-flight`` outstanding). It reports commands/s and the CPU per command of every
process below the child (raylets, workers, the client), read from /proc before and after.

On this 2-core machine all the nodes share the same two cores, so throughput cannot grow with
N here: the CPU per command is the figure that carries to a machine (or a cluster) with a core
per node, where throughput would scale by about 1 / (CPU per command x commands per node).
Writes ``benchmarks/results/scaleout.json`` (``shards`` -> figures).

    python benchmarks/bench_scaleout.py              # 1, 2 and 4 shards (~3 minutes)
    python benchmarks/bench_scaleout.py --quick      # 1 and 2 shards, a shorter flow
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

CHILD = textwrap.dedent("""
    import json, os, sys, time
    from collections import deque
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from cluster.edge import handles  # RAY_AUTH_MODE=token before Ray is imported
    handles.prepare_local_nodes()
    import ray
    from ray.cluster_utils import Cluster as RayNodes

    from cluster.clients.ray_client import Client
    from cluster.config import ClusterConfig, InstrumentRegistry, Placement
    from cluster.edge.wiring import start_cluster
    from cluster.research.flow import FlowConfig, demo_instruments, generate_flow

    shards, operations, batch, in_flight = (int(value) for value in sys.argv[2:6])
    ray_tmp, data_dir = sys.argv[6], sys.argv[7]
    TICKS = os.sysconf("SC_CLK_TCK")

    def tree_cpu_s():
        parents, cpu = {}, {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
            cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / TICKS
        mine, stack = {os.getpid()}, [os.getpid()]
        children = {}
        for pid, parent in parents.items():
            children.setdefault(parent, []).append(pid)
        while stack:
            for child in children.get(stack.pop(), []):
                mine.add(child)
                stack.append(child)
        return sum(cpu.get(pid, 0.0) for pid in mine)

    nodes = RayNodes(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "temp_dir": ray_tmp})
    for _ in range(shards):
        nodes.add_node(num_cpus=1, resources={"raytrade_book": 1})
    nodes.wait_for_nodes()
    ray.init(address=nodes.address, namespace="scaleout")
    instruments = demo_instruments(8)
    config = ClusterConfig(shards=shards, namespace="scaleout", data_dir=data_dir,
                           placement=Placement(book_resource="raytrade_book", books_per_node=1))
    cluster = start_cluster(config, InstrumentRegistry(tuple(instruments)))
    try:
        client = Client(cluster)
        flow = generate_flow(instruments, FlowConfig(operations=operations, seed=7),
                             cluster.shard_map.shard_of)
        warm = flow[: batch * in_flight]
        client.submit(warm)
        flow = flow[len(warm):]
        placements = cluster.placements()
        books_on = {placements[f"book-{k}"].node_id for k in range(shards)}
        cpu_before, started = tree_cpu_s(), time.perf_counter()
        pending = deque()
        for index in range(0, len(flow), batch):
            if len(pending) >= in_flight:
                pending.popleft().result(timeout_s=120)
            pending.append(client.submit_async(flow[index : index + batch]))
        while pending:
            pending.popleft().result(timeout_s=120)
        elapsed = time.perf_counter() - started
        client.wait_for_readers(timeout_s=120)  # their deferred work counts too
        cpu = tree_cpu_s() - cpu_before
    finally:
        cluster.stop()
        ray.shutdown()
        nodes.shutdown()
    print(json.dumps({
        "shards": shards, "commands": len(flow), "batch": batch, "in_flight": in_flight,
        "commands_per_s": round(len(flow) / elapsed),
        "cpu_us_per_command": round(cpu / len(flow) * 1e6, 1),
        "books_on_distinct_nodes": len(books_on) == shards,
    }), flush=True)
""")


def run(shards: int, operations: int, batch: int, in_flight: int) -> dict[str, Any]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    with tempfile.TemporaryDirectory(prefix="rt-so-") as ray_tmp, \
            tempfile.TemporaryDirectory(prefix="raytrade-scaleout-") as data_dir:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(ROOT), str(shards), str(operations), str(batch),
             str(in_flight), ray_tmp, data_dir],
            env=env, capture_output=True, text=True, timeout=900, check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"{shards} shards failed:\n{done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 and 2 shards, 60k commands")
    parser.add_argument("--operations", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--output", type=Path, default=RESULTS / "scaleout.json")
    args = parser.parse_args(argv)
    counts = (1, 2) if args.quick else (1, 2, 4)
    operations = 60_000 if args.quick else args.operations
    rows = {}
    for shards in counts:
        print(f"{shards} shard(s) on {shards} book node(s) + a head ...", flush=True)
        rows[str(shards)] = run(shards, operations, args.batch, args.in_flight)
        row = rows[str(shards)]
        print(f"    {row['commands_per_s']:,} commands/s, {row['cpu_us_per_command']} us of CPU "
              f"per command (all processes), books on distinct nodes: "
              f"{row['books_on_distinct_nodes']}", flush=True)
    report = {
        "benchmark": "scaleout",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "note": "every node shares this machine's cores: read cpu_us_per_command",
        "shards": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
