"""The ``raytrade`` command.

    raytrade up      [--shards N] [--gateway FILE | --dev-accounts A B] [--front-ends FILE]
    raytrade up      --address HOST:PORT [--namespace NS] ...           start in a Ray cluster
    raytrade down    --address HOST:PORT [--namespace NS]               stop it, Ray stays up
    raytrade demo    [--orders N] [--seed S] [--shards N] ...           simulate and summarise
    raytrade status  [--address HOST:PORT] [--namespace NS] [--watch]   a running cluster's state
    raytrade prometheus-targets --out DIR [--address ...]               files for Prometheus
    raytrade sim     [--seed S] [--steps N] [--shards K] [--out DIR]    agents in simulated time
    raytrade query   bars|vwap|spread|fills|accounts --data DIR ...    recorded market data
    raytrade audit   --data-dir DIR (--order ID | --account A ...)     an order's life
    raytrade what-if --data-dir DIR [variants]                          replay under other settings

``sim``, ``query``, ``audit`` and ``what-if`` are the researchers' tools of `cluster.research`
(each has its own ``--help``).

``up`` and ``demo`` start a private local Ray (small ``num_cpus``, no dashboard) with the shard
actors in it; ``status`` joins the Ray that ``up`` started (on this machine, or by address).
``up --address`` joins a Ray cluster someone else runs (``ray start``, KubeRay), starts the
raytrade actors there under ``--namespace`` (detached: they outlive the command, recovering
from the data dir, which must be reachable from the nodes that run them) and exits; ``down``
stops those actors and leaves Ray running.

``up`` and ``demo`` run in phases: check (arguments, configuration, the data dir, the gateways'
ports; no Ray yet) -> start Ray -> start the cluster -> trade or serve -> stop. A user's mistake
is caught in the first phase, in well under a second. Whatever phase an interrupt arrives in,
one ``finally`` stops what was started: the cluster, Ray (and every process Ray started), the
demo's temporary data dir.

Exit status::

    0    done (for ``up``: stopped by Ctrl-C or SIGTERM once it served, everything stopped;
         for ``up --address``: started and left running)
    1    a cluster could not be reached or did not answer, or (``up --address``) raytrade
         already runs in that namespace (the message says which)
    2    bad arguments, configuration or data dir, or a gateway port in use; nothing started
    130  interrupted by Ctrl-C (143: SIGTERM) before it was done (a demo, or ``up`` still
         starting), after stopping whatever had started
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import shlex
import signal
import socket
import statistics
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from tqdm import tqdm

import actors._compiled as core_build
from cluster.config import ClusterConfig, InstrumentRegistry, ShardMap, load_cluster_config
from cluster.edge.local_run import Interrupted, LocalRun, raise_interrupted
from cluster.research.flow import FlowConfig, iter_flow
from cluster.storage import layout
from protocols.errors import (
    ClusterError,
    ClusterNotFoundError,
    ClusterUnreachableError,
    ConfigError,
    GatewayStartError,
    PortInUseError,
    RaytradeError,
)
from protocols.messages import (
    Event,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderReplaced,
    Trade,
)

log = logging.getLogger("raytrade")

_DEFAULTS = ClusterConfig()
_DEV_PORT = 50051
_STATUS_TIMEOUT_S = 10.0


# ------------------------------------------------------------------------------ checks


def _cluster_config(args: argparse.Namespace) -> ClusterConfig:
    return load_cluster_config(
        args.config,
        {"shards": args.shards, "namespace": args.namespace, "data_dir": args.data_dir},
    )


def _checked_registry(args: argparse.Namespace, config: ClusterConfig) -> InstrumentRegistry:
    """Load the instruments and check their shard pins against the shard count."""
    registry = InstrumentRegistry.load(args.instruments)
    try:
        ShardMap(config.shards, dict(registry.pins))
    except ConfigError as error:
        source = args.instruments or "the packaged instruments"
        raise ConfigError(f"{source}: {error}") from error
    return registry


def _check_ports(gateways: Sequence[Any]) -> None:
    """Raise `PortInUseError` if another process holds the port of a configured gateway.

    Checked by binding the port for a moment, the way the gateway will; a port in TIME_WAIT
    counts as free (``SO_REUSEADDR``), as it does for gRPC.
    """
    seen: dict[tuple[str, int], int] = {}
    for index, gateway in enumerate(gateways):
        if gateway.port == 0:  # any free port
            continue
        key = (gateway.host, gateway.port)
        if key in seen:
            raise ConfigError(f"gateways {seen[key]} and {index} both listen on "
                              f"{gateway.address}")
        seen[key] = index
        family = socket.AF_INET6 if ":" in gateway.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((gateway.host, gateway.port))
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise PortInUseError(
                        f"gateway port {gateway.port} ({gateway.address}) is in use by another "
                        f"process: stop it, or choose another port (--dev-port, or the port "
                        f"in the gateway TOML)"
                    ) from error
                raise GatewayStartError(
                    f"gateway cannot listen on {gateway.address}: {error.strerror}") from error


def _front_end_ports(front_ends: Any, shards: int) -> list[Any]:
    """Return one config per shard's front end, each with its own port (for `_check_ports`)."""
    if front_ends is None or front_ends.port == 0:
        return []
    import msgspec

    return [msgspec.structs.replace(front_ends, port=front_ends.port + shard)
            for shard in range(shards)]


# ------------------------------------------------------------------------------ commands


def _up(args: argparse.Namespace) -> int:
    from cluster.gateway.config import dev_gateway_config, load_gateway_config

    config = _cluster_config(args)
    registry = _checked_registry(args, config)
    gateways = [load_gateway_config(path) for path in args.gateway]
    front_ends = load_gateway_config(args.front_ends) if args.front_ends else None
    tokens: dict[str, str] = {}
    if args.dev_accounts:
        dev, tokens = dev_gateway_config(args.dev_accounts, args.dev_port)
        gateways.append(dev)
    _check_ports([*gateways, *_front_end_ports(front_ends, config.shards)])
    layout.check_data_dir(config.data_dir, config.shards)
    run = LocalRun(verbose=args.verbose)
    try:
        if args.address:
            address = run.join_ray(args.address, config.namespace, args.timeout)
            _refuse_if_running(config.namespace, address)
        layout.write_manifest(config.data_dir, config.shards)
        if not args.address:
            address = run.start_ray(args.num_cpus, config.namespace)
        cluster = run.start_cluster(config, registry, gateways, front_ends)
        print(f"raytrade is up: {config.shards} shards, {len(registry.instruments)} instruments "
              f"({', '.join(registry.symbols)}), namespace {config.namespace!r}, Ray at "
              f"{address}, data in {Path(config.data_dir).resolve()}; {core_build.summary()}.")
        if gateways:
            from cluster.edge.handles import GatewayHandle

            for name, gateway in zip(cluster.topology.gateways, gateways, strict=True):
                status = GatewayHandle(name, config.namespace).status().result(30.0)
                print(f"{name}: gRPC on {status['address']} "
                      f"({'TLS' if gateway.tls else 'plaintext, loopback'})")
        if front_ends is not None:
            for shard, where in enumerate(cluster.front_ends()):
                print(f"shard {shard} front end (orders for its symbols only): {where}")
        for account, token in tokens.items():
            print(f"token for {account}: {token}")
        for line in connect_hints(config.namespace, address):
            print(line)
        if args.address:
            run.detach()  # the actors are detached: they keep running when this process ends
            print("raytrade keeps running in that Ray; stop it with: raytrade down --address "
                  f"{shlex.quote(address)} --namespace {shlex.quote(config.namespace)}",
                  flush=True)
            return 0
        print("Ctrl-C stops.", flush=True)
        try:
            while True:
                time.sleep(3600)  # the signal handler raises Interrupted
        except Interrupted as stop:
            # the way to stop a server: a clean stop, exit 0 (a service manager's SIGTERM too)
            print(f"stopping ({signal.Signals(stop.signum).name}) ...", flush=True)
    finally:
        run.close()
    print("stopped.", flush=True)
    return 0


def _refuse_if_running(namespace: str, address: str) -> None:
    """Raise if a raytrade cluster already runs in ``namespace`` of the joined Ray."""
    from cluster.edge.handles import DirectoryHandle

    try:
        DirectoryHandle(namespace, timeout_s=10.0).topology()
    except ClusterNotFoundError:
        return
    raise ClusterError(
        f"raytrade already runs in namespace {namespace!r} of the Ray at {address}: "
        f"`raytrade status --address {address} --namespace {namespace}` shows it, "
        f"`raytrade down` stops it"
    )


def _down(args: argparse.Namespace) -> int:
    cluster = _connect_within(args.namespace, args.address, args.timeout)
    names = cluster.supervisor_names()
    cluster.stop()
    print(f"stopped raytrade in namespace {args.namespace!r} ({cluster.shards} shards, "
          f"{len(names)} supervisors, {len(cluster.topology.gateways)} gateways); the Ray at "
          f"{args.address} keeps running.")
    return 0


def connect_hints(namespace: str, address: str) -> list[str]:
    """Return the lines that tell a user how to reach a running cluster from another shell.

    Each is a complete command, to be pasted as it is (with raytrade's virtualenv active).
    """
    code = (f"from cluster.edge.wiring import connect; "
            f"print(connect({json.dumps(namespace)}, {json.dumps(address)}).shards, "
            f"{json.dumps('shards up')})")
    return [
        "from another shell: raytrade status --address "
        f"{shlex.quote(address)} --namespace {shlex.quote(namespace)}",
        f"from Python: python -c {shlex.quote(code)}",
    ]


def _connect_within(namespace: str, address: str, timeout_s: float) -> Any:
    """Connect to a running cluster, giving up after ``timeout_s`` whatever Ray does.

    Ray's own connect keeps retrying, for minutes, an address where something listens but no
    Ray answers: it runs in a daemon thread here, and past the wait the process ends at once
    (``os._exit``: an interpreter shutdown would wait for Ray's exit hooks, stuck the same way).
    """
    from cluster.edge.wiring import connect

    outcome: list[Any] = []

    def attempt() -> None:
        try:
            outcome.append(connect(namespace, address, timeout_s=timeout_s))
        except BaseException as error:  # handed to the main thread, which raises it
            outcome.append(error)

    # Ray warns that a driver started off the main thread has no SIGTERM handler: this one
    # needs none (the main thread handles signals), so the warning is noise
    logging.getLogger("ray._private.worker").addFilter(
        lambda record: "SIGTERM handler is not set" not in record.getMessage())
    thread = threading.Thread(target=attempt, name="raytrade-connect", daemon=True)
    thread.start()
    try:
        thread.join(timeout_s + 1.0)  # connect's own checks get their whole wait first
    except KeyboardInterrupt:
        if thread.is_alive():
            _exit_now(130, "raytrade: interrupted (SIGINT)")
        raise
    if not outcome:
        where = "on this machine" if address == "auto" else f"at {address}"
        _exit_now(1, f"raytrade: no Ray answered {where} within {timeout_s:g} s (something "
                     f"listens there, but not a Ray that answers; is it the address `raytrade "
                     f"up` printed?)")
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def _exit_now(status: int, message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(status)


def _prometheus_targets(args: argparse.Namespace) -> int:
    from cluster.edge.wiring import gateway_statuses, write_prometheus_targets

    cluster = _connect_within(args.namespace, args.address or "auto", args.timeout)
    found = write_prometheus_targets(args.out, gateway_statuses(cluster))
    for name, listed in found.items():
        print(f"{args.out / (name + '.json')}: {', '.join(listed) or 'none'}")
    return 0


def _watch(cluster: Any, args: argparse.Namespace) -> int:
    from cluster.edge.watch import watch
    from cluster.edge.wiring import gateway_statuses, metrics_endpoints

    gateways = gateway_statuses(cluster)
    return watch(lambda: metrics_endpoints(gateways), namespace=cluster.namespace,
                 interval_s=args.interval, count=args.count)


def _status(args: argparse.Namespace) -> int:
    from cluster.clients.ray_client import Client

    try:
        cluster = _connect_within(args.namespace, args.address or "auto", args.timeout)
    except ClusterUnreachableError as error:
        if args.address:
            raise
        raise ClusterUnreachableError(
            "no raytrade cluster is running on this machine (no Ray found); start one with "
            "`raytrade up`, or pass --address HOST:PORT"
        ) from error
    if args.watch:
        return _watch(cluster, args)
    client = Client(cluster)
    for row in client.status():
        print(f"shard {row.shard}: {row.symbols}, next event {row.next_seq}, {row.batches} "
              f"batches, {row.commands} commands since start, {row.resting_orders} resting "
              f"orders" + (f", front end {row.front_end}" if row.front_end else "")
              + (f", FAILED: {row.failed}" if row.failed else ""))
    for status in cluster.supervision():
        print(f"{status.name}: {status.state} ({status.strategy}, {status.recent_failures}/"
              f"{status.max_restarts} failures in {status.within_s:.0f} s)")
        for child in status.children:
            down = f" for {child.down_s:.0f} s" if child.down_s is not None else ""
            print(f"    {child.name:22} {'up' if child.up else child.state.upper() + down:4}  "
                  f"restarts {child.restarts}  at event {max(0, child.offset - 1)}")
        for failure in status.history[-5:]:
            print(f"    {failure.ago_s:>7.1f} s ago: {failure.child} {failure.reason[:80]}"
                  f" -> {failure.action}")
    print("placement:")
    for name, where in cluster.placements().items():
        if where is None:
            print(f"    {name:22} not found")
        else:
            print(f"    {name:22} node {where.node_ip} {where.node_id[:12]}  pid {where.pid}  "
                  f"{where.state.lower()}, restarts {where.restarts}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    run = LocalRun(verbose=args.verbose)
    try:
        # A simulation starts from empty books: journals go to a fresh temporary folder unless
        # --data-dir names one (and then only with --resume if it holds journals: a second run
        # recovers the first run's state and sees its own seeded orders as duplicates).
        fresh = args.data_dir is None
        if fresh:
            args.data_dir = run.scratch_dir()
        config = _cluster_config(args)
        registry = _checked_registry(args, config)
        state = layout.check_data_dir(config.data_dir, config.shards)
        if state.holds_events and not args.resume:
            raise ConfigError(
                f"data dir {state.path} already holds journals: the demo's seeded orders reuse "
                f"their client order ids, so every one would be rejected as "
                f"DUPLICATE_CLIENT_ORDER_ID; leave out --data-dir for a fresh temporary one, or "
                f"pass --resume to run on top of the recorded state anyway"
            )
        layout.write_manifest(config.data_dir, config.shards)
        started = time.perf_counter()
        run.start_ray(args.num_cpus, config.namespace)
        cluster = run.start_cluster(config, registry)
        print(f"started Ray and {config.shards} shards in {time.perf_counter() - started:.1f} s "
              f"(journals in {config.data_dir}{', temporary' if fresh else ''})")
        if state.holds_events:
            print(f"resuming on the journals in {state.path}: orders whose client order ids the "
                  f"journals already hold are rejected as DUPLICATE_CLIENT_ORDER_ID")
        from cluster.clients.ray_client import Client

        client = Client(cluster)
        summary = _run_flow(client, registry, args)
        client.wait_for_readers()
        _print_summary(client, summary, args, config)
    finally:
        run.close()
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
    instruments = client.cluster.topology.instruments
    scales: dict[str, int] = {i.symbol: 10 ** i.price_scale for i in instruments}

    def money(amount: int, symbol: str) -> Decimal:
        return Decimal(amount) / scales[symbol]

    by_pnl = sorted(client.all_positions(),
                    key=lambda row: -abs(money(row.realized_pnl, row.symbol)))
    if by_pnl and args.top:
        print(f"  top {min(args.top, len(by_pnl))} positions by |realized PnL| "
              f"(in the instrument's currency):")
        for row in by_pnl[: args.top]:
            print(f"    {row.account:8} {row.symbol:8} net {row.net_quantity:>10,}"
                  f"  realized {money(row.realized_pnl, row.symbol):>14,.2f}  unrealized "
                  f"{money(row.unrealized_pnl, row.symbol):>14,.2f}  fees "
                  f"{money(row.fees, row.symbol):>14,.2f}")
    latencies = sorted(summary.latencies_ms)
    if latencies:
        p50 = statistics.median(latencies)
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        print(f"  throughput {summary.commands / summary.elapsed_s:,.0f} commands/s over "
              f"{summary.elapsed_s:.1f} s; batch round trip p50 {p50:.1f} ms, p99 {p99:.1f} ms")


# ------------------------------------------------------------------------------ arguments


def whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """Return an argparse ``type=`` that accepts whole numbers from ``low`` (to ``high``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, not {value}")
        return value

    return parse


def positive_seconds(text: str) -> float:
    """An argparse ``type=`` for a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        # one line (argparse prints the whole usage first): the error is what the user needs
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str | None:
        # no "(default: None)" or "(default: False)": such options say their default in words
        if action.default in (None, False, [], argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``raytrade`` command line."""
    verbose = _Parser(add_help=False)
    verbose.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                         help="log more, and show Ray's own logs")
    parser = _Parser(prog="raytrade", description="An actor-model trading system on Ray.",
                     formatter_class=_HelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log more, and show Ray's own logs (also after the command)")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="raytrade's log lines on stderr: text, or one JSON object per "
                             "line (with structured fields: account, order id, shard, seq)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_Parser)

    def cluster_options(sub: argparse.ArgumentParser, data_dir_help: str) -> None:
        sub.add_argument("--shards", type=whole_number(1),
                         help=f"number of shards (default: {_DEFAULTS.shards}, or the --config "
                              f"file's)")
        sub.add_argument("--instruments", type=Path,
                         help="instrument TOML (default: the packaged demo set, "
                              "cluster/defaults/instruments.toml)")
        sub.add_argument("--config", type=Path, help="TOML file with a [cluster] table")
        sub.add_argument("--namespace",
                         help=f"Ray namespace (default: {_DEFAULTS.namespace}, or the --config "
                              f"file's)")
        sub.add_argument("--data-dir", help=data_dir_help)
        sub.add_argument("--num-cpus", type=whole_number(1), default=2,
                         help="CPUs the local Ray may use")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, description=help_text,
                                   parents=[verbose], formatter_class=_HelpFormatter)

    up = command("up", "start a local cluster and serve until Ctrl-C (or, with --address, "
                       "start raytrade in a running Ray cluster and exit)")
    cluster_options(up, f"journals and snapshots (default: {_DEFAULTS.data_dir}, or the "
                        f"--config file's)")
    up.add_argument("--gateway", type=Path, action="append", default=[],
                    help="gRPC gateway TOML (repeat for several gateways; see docs/GATEWAY.md)")
    up.add_argument("--front-ends", type=Path, metavar="FILE",
                    help="also serve orders over gRPC from each shard's own process, for its "
                         "own symbols: a gateway TOML (tokens, TLS, host); shard k listens on "
                         "its port + k (docs/GATEWAY.md, \"A shard's own front end\")")
    up.add_argument("--dev-accounts", nargs="+", metavar="ACCOUNT",
                    help="also run a loopback plaintext gateway with fresh tokens for these "
                         "accounts and an admin, printed once (for trying the API)")
    up.add_argument("--dev-port", type=whole_number(0, 65535), default=_DEV_PORT,
                    help="port of the dev gateway; 0 picks a free one")
    up.add_argument("--address",
                    help="HOST:PORT of a running Ray cluster's GCS (or 'auto'): start the "
                         "raytrade actors there, detached, and exit; `raytrade down` stops them")
    up.add_argument("--timeout", type=positive_seconds, default=_STATUS_TIMEOUT_S,
                    help="with --address: seconds to wait for Ray to answer")
    up.set_defaults(run=_up)

    down = command("down", "stop the raytrade actors in a Ray cluster (Ray keeps running)")
    down.add_argument("--namespace", default=_DEFAULTS.namespace, help="Ray namespace")
    down.add_argument("--address", required=True,
                      help="HOST:PORT of the Ray cluster (or 'auto': the Ray started last on "
                           "this machine)")
    down.add_argument("--timeout", type=positive_seconds, default=_STATUS_TIMEOUT_S,
                      help="seconds to wait for Ray to answer")
    down.set_defaults(run=_down)

    demo = command("demo", "start a local cluster, simulate traders, summarise")
    cluster_options(demo, "journals and snapshots (default: a fresh temporary folder, removed "
                          "at the end)")
    demo.add_argument("--resume", action="store_true",
                      help="run even if --data-dir already holds journals (their orders' client "
                           "order ids make the seeded ones duplicates)")
    demo.add_argument("--orders", type=whole_number(1), default=100_000,
                      help="commands to send")
    demo.add_argument("--seed", type=int, default=7, help="seed of the simulated flow")
    demo.add_argument("--accounts", type=whole_number(1), default=20,
                      help="simulated trading accounts")
    demo.add_argument("--batch", type=whole_number(1), default=1000, help="commands per batch")
    demo.add_argument("--in-flight", type=whole_number(1), default=4,
                      help="batches sent and not yet answered")
    demo.add_argument("--top", type=whole_number(0), default=5, help="positions to list")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(run=_demo)

    status = command("status", "show a running cluster's shards and supervisors")
    status.add_argument("--namespace", default=_DEFAULTS.namespace, help="Ray namespace")
    status.add_argument("--address",
                        help="HOST:PORT of the Ray that `raytrade up` printed (default: the Ray "
                             "started last on this machine)")
    status.add_argument("--timeout", type=positive_seconds, default=_STATUS_TIMEOUT_S,
                        help="seconds to wait for Ray to answer")
    status.add_argument("--watch", action="store_true",
                        help="a live view per shard from the metrics (orders/s, p50/p99 per "
                             "stage, rejects, restarts, reader lag) until Ctrl-C")
    status.add_argument("--interval", type=positive_seconds, default=2.0,
                        help="with --watch: seconds between refreshes")
    status.add_argument("--count", type=whole_number(1),
                        help="with --watch: stop after this many refreshes")
    status.set_defaults(run=_status)

    targets = command("prometheus-targets",
                      "write Prometheus file_sd target files for a running cluster (Ray's "
                      "nodes and the gateways' /metrics; see cluster/deploy/prometheus)")
    targets.add_argument("--out", type=Path, required=True,
                         help="folder for ray.json and gateways.json (prometheus.yml reads "
                              "targets/ next to it)")
    targets.add_argument("--namespace", default=_DEFAULTS.namespace, help="Ray namespace")
    targets.add_argument("--address", help="HOST:PORT of the Ray (default: this machine's)")
    targets.add_argument("--timeout", type=positive_seconds, default=_STATUS_TIMEOUT_S,
                         help="seconds to wait for Ray to answer")
    targets.set_defaults(run=_prometheus_targets)

    for name, (_, help_text) in _RESEARCH.items():
        commands.add_parser(name, help=help_text, add_help=False)

    return parser


_RESEARCH = {
    "sim": ("cluster.research.sim", "agents trading in simulated time, with plots"),
    "query": ("cluster.research.queries", "query recorded market data (bars, VWAP, spread)"),
    "audit": ("cluster.research.audit", "an order's or an account's life from the journal"),
    "what-if": ("cluster.research.whatif", "replay a run under other settings, compared"),
}
"""Commands that are their module's own ``main`` (each parses its arguments itself)."""


def _research(name: str, argv: Sequence[str]) -> int:
    import importlib

    module = importlib.import_module(_RESEARCH[name][0])
    result: int = module.main(list(argv))
    return result


def _configure_logging(verbose: bool, log_format: str = "text") -> None:
    """Show raytrade's warnings only (everything with -v); keep Ray's logs off the terminal.

    Ray's loggers and its C++ core read their levels when ray is imported and ``ray.init``
    runs (`cluster.edge.handles` passes ``log_to_driver`` and ``logging_level``); this runs
    before either. ``json``: one object per line (`cluster.logs`).
    """
    level = logging.DEBUG if verbose else logging.WARNING
    if log_format == "json":
        from cluster.logs import configure_logging

        configure_logging("json", level)
        return
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``raytrade`` command line; return its exit status (see the module docstring)."""
    for handled in (signal.SIGINT, signal.SIGTERM):
        signal.signal(handled, raise_interrupted)
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in _RESEARCH:
            _configure_logging(False)
            return _research(argv[0], argv[1:])
        args = build_parser().parse_args(argv)
        _configure_logging(args.verbose, args.log_format)
        result: int = args.run(args)
    except (ConfigError, GatewayStartError) as error:
        print(f"raytrade: {error}", file=sys.stderr)
        return 2
    except RaytradeError as error:  # ClusterError and what a running cluster answers
        print(f"raytrade: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as error:
        signum: int = error.signum if isinstance(error, Interrupted) else signal.SIGINT
        print(f"raytrade: interrupted ({signal.Signals(signum).name}); everything it started "
              f"is stopped", file=sys.stderr)
        return 128 + signum
    return result


if __name__ == "__main__":
    sys.exit(main())
