"""CPU budget of the order path: CPU time of every process of the cluster, per order.

Starts a private local Ray, a 2-shard raytrade cluster with one gateway (as ``raytrade up``
starts it: the gateway supervised in the cluster's tree), and reads the CPU time
(user + system, from /proc/<pid>/stat) of every process of the cluster before and after a fixed
load: the Ray daemons (gcs_server, raylet, the dashboard and runtime-env agents, log monitor),
every Ray worker (book actors, the readers with the risk and position models, gateway,
the supervision tree, idle workers; all found as descendants of this driver, which started
Ray), this driver, and the load generators (each reads its own CPU around its load and
reports it). The loads:

1. batched gRPC ``SubmitOrders``: 1000 orders per call, 2 client processes x 2 calls in flight,
   typed (``orders``, protobuf messages) and packed (``packed_orders``, MessagePack rows; key
   ``batched_grpc_packed_us_per_order``), in ABBA order, half the calls per leg;
2. single-order gRPC ``SubmitOrder`` at 200/s, open loop (each sent at its scheduled time);
3. the Python client (`cluster.clients.ray_client.Client`), batches of 1000, 4 in flight;
1b/2b. loads 1 (packed) and 2 sent straight to each shard's own front end
   (`cluster.gateway.direct`), one load generator per shard with that shard's symbols (keys
   ``batched_direct_us_per_order``, ``single_direct_us_per_order``);
4. no load at all: the idle CPU per second of the whole cluster;
5. the same shard work in one process, no Ray: a `BookActor` per shard with the cluster's
   journal policy, its events folded by in-process risk and position read models, and the
   client's share (building, encoding the batch, decoding the reply).

Each load is a fixed number of orders (time-bounded by timeouts); "after" is read once the
readers (risk, positions) and the gateway's feeds have caught up with the books, so their
deferred work is counted. CPU per order is every process's CPU over that window divided by the
orders acknowledged; `idle_baseline_us_per_order` says how much of it the idle cluster would
have spent in the same time anyway. Prints a table, writes ``benchmarks/results/cpu.json``
(the headline figures under the keys the issue names, per-role and per-process breakdowns
beside them, the load average at start and end). Figures vary +-25% with what else runs on the
machine: compare runs on a quiet machine. /proc counts CPU in clock ticks (10 ms), per process
and reading, which is why each load runs long enough to keep that under a few percent. Linux
only.

    python benchmarks/bench_cpu.py            # the full run (~1 minute)
    python benchmarks/bench_cpu.py --quick    # a smoke run (< 1 minute)
    python benchmarks/bench_cpu.py --idle-only --idle-seconds 20   # load 4 alone, per process

Roles: gateway, books, readers (risk + positions), supervisors (the supervision tree's
process, which is also the directory), ray (daemons and
idle workers), driver (this process: idle Ray threads and the catch-up polls; in load 3 it is
the client, counted as clients), clients (the load generators), other (e.g. multiprocessing's
resource tracker).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESULTS = Path(__file__).resolve().parent / "results"
TOKEN = "bench-token"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ROLES = ("gateway", "books", "readers", "supervisors", "ray", "driver", "clients", "other")
ACTOR_ROLES = {
    "BookActor": "books",
    "ShardReader": "readers",
    "GatewayActor": "gateway",
    "SupervisionTree": "supervisors",
}
SYMBOLS = ("AAPL", "BTC-USD", "MSFT", "NVDA")
"""The flow's symbols, as in bench_gateway.py: two per shard with 2 shards."""
RAY_DAEMONS = ("gcs_server", "raylet", "DashboardAgent", "RuntimeEnvAgent", "dashboard",
               "runtime_env", "log_monitor", "monitor.py", "ray::IDLE")
"""Substrings of the command lines of Ray's own processes (agents retitle themselves ray::)."""


# ------------------------------------------------------------------------------ /proc


def _stat(pid: int) -> tuple[int, float, int] | None:
    """Return (parent pid, CPU seconds, start time in ticks) of a live process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS, int(fields[19])


def own_cpu_s() -> float:
    """Return this process's CPU seconds (every thread), from /proc."""
    found = _stat(os.getpid())
    assert found is not None
    return found[1]


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _descendants(root: int) -> Iterator[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (found := _stat(int(entry.name))) is not None:
            children.setdefault(found[0], []).append(int(entry.name))
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        yield pid
        stack.extend(children.get(pid, []))


def role_of(pid: int, driver: int) -> tuple[str, str]:
    """Return (role, short name) of a process of the cluster."""
    if pid == driver:
        return "driver", "driver"
    command = _cmdline(pid)
    if command.startswith("ray::"):
        actor = command[5:].split()[0].split(".")[0]
        if actor in ACTOR_ROLES:
            return ACTOR_ROLES[actor], actor
    for daemon in RAY_DAEMONS:
        if daemon in command:
            return "ray", daemon
    return "other", command[:40]


class ClusterCpu:
    """Readings of the CPU time of every process under this driver, except the excluded ones
    (load generators, which report their own)."""

    def __init__(self) -> None:
        self.driver = os.getpid()
        self.excluded: set[int] = set()

    def read(self) -> dict[tuple[int, int], tuple[str, str, float]]:
        """Return {(pid, start ticks): (role, name, CPU seconds)} for every process now."""
        found = {}
        for pid in [self.driver, *_descendants(self.driver)]:
            if pid in self.excluded or (stat := _stat(pid)) is None:
                continue
            role, name = role_of(pid, self.driver)
            found[(pid, stat[2])] = (role, name, stat[1])
        return found

    @staticmethod
    def used(before: dict[tuple[int, int], tuple[str, str, float]],
             after: dict[tuple[int, int], tuple[str, str, float]]) -> dict[str, Any]:
        """Return CPU seconds by role and by process between two readings.

        A process started meanwhile counts from zero; one that ended meanwhile is reported
        under ``ended`` (its last CPU is lost: /proc forgets it).
        """
        roles = dict.fromkeys(ROLES, 0.0)
        processes = []
        for key, (role, name, cpu) in after.items():
            used = cpu - before.get(key, (role, name, 0.0))[2]
            roles[role] += used
            processes.append({"pid": key[0], "role": role, "name": name,
                              "cpu_s": round(used, 4)})
        processes.sort(key=lambda row: -row["cpu_s"])
        ended = [{"pid": key[0], "name": name} for key, (_, name, _) in before.items()
                 if key not in after]
        return {"roles_s": roles, "processes": processes, "ended": ended}


# ------------------------------------------------------------------------------ the flow


def flow_instruments(symbols: Sequence[str] = SYMBOLS) -> list[Any]:
    """Return the instruments the flow trades (``symbols``, from the default registry)."""
    from cluster.config import InstrumentRegistry

    found = {item.symbol: item for item in InstrumentRegistry.load().instruments}
    return [found[symbol] for symbol in symbols]


def order_fields(instruments: Sequence[Any], account: str, serial: int,
                 rng: random.Random) -> dict[str, Any]:
    """Return one order of the benchmark's flow (limit orders within 5 ticks of the reference
    price, one in four IOC), as plain fields; every load builds its messages from these."""
    instrument = instruments[serial % len(instruments)]
    return {
        "account": account,
        "client_order_id": f"{account}-{serial}",
        "symbol": instrument.symbol,
        "buy": rng.random() < 0.5,
        "ioc": serial % 4 == 0,
        "quantity": (1 + serial % 5) * instrument.lot_size,
        "price": instrument.reference_price + rng.randint(-5, 5) * instrument.tick_size,
    }


def new_order(fields: dict[str, Any], ts_ns: int) -> Any:
    """Return the order as the internal `NewOrder` command."""
    from protocols.messages import NewOrder, Side, TimeInForce

    return NewOrder(
        account=fields["account"], client_order_id=fields["client_order_id"],
        symbol=fields["symbol"], side=Side.BUY if fields["buy"] else Side.SELL,
        quantity=fields["quantity"], price=fields["price"],
        time_in_force=TimeInForce.IOC if fields["ioc"] else TimeInForce.GTC, ts_ns=ts_ns,
    )


def new_order_request(pb: Any, fields: dict[str, Any], into: Any = None) -> Any:
    """Return (or add to ``into``) the order as a protobuf `NewOrderRequest`."""
    values = {
        "account": fields["account"], "client_order_id": fields["client_order_id"],
        "symbol": fields["symbol"], "side": pb.SIDE_BUY if fields["buy"] else pb.SIDE_SELL,
        "order_type": pb.ORDER_TYPE_LIMIT, "quantity": fields["quantity"],
        "price": fields["price"],
        "time_in_force": pb.TIME_IN_FORCE_IOC if fields["ioc"] else pb.TIME_IN_FORCE_GTC,
    }
    return into.add(**values) if into is not None else pb.NewOrderRequest(**values)


# ------------------------------------------------------------------------------ load generators


def _channel_options() -> list[tuple[str, int]]:
    return [("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20)]


def packed_order_row(fields: dict[str, Any]) -> tuple[Any, ...]:
    """Return the order as a row of ``SubmitOrdersRequest.packed_orders`` (what
    `cluster.clients.grpc_client.packed_order` builds: NewOrderRequest's fields in order)."""
    return (fields["account"], fields["client_order_id"], fields["symbol"],
            1 if fields["buy"] else 2, 1, 2 if fields["ioc"] else 1, fields["quantity"],
            fields["price"])


def _batched_worker(address: str, account: str, calls: int, batch: int, in_flight: int,
                    warmup_calls: int, packed: bool, symbols: Sequence[str], go: Any,
                    results: Any) -> None:
    import grpc
    import msgspec

    from protocols.generated import trading_pb2 as pb
    from protocols.generated import trading_pb2_grpc as pb_grpc

    instruments = flow_instruments(symbols)
    channel = grpc.insecure_channel(address, options=_channel_options())
    stub = pb_grpc.TradingServiceStub(channel)
    metadata = (("authorization", f"Bearer {TOKEN}"),)
    rng = random.Random(account)
    serial = 0
    pack = msgspec.msgpack.Encoder().encode

    def build() -> Any:
        nonlocal serial
        if packed:
            rows = []
            for _ in range(batch):
                serial += 1
                rows.append(packed_order_row(order_fields(instruments, account, serial, rng)))
            return pb.SubmitOrdersRequest(packed_orders=pack(rows))
        request = pb.SubmitOrdersRequest()
        for _ in range(batch):
            serial += 1
            new_order_request(pb, order_fields(instruments, account, serial, rng), request.orders)
        return request

    def run(count: int) -> tuple[int, int]:
        acknowledged = rejected = sent = 0
        pending: list[Any] = []
        while sent < count or pending:
            while len(pending) < in_flight and sent < count:
                pending.append(stub.SubmitOrders.future(build(), metadata=metadata, timeout=60))
                sent += 1
            reply = pending.pop(0).result()
            acknowledged += len(reply.order_ids)
            rejected += len(reply.rejections)
        return acknowledged, rejected

    grpc.channel_ready_future(channel).result(timeout=30)
    run(warmup_calls)
    results.put({"ready": os.getpid()})
    go.wait(120)
    cpu_before, started = own_cpu_s(), time.perf_counter()
    acknowledged, rejected = run(calls)
    results.put({"orders": acknowledged, "rejected": rejected,
                 "seconds": time.perf_counter() - started, "cpu_s": own_cpu_s() - cpu_before})
    channel.close()


async def _open_loop(address: str, account: str, rate: float, count: int, warmup: int,
                     symbols: Sequence[str], go: Any, results: Any) -> None:
    import grpc

    from protocols.generated import trading_pb2 as pb
    from protocols.generated import trading_pb2_grpc as pb_grpc

    instruments = flow_instruments(symbols)
    channel = grpc.aio.insecure_channel(address)
    stub = pb_grpc.TradingServiceStub(channel)
    metadata = (("authorization", f"Bearer {TOKEN}"),)
    rng = random.Random(account)
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = 0
    serial = 0

    async def one(scheduled: float) -> None:
        nonlocal errors, serial
        serial += 1
        request = new_order_request(pb, order_fields(instruments, account, serial, rng))
        try:
            await stub.SubmitOrder(request, metadata=metadata, timeout=10)
            latencies.append(loop.time() - scheduled)
        except grpc.aio.AioRpcError:
            errors += 1

    async def run(orders: int) -> None:
        tasks = []
        start = loop.time() + 0.02
        for index in range(orders):
            scheduled = start + index / rate
            if (delay := scheduled - loop.time()) > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(scheduled)))
        await asyncio.gather(*tasks)

    await channel.channel_ready()
    await run(warmup)
    results.put({"ready": os.getpid()})
    await loop.run_in_executor(None, go.wait, 120)
    latencies.clear()
    errors = 0
    cpu_before, started = own_cpu_s(), time.perf_counter()
    await run(count)
    seconds = time.perf_counter() - started
    cpu_s = own_cpu_s() - cpu_before
    await channel.close()
    ordered = sorted(latencies)

    def at(fraction: float) -> float:
        if not ordered:
            return float("nan")
        return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000, 3)

    results.put({"orders": len(ordered), "errors": errors, "seconds": seconds, "cpu_s": cpu_s,
                 "achieved_rate": round(len(ordered) / seconds, 1), "p50_ms": at(0.5),
                 "p99_ms": at(0.99), "p999_ms": at(0.999)})


def _single_worker(address: str, account: str, rate: float, count: int, warmup: int,
                   symbols: Sequence[str], go: Any, results: Any) -> None:
    asyncio.run(_open_loop(address, account, rate, count, warmup, symbols, go, results))


def _collect(results: Any, processes: list[Any], timeout_s: float) -> list[dict[str, Any]]:
    """Return one report per process; raise if one died first or ``timeout_s`` passed."""
    import queue

    rows: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while len(rows) < len(processes):
        try:
            rows.append(results.get(timeout=0.5))
        except queue.Empty:
            failed = [process.exitcode for process in processes if process.exitcode]
            if failed or time.monotonic() > deadline:
                raise RuntimeError(f"load generators failed (exit codes {failed}) or took "
                                   f"over {timeout_s} s") from None
    return rows


def run_generators(meter: ClusterCpu, settle: Any, workers: list[tuple[Any, tuple[Any, ...]]],
                   timeout_s: float) -> dict[str, Any]:
    """Run load generator processes: wait until each has warmed up, read the cluster's CPU,
    let them go, collect their reports, wait for the readers, read the CPU again."""
    context = multiprocessing.get_context("spawn")
    go, results = context.Event(), context.Queue()
    processes = [context.Process(target=target, args=(*args, go, results))
                 for target, args in workers]
    for process in processes:
        process.start()
        meter.excluded.add(process.pid)
    try:
        _collect(results, processes, timeout_s)
        before, started = meter.read(), time.perf_counter()
        go.set()
        rows = _collect(results, processes, timeout_s)
        for process in processes:
            process.join(timeout=30)
        settled = settle()
        after, elapsed = meter.read(), time.perf_counter() - started
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
    used = ClusterCpu.used(before, after)
    used["roles_s"]["clients"] += sum(row["cpu_s"] for row in rows)
    return {"rows": rows, "elapsed_s": elapsed, "settled": settled, **used}


# ------------------------------------------------------------------------------ in-process


class _ListSink:
    def __init__(self) -> None:
        self.batches: list[tuple[int, int, bytes]] = []

    def publish(self, first_seq: int, last_seq: int, payload: bytes, origin: str = "") -> None:
        self.batches.append((first_seq, last_seq, payload))


class _Discard:
    """A metrics exporter that drops the readings: the shell's own recording cost only."""

    def export(self, reading: Any) -> None:
        pass


def _in_process_worker(config: Any, orders: int, batch: int, results: Any) -> None:
    from actors.book_actor import BookActor
    from actors.projections import ShardReader
    from cluster.config import InstrumentRegistry, ShardMap, shard_instruments
    from cluster.storage.journal import FsyncPolicy
    from cluster.storage.shard import (
        ProjectionStorageFactory,
        ShardStorageFactory,
        shard_directory,
    )
    from protocols.messages import decode_events, encode

    registry = InstrumentRegistry.load()
    shard_map = ShardMap(config.shards, dict(registry.pins))
    grouped = shard_instruments(registry, shard_map)
    data_dir = Path(tempfile.mkdtemp(prefix="raytrade-bench-cpu-inproc-"))
    sinks = [_ListSink() for _ in range(config.shards)]
    books, readers = [], []
    for shard in range(config.shards):
        directory = shard_directory(data_dir, shard)
        projection_log = ProjectionStorageFactory(directory, shard, grouped[shard],
                                                  config.client_order_id_window)
        # readers first, as the cluster starts them: their storage must not become the writer
        readers.append([ShardReader(shard, grouped[shard], log_factory=projection_log,
                                    snapshot_every_events=config.snapshot_every_events)])
        books.append(BookActor(
            shard, grouped[shard], default_limits=config.default_limits,
            sink_factory=lambda sink=sinks[shard]: sink,
            log_factory=ShardStorageFactory(directory, FsyncPolicy(
                mode=config.fsync, interval_ms=config.fsync_interval_ms)),
            snapshot_every_events=config.snapshot_every_events,
            client_order_id_window=config.client_order_id_window,
            metrics=_Discard() if config.metrics else None,
        ))
    instruments = flow_instruments()
    account = f"inproc-{uuid.uuid4().hex[:6]}"
    rng = random.Random(account)
    shard_of = shard_map.shard_of
    spent = {"clients": 0.0, "books": 0.0, "readers": 0.0}
    clock = time.process_time  # this process, every thread (a journal writer's too)
    serial = rejected = 0
    started = time.perf_counter()
    for _ in range(orders // batch):
        at = clock()
        parts: dict[int, list[Any]] = {}
        now = time.time_ns()
        for _ in range(batch):
            serial += 1
            command = new_order(order_fields(instruments, account, serial, rng), now)
            parts.setdefault(shard_of(command.symbol), []).append(command)
        payloads = {shard: encode(part) for shard, part in parts.items()}
        built = clock()
        replies = [books[shard].apply_batch(payload) for shard, payload in payloads.items()]
        applied = clock()
        events = [decode_events(reply) for reply in replies]
        decoded = clock()
        for shard, sink in enumerate(sinks):
            for reader in readers[shard]:
                reader.on_events(sink.batches)
            sink.batches.clear()
        folded = clock()
        spent["clients"] += (built - at) + (decoded - applied)
        spent["books"] += applied - built
        spent["readers"] += folded - decoded
        rejected += sum(type(event).__name__ == "OrderRejected" for part in events
                        for event in part)
    done = serial
    results.put({"orders": done, "rejected": rejected, "seconds": time.perf_counter() - started,
                 "roles_s": spent, "data_dir": str(data_dir)})


def run_in_process(config: Any, orders: int, batch: int) -> dict[str, Any]:
    """Run the shard work in a fresh process (its GC tuning and memory stay out of this one)."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=_in_process_worker, args=(config, orders, batch, results))
    process.start()
    try:
        row: dict[str, Any] = results.get(timeout=600)
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
    return row


# ------------------------------------------------------------------------------ the run


def merge_loads(loads: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Return several runs of one load (`run_generators`' results) as one: CPU, time and
    orders summed; ``load_seconds`` is the generators' own time (the slowest per run)."""
    roles: dict[str, float] = {}
    for load in loads:
        for role, cpu in load["roles_s"].items():
            roles[role] = roles.get(role, 0.0) + cpu
    return {
        "rows": [row for load in loads for row in load["rows"]],
        "elapsed_s": sum(load["elapsed_s"] for load in loads),
        "load_seconds": sum(max(row["seconds"] for row in load["rows"]) for load in loads),
        "settled": all(load["settled"] for load in loads),
        "roles_s": roles,
        "processes": loads[-1]["processes"],
        "ended": [process for load in loads for process in load["ended"]],
    }


def per_order(used: dict[str, Any], orders: int, idle_s_per_s: float) -> dict[str, Any]:
    """Return the figures of one load: us of CPU per order, total and by role."""
    roles = used["roles_s"]
    total = sum(roles.values())
    return {
        "orders": orders,
        "elapsed_s": round(used["elapsed_s"], 2),
        "total_us_per_order": round(total * 1e6 / max(orders, 1), 1),
        "roles_us_per_order": {role: round(cpu * 1e6 / max(orders, 1), 1)
                               for role, cpu in roles.items()},
        "idle_baseline_us_per_order": round(idle_s_per_s * used["elapsed_s"] * 1e6
                                            / max(orders, 1), 1),
        "gateway_feeds_caught_up": used["settled"],
        "processes": used["processes"],
        "ended_processes": used["ended"],
    }


def print_table(report: dict[str, Any]) -> None:
    """Print the figures: one row per load, one column per role."""
    rows = [
        ("batched gRPC, us/order", report["batched_grpc"]),
        ("batched gRPC packed, us/order", report["batched_grpc_packed"]),
        ("single gRPC 200/s, us/order", report["single_grpc"]),
        *([("batched to shards, us/order", report["batched_direct"]),
           ("single to shards 200/s, us/order", report["single_direct"])]
          if "single_direct" in report else []),
        ("Python client, us/order", report["client_batched"]),
        ("in-process shard, us/order", report["in_process"]),
        ("idle, ms of CPU per s", report["idle"]),
    ]
    header = f"{'load':<30}{'total':>9}" + "".join(f"{role[:9]:>10}" for role in ROLES)
    print(header)
    print("-" * len(header))
    for label, figures in rows:
        if "roles_ms_per_s" in figures:
            total, roles = figures["total_ms_per_s"], figures["roles_ms_per_s"]
        else:
            total, roles = figures["total_us_per_order"], figures["roles_us_per_order"]
        print(f"{label:<30}{total:>9.1f}"
              + "".join(f"{roles.get(role, 0.0):>10.1f}" for role in ROLES))
    print(f"(ray = Ray daemons and idle workers; readers = risk + positions; "
          f"load average {report['machine']['load_average_at_start']} -> "
          f"{report['machine']['load_average_at_end']})")


def print_idle(idle: dict[str, Any]) -> None:
    """Print the idle cluster's CPU: per role, then per process (ms of CPU per second)."""
    seconds = idle["seconds"]
    print(f"idle, ms of CPU per s over {seconds:.1f} s: total {idle['total_ms_per_s']:.1f}")
    print("  " + "  ".join(f"{role} {cpu:.1f}" for role, cpu in idle["roles_ms_per_s"].items()
                           if cpu))
    for row in idle["processes"]:
        if row["cpu_s"]:
            print(f"  {row['pid']:>7}  {row['role']:<12}{row['name']:<40}"
                  f"{row['cpu_s'] * 1000 / seconds:>7.1f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (< 1 minute)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--idle-only", action="store_true",
                        help="measure the idle cluster (load 4) only; print every process and "
                             "write cpu_idle.json")
    parser.add_argument("--metrics", choices=("on", "off"), default="on",
                        help="actors and gateway record metrics (off: what they cost, see "
                             "bench_metrics.py)")
    parser.add_argument("--front-ends", choices=("on", "off"), default="on",
                        help="each shard also serves its own gRPC front end (loads 1b and 2b; "
                             "off: the default cluster, loads 1b and 2b skipped)")
    parser.add_argument("--idle-seconds", type=float, default=None,
                        help="how long to measure the idle cluster (default 10 s, 4 s quick)")
    args = parser.parse_args(argv)
    quick = args.quick
    batch, processes, in_flight = 1000, 2, 2
    batched_calls = 20 if quick else 150          # per process: 40k / 300k orders in all
    single_rate, single_count = 200.0, (600 if quick else 3000)
    client_batches, client_in_flight = (40 if quick else 300), 4
    idle_s = args.idle_seconds or (4.0 if quick else 10.0)
    in_process_orders = 40_000 if quick else 200_000

    from cluster.config import ClusterConfig, InstrumentRegistry

    namespace = f"bench-cpu-{uuid.uuid4().hex[:6]}"
    config = ClusterConfig(shards=2, namespace=namespace, metrics=args.metrics == "on",
                           data_dir=tempfile.mkdtemp(prefix="raytrade-bench-cpu-"))
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "platform": platform.platform(), "load_average_at_start": os.getloadavg()},
        "cluster": {"shards": config.shards, "fsync": config.fsync, "gateways": 1,
                    "metrics": config.metrics, "front_ends": args.front_ends == "on"},
        "quick": quick,
    }

    if not args.idle_only:
        print(f"(5) in-process shard work: {in_process_orders:,} orders ...", flush=True)
        in_process = run_in_process(config, in_process_orders, batch)

    from cluster.clients.ray_client import Client
    from cluster.edge.wiring import gateway_statuses, start_cluster, start_ray
    from cluster.gateway.auth import hash_token
    from cluster.gateway.config import GatewayConfig, TokenEntry
    from protocols.messages import OrderRejected

    start_ray(num_cpus=2, namespace=namespace)
    import ray

    cluster = None
    try:
        token = TokenEntry(sha256=hash_token(TOKEN), name="bench", admin=True)
        edge = GatewayConfig(port=0, tokens=[token], requests_per_second=1e12,
                             max_batch_orders=100_000, max_message_bytes=64 << 20)
        direct = args.front_ends == "on"
        cluster = start_cluster(config, InstrumentRegistry.load(), [edge],
                                front_ends=edge if direct else None)
        address = f"127.0.0.1:{gateway_statuses(cluster)[0]['address'].rpartition(':')[2]}"
        front_ends = cluster.front_ends()
        shard_symbols = [[symbol for symbol in SYMBOLS if cluster.shard_map.shard_of(symbol)
                          == shard] for shard in range(config.shards)]
        client = Client(cluster)
        meter = ClusterCpu()

        def settle() -> bool:
            """Wait until the readers (<= 60 s) and the gateway's feeds (<= 15 s) have every
            event; return whether the feeds caught up (their status rows may change shape)."""
            client.wait_for_readers(timeout_s=60)
            targets = [row.next_seq for row in client.status()]
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    feeds = gateway_statuses(cluster)[0]["feeds"]
                    if all(feed["next_seq"] >= targets[feed["shard"]] for feed in feeds):
                        return True
                except (KeyError, IndexError, TypeError):
                    return False
                time.sleep(0.05)
            return False

        time.sleep(3.0)  # let start-up work (first pings, worker prestart) finish
        print(f"(4) idle cluster, {idle_s:.0f} s ...", flush=True)
        before, started = meter.read(), time.perf_counter()
        time.sleep(idle_s)
        idle_used = ClusterCpu.used(before, meter.read())
        idle_elapsed = time.perf_counter() - started
        idle_total_s = sum(idle_used["roles_s"].values())
        report["idle"] = {
            "seconds": round(idle_elapsed, 2),
            "total_ms_per_s": round(idle_total_s * 1000 / idle_elapsed, 1),
            "roles_ms_per_s": {role: round(cpu * 1000 / idle_elapsed, 1)
                               for role, cpu in idle_used["roles_s"].items()},
            "processes": idle_used["processes"],
        }
        idle_s_per_s = idle_total_s / idle_elapsed
        if args.idle_only:
            print_idle(report["idle"])
            args.output.mkdir(parents=True, exist_ok=True)
            path = args.output / "cpu_idle.json"
            path.write_text(json.dumps(report, indent=2) + "\n")
            print(f"wrote {path}")
            return 0

        run = uuid.uuid4().hex[:6]
        # typed and packed in ABBA order, half the calls each time: a machine that slows down
        # or speeds up during the run (seen here: 10-20% within minutes) biases neither
        print(f"(1) batched gRPC, typed and packed (ABBA): {processes} processes x {in_flight} "
              f"in flight x {batch} orders x {batched_calls // 2} calls per leg ...", flush=True)
        legs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
        for leg, packed in enumerate((False, True, True, False)):
            legs[packed].append(run_generators(meter, settle, [
                (_batched_worker, (address, f"{'packed' if packed else 'batched'}{index}-"
                                   f"{leg}-{run}", batched_calls // 2, batch, in_flight, 3,
                                   packed, SYMBOLS))
                for index in range(processes)
            ], timeout_s=300))
        for packed, key in ((False, "batched_grpc"), (True, "batched_grpc_packed")):
            used = merge_loads(legs[packed])
            orders = sum(row["orders"] for row in used["rows"])
            report[key] = {
                **per_order(used, orders, idle_s_per_s),
                "rejected": sum(row["rejected"] for row in used["rows"]),
                "orders_per_s": round(orders / used["load_seconds"]),
                "legs_us_per_order": [
                    per_order(one, sum(row["orders"] for row in one["rows"]),
                              idle_s_per_s)["total_us_per_order"] for one in legs[packed]],
            }

        print(f"(2) single gRPC: {single_count} orders at {single_rate:.0f}/s open loop ...",
              flush=True)
        used = run_generators(meter, settle, [
            (_single_worker, (address, f"single-{run}", single_rate, single_count, 100,
                              SYMBOLS)),
        ], timeout_s=120)
        row = used["rows"][0]
        report["single_grpc"] = {
            **per_order(used, row["orders"], idle_s_per_s),
            **{key: row[key] for key in ("errors", "achieved_rate", "p50_ms", "p99_ms",
                                         "p999_ms")},
            "rate": single_rate,
        }

        # the same loads straight to each shard's own front end (cluster.gateway.direct): one
        # load generator per shard, sending that shard's symbols only
        if direct:
            print(f"(1b) batched gRPC to the shards' front ends, packed: {config.shards} processes "
                  f"x {in_flight} in flight x {batch} orders x {batched_calls // 2} calls ...",
                  flush=True)
            used = run_generators(meter, settle, [
                (_batched_worker, (front_ends[shard], f"direct{shard}-{run}", batched_calls // 2,
                                   batch, in_flight, 3, True, shard_symbols[shard]))
                for shard in range(config.shards)
            ], timeout_s=300)
            orders = sum(row["orders"] for row in used["rows"])
            report["batched_direct"] = {
                **per_order(used, orders, idle_s_per_s),
                "rejected": sum(row["rejected"] for row in used["rows"]),
                "orders_per_s": round(orders / max(row["seconds"] for row in used["rows"])),
            }
            print(f"(2b) single gRPC to the shards' front ends: {single_count} orders at "
                  f"{single_rate:.0f}/s open loop, {single_rate / config.shards:.0f}/s per "
                  f"shard ...", flush=True)
            used = run_generators(meter, settle, [
                (_single_worker, (front_ends[shard], f"single-direct{shard}-{run}",
                                  single_rate / config.shards, single_count // config.shards, 50,
                                  shard_symbols[shard]))
                for shard in range(config.shards)
            ], timeout_s=120)
            rows = used["rows"]
            report["single_direct"] = {
                **per_order(used, sum(row["orders"] for row in rows), idle_s_per_s),
                "errors": sum(row["errors"] for row in rows),
                "achieved_rate": round(sum(row["achieved_rate"] for row in rows), 1),
                # each generator's own percentiles; the worse of the two is the headline
                **{key: max(row[key] for row in rows) for key in ("p50_ms", "p99_ms", "p999_ms")},
                "per_shard": [{key: row[key] for key in ("p50_ms", "p99_ms", "achieved_rate")}
                              for row in rows],
                "rate": single_rate,
            }

        print(f"(3) Python client: {client_batches} batches of {batch}, {client_in_flight} in "
              f"flight ...", flush=True)
        instruments = flow_instruments()
        account = f"client-{run}"
        rng = random.Random(account)
        serial = 0

        def client_batch() -> list[Any]:
            nonlocal serial
            now = time.time_ns()
            commands = []
            for _ in range(batch):
                serial += 1
                commands.append(new_order(order_fields(instruments, account, serial, rng), now))
            return commands

        def pipeline(count: int) -> int:
            rejected = sent = 0
            pending: list[Any] = []
            while sent < count or pending:
                while len(pending) < client_in_flight and sent < count:
                    pending.append(client.submit_async(client_batch()))
                    sent += 1
                rejected += sum(isinstance(event, OrderRejected)
                                for event in pending.pop(0).result(timeout_s=60))
            return rejected

        pipeline(3)
        settle()
        before, started = meter.read(), time.perf_counter()
        client_rejected = pipeline(client_batches)
        seconds = time.perf_counter() - started
        settled = settle()
        used = {**ClusterCpu.used(before, meter.read()),
                "elapsed_s": time.perf_counter() - started, "settled": settled}
        roles = used["roles_s"]
        roles["clients"], roles["driver"] = roles["driver"], 0.0  # the driver is the client
        orders = client_batches * batch
        report["client_batched"] = {**per_order(used, orders, idle_s_per_s),
                                    "in_flight": client_in_flight,
                                    "rejected": client_rejected,
                                    "orders_per_s": round(orders / seconds)}
    finally:
        if cluster is not None:
            cluster.stop()
        ray.shutdown()

    spent = in_process["roles_s"]
    report["in_process"] = {
        "orders": in_process["orders"],
        "rejected": in_process["rejected"],
        "total_us_per_order": round(sum(spent.values()) * 1e6 / in_process["orders"], 1),
        "roles_us_per_order": {role: round(cpu * 1e6 / in_process["orders"], 1)
                               for role, cpu in spent.items()},
        "note": "BookActor per shard with the cluster's journal policy, risk and position "
                "read models folding its events, the client's build/encode/decode; no Ray, "
                "no gRPC, no gateway",
    }
    report["machine"]["load_average_at_end"] = os.getloadavg()
    headline = {
        "batched_grpc_us_per_order": report["batched_grpc"]["total_us_per_order"],
        "batched_grpc_packed_us_per_order": report["batched_grpc_packed"]["total_us_per_order"],
        "single_grpc_us_per_order": report["single_grpc"]["total_us_per_order"],
        **({"batched_direct_us_per_order": report["batched_direct"]["total_us_per_order"],
            "single_direct_us_per_order": report["single_direct"]["total_us_per_order"]}
           if "single_direct" in report else {}),
        "client_batched_us_per_order": report["client_batched"]["total_us_per_order"],
        "idle_ms_per_s": report["idle"]["total_ms_per_s"],
        "in_process_us_per_order": report["in_process"]["total_us_per_order"],
    }
    report = {**headline, **report}
    print()
    print_table(report)
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / "cpu.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
