"""End-to-end gateway benchmark: client -> gRPC gateway -> shards (risk + book) -> ack.

Starts a private local Ray, a raytrade cluster and one gateway, then measures on this
machine (load generators included, as they share its cores):

(a) throughput: several client processes send ``SubmitOrders`` batches (built per call, acks
    read per call) with a few calls in flight each, for a fixed time; orders/s counted from
    acknowledged orders;
(b) latency under open-loop load: one client sends single ``SubmitOrder`` calls at a fixed
    rate, each at its scheduled time whether or not earlier ones answered (no coordinated
    omission), and measures from the scheduled time to the answer; p50/p99/p99.9 per rate.

Writes ``benchmarks/results/gateway.json`` and ``gateway_latency.png`` (latency vs load). Its
summary keys, derived from the figures beside them: ``batched_orders_per_s`` (from (a)) and
``single``, one ``{rate, p50_ms, p99_ms, p999_ms, achieved_rate}`` per rate of (b).

    python benchmarks/bench_gateway.py                      # the full run (~2 minutes)
    python benchmarks/bench_gateway.py --quick              # a smoke run
    python benchmarks/bench_gateway.py --rates 250 500 --batch 2000 --processes 3
    python benchmarks/bench_gateway.py --replot benchmarks/results/gateway.json  # no run:
                                          # redraw the plot, (re)derive the summary keys
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
TOKEN = "bench-token"
SYMBOLS = {"AAPL": 18950, "BTC-USD": 9500000, "MSFT": 41500, "NVDA": 12000}
"""Two symbols per shard with 2 shards (AAPL and BTC-USD: shard 0; MSFT and NVDA: shard 1)."""


def cpu_seconds(pid: int) -> float:
    """Return the CPU time (user + system) a process has used, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds used by the cluster's processes (by role) between two readings."""

    def __init__(self, roles: dict[str, list[int]]) -> None:
        self.roles = roles
        self.start = self.read()

    def read(self) -> dict[str, float]:
        return {role: sum(cpu_seconds(pid) for pid in pids) for role, pids in self.roles.items()}

    def used(self) -> dict[str, float]:
        now = self.read()
        return {role: round(now[role] - self.start[role], 3) for role in self.roles}


def memory_mb(pid: int) -> dict[str, float]:
    """Return a process's resident memory now and its peak (VmRSS, VmHWM) in MB, from /proc."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            name = "rss_mb" if key == "VmRSS" else "peak_mb"
            found[name] = round(int(value.split()[0]) / 1024, 1)
    return found


def run_refused_burst(address: str, batches: int, orders: int) -> dict[str, Any]:
    """Send ``batches`` SubmitOrders of ``orders`` orders whose last order names an unknown
    symbol, so the gateway decodes each whole batch and refuses it (INVALID_ARGUMENT)."""
    import grpc

    from protocols.generated import trading_pb2 as pb
    from protocols.generated import trading_pb2_grpc as pb_grpc

    channel = grpc.insecure_channel(address, options=[
        ("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)
    ])
    stub = pb_grpc.TradingServiceStub(channel)
    metadata = (("authorization", f"Bearer {TOKEN}"),)
    refused = 0
    for batch in range(batches):
        request = pb.SubmitOrdersRequest()
        for index in range(orders):
            request.orders.add(
                account=f"burst-{batch}", client_order_id=f"burst-{batch}-{index}",
                symbol="AAPL" if index < orders - 1 else "NO-SUCH-SYMBOL",
                side=pb.SIDE_BUY, order_type=pb.ORDER_TYPE_LIMIT, quantity=1, price=18950,
            )
        try:
            stub.SubmitOrders(request, metadata=metadata, timeout=120)
        except grpc.RpcError as error:
            refused += error.code() == grpc.StatusCode.INVALID_ARGUMENT
    channel.close()
    return {"batches": batches, "orders_per_batch": orders, "refused": refused}


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


# ------------------------------------------------------------------------------ (a) throughput


def _throughput_worker(address: str, account: str, batch: int, in_flight: int, seconds: float,
                       seed: int, results: Any) -> None:
    import grpc

    from protocols.generated import trading_pb2 as pb
    from protocols.generated import trading_pb2_grpc as pb_grpc

    channel = grpc.insecure_channel(address, options=[
        ("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)
    ])
    stub = pb_grpc.TradingServiceStub(channel)
    metadata = (("authorization", f"Bearer {TOKEN}"),)
    rng = random.Random(seed)
    symbols = list(SYMBOLS.items())
    serial = 0

    def build() -> pb.SubmitOrdersRequest:
        nonlocal serial
        request = pb.SubmitOrdersRequest()
        orders = request.orders
        for _ in range(batch):
            serial += 1
            symbol, reference = symbols[serial % len(symbols)]
            buy = rng.random() < 0.5
            orders.add(
                account=account, client_order_id=f"{account}-{serial}", symbol=symbol,
                side=pb.SIDE_BUY if buy else pb.SIDE_SELL, order_type=pb.ORDER_TYPE_LIMIT,
                time_in_force=pb.TIME_IN_FORCE_IOC if serial % 4 == 0 else pb.TIME_IN_FORCE_GTC,
                quantity=1 + serial % 5, price=reference + rng.randint(-5, 5),
            )
        return request

    grpc.channel_ready_future(channel).result(timeout=30)
    acknowledged = 0
    rejected = 0
    latencies: list[float] = []
    pending: list[tuple[float, Any]] = []
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline or pending:
        while len(pending) < in_flight and time.perf_counter() < deadline:
            pending.append((time.perf_counter(),
                            stub.SubmitOrders.future(build(), metadata=metadata, timeout=60)))
        sent_at, future = pending.pop(0)
        reply = future.result()
        latencies.append(time.perf_counter() - sent_at)
        acknowledged += len(reply.order_ids)
        rejected += len(reply.rejections)
    elapsed = time.perf_counter() - started
    results.put({"orders": acknowledged, "rejected": rejected, "elapsed_s": elapsed,
                 "call_latencies_s": latencies, "cpu_s": time.process_time()})
    channel.close()


def run_throughput(address: str, processes: int, batch: int, in_flight: int, seconds: float,
                   meter: CpuMeter) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    run = uuid.uuid4().hex[:6]
    workers = [
        context.Process(target=_throughput_worker, args=(
            address, f"bench{index}-{run}", batch, in_flight, seconds, index, results))
        for index in range(processes)
    ]
    for worker in workers:
        worker.start()
    rows = [results.get(timeout=seconds + 120) for _ in workers]
    for worker in workers:
        worker.join()
    cpu = meter.used()
    cpu["clients"] = round(sum(row["cpu_s"] for row in rows), 3)
    orders = sum(row["orders"] for row in rows)
    elapsed = max(row["elapsed_s"] for row in rows)
    calls = sorted(latency for row in rows for latency in row["call_latencies_s"])
    return {
        "processes": processes,
        "batch_orders": batch,
        "in_flight_per_process": in_flight,
        "seconds": round(elapsed, 2),
        "orders": orders,
        "rejected": sum(row["rejected"] for row in rows),
        "orders_per_s": round(orders / elapsed),
        "call_p50_ms": round(percentile(calls, 0.5) * 1000, 2),
        "call_p99_ms": round(percentile(calls, 0.99) * 1000, 2),
        "cpu_s": cpu,
        "cpu_ms_per_1000_orders": {
            role: round(used * 1e6 / max(orders, 1), 2) for role, used in cpu.items()
        },
    }


# ------------------------------------------------------------------------------ (b) latency


async def _open_loop(address: str, rate: float, seconds: float, account: str
                     ) -> dict[str, Any]:
    import grpc

    from protocols.generated import trading_pb2 as pb
    from protocols.generated import trading_pb2_grpc as pb_grpc

    channel = grpc.aio.insecure_channel(address)
    stub = pb_grpc.TradingServiceStub(channel)
    metadata = (("authorization", f"Bearer {TOKEN}"),)
    await channel.channel_ready()
    symbols = list(SYMBOLS.items())
    latencies: list[float] = []
    errors = 0
    count = int(rate * seconds)
    loop = asyncio.get_running_loop()

    async def one(index: int, scheduled: float) -> None:
        nonlocal errors
        symbol, reference = symbols[index % len(symbols)]
        request = pb.NewOrderRequest(
            account=account, client_order_id=f"{account}-{index}", symbol=symbol,
            side=pb.SIDE_BUY if index % 2 else pb.SIDE_SELL, order_type=pb.ORDER_TYPE_LIMIT,
            quantity=1, price=reference + (index % 7) - 3,
        )
        try:
            await stub.SubmitOrder(request, metadata=metadata, timeout=10)
            latencies.append(loop.time() - scheduled)
        except grpc.aio.AioRpcError:
            errors += 1

    tasks = []
    warmup = int(rate * 0.5)
    start = loop.time() + 0.05
    for index in range(count + warmup):
        scheduled = start + index / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(one(index, scheduled))
        if index >= warmup:
            tasks.append(task)
    await asyncio.gather(*tasks)
    await channel.close()
    ordered = sorted(latencies[warmup:] if len(latencies) > warmup else latencies)
    achieved = len(ordered) / seconds
    return {
        "target_rate": rate,
        "achieved_rate": round(achieved, 1),
        "requests": len(ordered),
        "errors": errors,
        "p50_ms": round(percentile(ordered, 0.5) * 1000, 3),
        "p90_ms": round(percentile(ordered, 0.9) * 1000, 3),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 3),
        "p999_ms": round(percentile(ordered, 0.999) * 1000, 3),
        "max_ms": round((ordered[-1] if ordered else float("nan")) * 1000, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3) if ordered else None,
    }


def _latency_worker(address: str, rate: float, seconds: float, account: str, results: Any
                    ) -> None:
    results.put(asyncio.run(_open_loop(address, rate, seconds, account)))


def run_latency(address: str, rate: float, seconds: float, meter: CpuMeter) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    account = f"lat-{int(rate)}-{uuid.uuid4().hex[:6]}"
    worker = context.Process(target=_latency_worker,
                             args=(address, rate, seconds, account, results))
    worker.start()
    row: dict[str, Any] = results.get(timeout=seconds + 120)
    worker.join()
    row["cpu_ms_per_order"] = {
        role: round(used * 1000 / max(row["requests"], 1), 3)
        for role, used in meter.used().items()
    }
    return row


# ------------------------------------------------------------------------------ the run


def plot(path: Path, rows: list[dict[str, Any]], throughput: dict[str, Any] | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    rates = [row["achieved_rate"] for row in rows]
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9")):
        axes.plot(rates, [row[key] for row in rows], marker="o", label=label)
    axes.axhline(2, color="grey", linestyle=":", linewidth=1, label="target p50 at 500/s")
    axes.axhline(5, color="grey", linestyle="--", linewidth=1, label="target p99 at 500/s")
    axes.set_yscale("log")
    axes.set_xlabel("single orders per second (open loop, achieved)")
    axes.set_ylabel("latency from scheduled send to ack (ms)")
    title = "raytrade gateway: SubmitOrder latency vs load"
    if throughput:
        title += f"\nbatched: {throughput['orders_per_s']:,} orders/s"
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """Return the report's summary keys, derived from its throughput and latency figures."""
    throughput = report.get("throughput")
    return {
        "batched_orders_per_s": throughput["orders_per_s"] if throughput else None,  # skipped
        "single": [
            {"rate": row["target_rate"], "p50_ms": row["p50_ms"], "p99_ms": row["p99_ms"],
             "p999_ms": row["p999_ms"], "achieved_rate": row["achieved_rate"]}
            for row in report["latency"]
        ],
    }


def with_summary(report: dict[str, Any]) -> dict[str, Any]:
    """Return the report with its summary keys (re)derived, first."""
    fresh = summary(report)
    return {**fresh, **{key: value for key, value in report.items() if key not in fresh}}


def replot(path: Path) -> None:
    """Redraw the plot from a results JSON file, and (re)write its summary keys."""
    report = json.loads(path.read_text())
    path.write_text(json.dumps(with_summary(report), indent=2, default=str))
    plot(path.with_name("gateway_latency.png"), report["latency"], report["throughput"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2, help="throughput client processes")
    parser.add_argument("--batch", type=int, default=1000, help="orders per SubmitOrders call")
    parser.add_argument("--in-flight", type=int, default=2, help="calls in flight per process")
    parser.add_argument("--seconds", type=float, default=15.0, help="throughput run length")
    parser.add_argument("--rates", type=float, nargs="*", default=[100, 250, 500, 750, 1000])
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--fsync", choices=["batch", "interval", "none"], default="batch")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="short run for a smoke test")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--replot", type=Path, default=None,
                        help="only redraw the plot from this results JSON")
    args = parser.parse_args(argv)
    if args.replot is not None:
        replot(args.replot)
        return 0
    if args.quick:
        args.seconds, args.latency_seconds, args.rates = 4.0, 3.0, [100, 500]

    from cluster.config import ClusterConfig, InstrumentRegistry
    from cluster.edge.wiring import start_cluster, start_gateways, start_ray
    from cluster.gateway.auth import hash_token
    from cluster.gateway.config import GatewayConfig, TokenEntry

    namespace = f"bench-gateway-{uuid.uuid4().hex[:6]}"
    data_dir = tempfile.mkdtemp(prefix="raytrade-bench-gateway-")
    start_ray(num_cpus=2, namespace=namespace)
    cluster = start_cluster(
        ClusterConfig(shards=args.shards, namespace=namespace, data_dir=data_dir,
                      fsync=args.fsync),
        InstrumentRegistry.load(),
    )
    token = TokenEntry(sha256=hash_token(TOKEN), name="bench", admin=True)
    gateways = start_gateways(cluster, [GatewayConfig(
        port=0, tokens=[token], requests_per_second=1e12, max_batch_orders=100_000,
        max_message_bytes=64 << 20,
    )])
    address = f"127.0.0.1:{gateways.ports[0]}"
    import ray

    from cluster.edge.wiring import reader_name

    def pids(names: list[str]) -> list[int]:
        return [int(ray.get(cluster.handle(name).pid.remote())) for name in names]

    shards = range(args.shards)
    roles = {
        "gateway": [int(ray.get(gateways.handle(gateways.names[0]).pid.remote()))],
        "books": pids([f"book-{k}" for k in shards]),
        "readers": pids([reader_name(k) for k in shards]),
    }
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "platform": platform.platform(), "load_average_at_start": os.getloadavg()},
        "cluster": {"shards": args.shards, "fsync": args.fsync},
    }
    gateway_pid = roles["gateway"][0]
    memory: dict[str, Any] = {}
    report["gateway_memory_mb"] = memory
    try:
        time.sleep(1.0)
        memory["at_start"] = memory_mb(gateway_pid)
        throughput = None
        if not args.skip_throughput:
            print(f"(a) throughput: {args.processes} processes x {args.in_flight} in flight x "
                  f"{args.batch} orders per call, {args.seconds:.0f} s ...", flush=True)
            throughput = run_throughput(address, args.processes, args.batch, args.in_flight,
                                        args.seconds, CpuMeter(roles))
            print(f"    {throughput['orders_per_s']:,} orders/s "
                  f"(call p50 {throughput['call_p50_ms']} ms); CPU ms per 1000 orders: "
                  f"{throughput['cpu_ms_per_1000_orders']}", flush=True)
            time.sleep(3.0)  # let the readers (risk and positions) drain before timing latency
            memory["after_throughput"] = memory_mb(gateway_pid)
            burst = run_refused_burst(address, 2 if args.quick else 6, 100_000)
            time.sleep(1.0)
            memory["after_refused_burst"] = {**memory_mb(gateway_pid), **burst}
            print(f"    gateway memory (MB): {memory}", flush=True)
        report["throughput"] = throughput
        rows = []
        for rate in args.rates:
            row = run_latency(address, rate, args.latency_seconds, CpuMeter(roles))
            rows.append(row)
            print(f"(b) {rate:>6.0f}/s: achieved {row['achieved_rate']}/s p50 {row['p50_ms']} "
                  f"ms p99 {row['p99_ms']} ms p99.9 {row['p999_ms']} ms "
                  f"errors {row['errors']}", flush=True)
        report["latency"] = rows
        memory["at_end"] = memory_mb(gateway_pid)
        report["gateway"] = gateways.status()[0]
    finally:
        gateways.stop()
        cluster.stop()
        ray.shutdown()
    report["machine"]["load_average_at_end"] = os.getloadavg()
    report = with_summary(report)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "gateway.json").write_text(json.dumps(report, indent=2, default=str))
    plot(args.output / "gateway_latency.png", report["latency"], report["throughput"])
    print(f"wrote {args.output / 'gateway.json'} and {args.output / 'gateway_latency.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
