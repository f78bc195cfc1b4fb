"""The ``raytrade`` command.

    raytrade up      [--shards N] [--gateway FILE | --dev-accounts A B]   serve until Ctrl-C
    raytrade demo    [--orders N] [--seed S] [--shards N] ...           simulate and summarise
    raytrade status  [--namespace NS]                                   a running cluster's state

``up`` and ``demo`` start a private local Ray (small ``num_cpus``, no dashboard) with the shard
actors in it; ``status`` connects to the Ray that ``up`` started on this machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cluster.config import ClusterConfig, ConfigError, InstrumentRegistry, load_cluster_config
from cluster.research.flow import FlowConfig, iter_flow
from protocols.messages import (
    Event,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderReplaced,
    Trade,
)

log = logging.getLogger("raytrade")


def _cluster_config(args: argparse.Namespace) -> ClusterConfig:
    return load_cluster_config(
        args.config,
        {"shards": args.shards, "namespace": args.namespace, "data_dir": args.data_dir},
    )


def _up(args: argparse.Namespace) -> int:
    from cluster.edge.wiring import start_cluster, start_ray
    from cluster.gateway.config import dev_gateway_config, load_gateway_config

    config = _cluster_config(args)
    registry = InstrumentRegistry.load(args.instruments)
    gateways = [load_gateway_config(path) for path in args.gateway]
    tokens: dict[str, str] = {}
    if args.dev_accounts:
        dev, tokens = dev_gateway_config(args.dev_accounts, args.dev_port)
        gateways.append(dev)
    start_ray(num_cpus=args.num_cpus, namespace=config.namespace, quiet=not args.verbose)
    cluster = start_cluster(config, registry, gateways)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    import ray

    address = ray.get_runtime_context().gcs_address
    print(f"raytrade is up: {config.shards} shards, {len(registry.instruments)} instruments "
          f"({', '.join(registry.symbols)}), namespace {config.namespace!r}, Ray at {address}, "
          f"data in {Path(config.data_dir).resolve()}.")
    for name, gateway in zip(cluster.topology.gateways, gateways, strict=True):
        status = ray.get(cluster.handle(name).status.remote())
        print(f"{name}: gRPC on {status['address']} "
              f"({'TLS' if gateway.tls else 'plaintext, loopback'})")
    for account, token in tokens.items():
        print(f"token for {account}: {token}")
    print(f"`raytrade status --address {address}` shows the shards and supervisors; from "
          f"Python: cluster.edge.wiring.connect({config.namespace!r}, {address!r}). Ctrl-C stops.",
          flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        print("stopping ...", flush=True)
        cluster.stop()
        ray.shutdown()
        print("stopped.")
    return 0


def _status(args: argparse.Namespace) -> int:
    if args.address:
        # Ray reads this when it is imported: with an explicit address and token
        # authentication (on by default in Ray 2.60) the driver must know before that
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    from cluster.clients.ray_client import Client
    from cluster.edge.wiring import connect

    cluster = connect(namespace=args.namespace, address=args.address or "auto")
    client = Client(cluster)
    for row in client.status():
        print("shard {shard}: {symbols}, next event {next_seq}, {batches} batches, {commands} "
              "commands since start, {resting_orders} resting orders".format(**row))
    for status in cluster.supervision():
        intensity = status["intensity"]
        print(f"{status['name']}: {status['state']} ({status['strategy']}, "
              f"{intensity['recent_failures']}/{intensity['max_restarts']} failures in "
              f"{intensity['within_s']:.0f} s)")
        for name, child in status["children"].items():
            print(f"    {name:22} {'up' if child['up'] else 'DOWN':4}  restarts {child['restarts']}"
                  f"  at event {max(0, child['offset'] - 1)}")
        for failure in status["history"][-5:]:
            print(f"    {failure['ago_s']:>7.1f} s ago: {failure['child']} {failure['reason'][:80]}"
                  f" -> {failure['action']}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from cluster.clients.ray_client import Client
    from cluster.edge.wiring import start_cluster, start_ray

    # A simulation starts from empty books: journals go to a fresh temporary folder unless
    # --data-dir names one (a second run on the same journals would recover the first run's
    # state and see its own seeded orders as duplicates).
    scratch = None if args.data_dir else tempfile.TemporaryDirectory(prefix="raytrade-demo-")
    if scratch is not None:
        args.data_dir = scratch.name
    config = _cluster_config(args)
    registry = InstrumentRegistry.load(args.instruments)
    started = time.perf_counter()
    start_ray(num_cpus=args.num_cpus, namespace=config.namespace, quiet=not args.verbose)
    cluster = start_cluster(config, registry)
    print(f"started Ray and {config.shards} shards in {time.perf_counter() - started:.1f} s "
          f"(journals in {config.data_dir})")
    try:
        client = Client(cluster)
        summary = _run_flow(client, registry, args)
        client.wait_for_readers()
        _print_summary(client, summary, args, config)
    finally:
        import ray

        cluster.stop()
        ray.shutdown()
        if scratch is not None:
            scratch.cleanup()
    return 0


class _Summary:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.rejects: Counter[str] = Counter()
        self.cancels: Counter[str] = Counter()
        self.volume = 0
        self.latencies_ms: list[float] = []
        self.elapsed_s = 0.0
        self.commands = 0

    def add(self, events: list[Event]) -> None:
        for event in events:
            self.counts[type(event).__name__] += 1
            if type(event) is Trade:
                self.volume += event.quantity
            elif type(event) is OrderRejected:
                self.rejects[event.code.name] += 1
            elif type(event) is OrderCancelled:
                self.cancels[event.reason.name] += 1


def _run_flow(client: Any, registry: InstrumentRegistry, args: argparse.Namespace) -> _Summary:
    config = FlowConfig(operations=args.orders, seed=args.seed, accounts=args.accounts)
    flow = list(tqdm(iter_flow(registry.instruments, config, client.shard_map.shard_of),
                     total=args.orders, unit="cmd", desc="generating flow", disable=args.quiet))
    summary = _Summary()
    in_flight: deque[tuple[float, Any]] = deque()

    def collect() -> None:
        sent_at, pending = in_flight.popleft()
        summary.add(pending.result())
        summary.latencies_ms.append((time.perf_counter() - sent_at) * 1000)

    started = time.perf_counter()
    with tqdm(total=len(flow), unit="cmd", desc="trading", disable=args.quiet) as bar:
        for index in range(0, len(flow), args.batch):
            batch = flow[index : index + args.batch]
            if len(in_flight) >= args.in_flight:
                collect()
            in_flight.append((time.perf_counter(), client.submit_async(batch)))
            bar.update(len(batch))
            summary.commands += len(batch)
        while in_flight:
            collect()
    summary.elapsed_s = time.perf_counter() - started
    return summary


def _print_summary(
    client: Any, summary: _Summary, args: argparse.Namespace, config: ClusterConfig
) -> None:
    counts = summary.counts
    print(f"\nraytrade demo: {summary.commands:,} commands (seed {args.seed}, "
          f"{args.accounts} accounts) through {config.shards} shards on Ray, batches of "
          f"{args.batch}, {args.in_flight} in flight")
    print(f"  accepted {counts[OrderAccepted.__name__]:,}  trades {counts[Trade.__name__]:,} "
          f"(volume {summary.volume:,})  cancelled {counts[OrderCancelled.__name__]:,}  "
          f"replaced {counts[OrderReplaced.__name__]:,}  rejected "
          f"{counts[OrderRejected.__name__]:,}")
    if summary.rejects:
        print("  rejects by reason: "
              + ", ".join(f"{name} {count:,}" for name, count in summary.rejects.most_common()))
    if summary.cancels:
        print("  cancels by reason: "
              + ", ".join(f"{name} {count:,}" for name, count in summary.cancels.most_common()))
    scales = {i.symbol: 10 ** i.price_scale for i in client.cluster.topology.instruments}

    def money(row: dict[str, Any], field: str) -> str:
        return f"{Decimal(int(row[field])) / scales[str(row['symbol'])]:>14,.2f}"

    positions = client.all_positions()
    by_pnl = sorted(
        positions,
        key=lambda row: -abs(Decimal(int(row["realized_pnl"])) / scales[str(row["symbol"])]),
    )
    if by_pnl:
        print(f"  top {min(args.top, len(by_pnl))} positions by |realized PnL| "
              f"(in the instrument's currency):")
        for row in by_pnl[: args.top]:
            print(f"    {row['account']:8} {row['symbol']:8} net {int(row['net_quantity']):>10,}"
                  f"  realized {money(row, 'realized_pnl')}  unrealized "
                  f"{money(row, 'unrealized_pnl')}  fees {money(row, 'fees')}")
    latencies = sorted(summary.latencies_ms)
    if latencies:
        p50 = statistics.median(latencies)
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        print(f"  throughput {summary.commands / summary.elapsed_s:,.0f} commands/s over "
              f"{summary.elapsed_s:.1f} s; batch round trip p50 {p50:.1f} ms, p99 {p99:.1f} ms")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raytrade", description="An actor-model trading system on Ray."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more, show Ray's logs")
    commands = parser.add_subparsers(dest="command", required=True)

    def cluster_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--shards", type=int, help="number of shards (default 2)")
        sub.add_argument("--instruments", type=Path, help="instrument TOML (default: demo set)")
        sub.add_argument("--config", type=Path, help="TOML file with a [cluster] table")
        sub.add_argument("--namespace", help="Ray namespace (default raytrade)")
        sub.add_argument("--data-dir", help="journals and snapshots (default .raytrade)")
        sub.add_argument("--num-cpus", type=int, default=2, help="CPUs the local Ray may use")

    up = commands.add_parser("up", help="start a local cluster and serve until Ctrl-C")
    cluster_options(up)
    up.add_argument("--gateway", type=Path, action="append", default=[],
                    help="gRPC gateway TOML (repeat for several gateways; see docs/GATEWAY.md)")
    up.add_argument("--dev-accounts", nargs="+", metavar="ACCOUNT",
                    help="also run a loopback plaintext gateway with fresh tokens for these "
                         "accounts and an admin, printed once (for trying the API)")
    up.add_argument("--dev-port", type=int, default=50051, help="port of the dev gateway")
    up.set_defaults(run=_up)

    demo = commands.add_parser("demo", help="start a local cluster, simulate traders, summarise")
    cluster_options(demo)
    demo.add_argument("--orders", type=int, default=100_000, help="commands to send")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--accounts", type=int, default=20)
    demo.add_argument("--batch", type=int, default=1000, help="commands per batch")
    demo.add_argument("--in-flight", type=int, default=4, help="batches in flight")
    demo.add_argument("--top", type=int, default=5, help="positions to list")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(run=_demo)

    status = commands.add_parser("status", help="show a running cluster's shards and supervisors")
    status.add_argument("--namespace", default="raytrade")
    status.add_argument("--address", help="Ray address printed by `raytrade up` (default: auto)")
    status.set_defaults(run=_status)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        result: int = args.run(args)
    except ConfigError as error:
        print(f"raytrade: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
