"""Draw panels of the Grafana dashboard from a real run: docs/images/dashboard.png.

Grafana is not installable here, so this does what it would do with the dashboard, with a real
Prometheus in between. It starts a private local Ray, a 2-shard raytrade cluster and one
gateway with ``/metrics`` on, writes the file_sd targets (`write_prometheus_targets`, what
``raytrade prometheus-targets`` writes) and starts Debian's ``prometheus`` on loopback with the
shipped scrape configuration (cluster/deploy/prometheus/prometheus.yml, scrape interval
shortened to 1 s; Ray's workers report every second). Then it drives a bounded, seeded order
flow over gRPC:

* two accounts send batches and single orders near each symbol's reference price, one order
  in four IOC (trades), and cancel orders they saw rest (some have filled meanwhile:
  ORDER_NOT_OPEN): first `WARMUP_S` at ~150 orders/s, not drawn (the dashboard's rates and
  quantiles are over 1-minute windows: a fresh series shows a ramp that is not in the load),
  then ``--seconds`` ramping from ~150 to ~600 orders/s and back;
* shard rejects of known reasons: orders over the accounts' ``max_order_quantity``, post-only
  buys that would take, cancels of order ids that never existed;
* gateway refusals: single orders for NVDA while it is halted (from 25% to 45% of the run;
  FAILED_PRECONDITION, the batches leave it out meanwhile), an unknown symbol
  (INVALID_ARGUMENT) and a third account's bursts over the gateway's per-account rate
  (RESOURCE_EXHAUSTED) at 50% and 80%;
* reader 1 is killed twice (SIGKILL, at 30% and 65%): restarts for its supervisor to count,
  and a lag while it recovers.

Afterwards it runs ``query_range`` on Prometheus's HTTP API for the expressions of a handful of
the dashboard's panels (`PANELS`, read from cluster/deploy/grafana/raytrade.json, never
retyped) and draws them with matplotlib, one panel per dashboard panel with its title and
legend format, the flow's events marked. It prints what the client was told beside what
Prometheus counted, stops what it started (Prometheus by its pid, the cluster, Ray) and
removes its temporary folders.

    python benchmarks/plot_dashboard.py                  # 45 s + 75 s of flow, < 3 min in all
    python benchmarks/plot_dashboard.py --seconds 30     # a shorter run
    python benchmarks/plot_dashboard.py --output /tmp/dashboard.png --seed 7

Needs Debian's ``prometheus`` on PATH (``apt-get install prometheus``) and matplotlib (the
``bench`` extra).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "cluster" / "deploy" / "grafana" / "raytrade.json"
OUTPUT = ROOT / "docs" / "images" / "dashboard.png"
TOKEN = "dashboard-token"
ACCOUNTS = ("alice", "bob")
BURST_ACCOUNT = "carol"
SYMBOLS = ("AAPL", "MSFT", "NVDA", "BTC-USD")
HALTED = "NVDA"
KILLED_READER = 1
TICK_S = 0.25
MAX_ORDER_QUANTITY = 20
"""The accounts' limit; one order in 150 asks for more (RISK_MAX_ORDER_QUANTITY)."""
GATEWAY_RATE = 1000.0
"""The gateway's per-account orders per second: the flow's accounts stay under it, the burst
account's second batch of `BURST_ORDERS` in a row does not."""
BURST_ORDERS = 600
WARMUP_S = 45.0

PANELS: tuple[tuple[str, str, bool], ...] = (
    ("Orders decided per second, by outcome", "orders / s", False),
    ("Rejects per second, by reason", "rejects / s", False),
    ("Trades and traded quantity per second", "per second (trades; lots)", False),
    # refusals are a few a minute beside tens of OK calls a second: on a linear axis, zero
    ("Gateway RPCs per second, by status", "RPCs / s (log)", True),
    ("Gateway RPC latency p50 / p99, by method", "milliseconds (log)", True),
    ("Latency p99 per stage", "milliseconds (log)", True),
    ("Reader lag (events behind the journal), by shard", "events", False),
    ("Actor restarts and escalations (last hour)", "restarts in the last hour", False),
)
"""Dashboard panels to draw (by title, as in the dashboard JSON): y-axis label, log scale."""


# ------------------------------------------------------------------------------ Prometheus


def wait_for_rejects(base: str, wanted: dict[str, int], timeout_s: float) -> dict[str, int]:
    """Poll the shards' rejects by code until they equal ``wanted`` or ``timeout_s`` passes;
    return the last answer (`cluster.edge.prometheus.wait_for` says why numbers come late)."""
    from cluster.edge.prometheus import query, wait_for

    def counted(result: list[dict[str, Any]]) -> dict[str, int]:
        return {row["metric"].get("code", ""): round(float(row["value"][1])) for row in result}

    expression = 'sum by (code) (ray_raytrade_orders_total{outcome="rejected"})'
    try:
        return counted(wait_for(base, expression, lambda result: counted(result) == wanted,
                                timeout_s=timeout_s, every_s=1.0))
    except TimeoutError:
        return counted(query(base, expression))


# ------------------------------------------------------------------------------ the flow


class Flow:
    """The seeded order flow, tick by tick; counts what the client was told."""

    def __init__(self, client: Any, cluster: Any, seconds: float, seed: int) -> None:
        from cluster.config import InstrumentRegistry

        self.client = client
        self.cluster = cluster
        self.seconds = seconds
        self.rng = random.Random(seed)
        registry = {item.symbol: item for item in InstrumentRegistry.load().instruments}
        self.instruments = [registry[symbol] for symbol in SYMBOLS]
        self.reference: dict[str, int] = {}
        """Symbol -> reference price: the flow's prices are a few ticks around it."""
        for instrument in self.instruments:
            if instrument.reference_price is None:
                raise RuntimeError(f"{instrument.symbol} has no reference price")
            self.reference[instrument.symbol] = instrument.reference_price
        self.active = list(self.instruments)
        """What the batches trade: a batch with a halted symbol is refused whole by the
        gateway (FAILED_PRECONDITION), so while one is halted the batches leave it out, as a
        client would; single orders still try it."""
        self.serial = 0
        self.resting: deque[tuple[str, str, int]] = deque(maxlen=5000)
        """(account, symbol, order id) of orders seen resting, oldest first."""
        self.rejects: Counter[str] = Counter()
        """Reject code -> orders and cancels the shards rejected (as the client was told)."""
        self.refused: Counter[str] = Counter()
        """Error class -> calls the gateway refused."""
        self.orders = 0
        self.marks: list[tuple[float, str]] = []
        """(seconds since the ramp began, what happened)."""

    def rate(self, at_s: float) -> float:
        """Orders per second at ``at_s``: 150 during the warm-up (``at_s < 0``), rising to
        600 at mid-run, then falling."""
        return 150.0 + 450.0 * max(0.0, 1.0 - abs(2.0 * at_s / self.seconds - 1.0))

    def _order(self, account: str, **override: Any) -> Any:
        from cluster.clients.grpc_client import new_order

        self.serial += 1
        instrument = self.active[self.serial % len(self.active)]
        fields: dict[str, Any] = {
            "symbol": instrument.symbol,
            "side": "buy" if self.rng.random() < 0.5 else "sell",
            "quantity": (1 + self.serial % 5) * instrument.lot_size,
            "price": (self.reference[instrument.symbol]
                      + self.rng.randint(-5, 5) * instrument.tick_size),
            "time_in_force": "ioc" if self.serial % 4 == 0 else "gtc",
        }
        if self.serial % 150 == 0:
            fields["quantity"] = (MAX_ORDER_QUANTITY + 30) * instrument.lot_size
        fields.update(override)
        symbol, side, quantity, price = (fields.pop(key)
                                         for key in ("symbol", "side", "quantity", "price"))
        return new_order(symbol, side, quantity, price, account=account,
                         client_order_id=f"{account}-{self.serial}", **fields)

    def _reject_name(self, code: int) -> str:
        from protocols.generated import trading_pb2 as pb

        return str(pb.RejectCode.Name(code)).removeprefix("REJECT_CODE_")

    def _batch(self, orders: list[Any]) -> None:
        from protocols.errors import RaytradeError

        try:
            reply = self.client.submit_orders(orders)
        except RaytradeError as error:
            self.refused[type(error).__name__] += 1
            return
        self.orders += len(orders)
        for rejection in reply.rejections:
            self.rejects[self._reject_name(rejection.code)] += 1
        for order, order_id, open_quantity in zip(orders, reply.order_ids,
                                                  reply.open_quantities, strict=True):
            if order_id and open_quantity:
                self.resting.append((order.account, order.symbol, order_id))

    def _single(self, call: Any, *args: Any, **options: Any) -> None:
        """Make a single order or cancel call; count its reject, or the gateway's refusal
        (e.g. an order for a halted symbol: FAILED_PRECONDITION)."""
        from protocols.errors import RaytradeError
        from protocols.generated import trading_pb2 as pb

        try:
            reports = call(*args, **options)
        except RaytradeError as error:
            self.refused[type(error).__name__] += 1
            return
        for report in reports:
            if report.type == pb.EXECUTION_TYPE_REJECTED:
                self.rejects[self._reject_name(report.reject_code)] += 1

    def _events(self) -> list[tuple[float, str, Any]]:
        from protocols.errors import RaytradeError

        def unknown_symbol() -> None:
            try:
                self.client.submit_order("NOPE", "buy", 1, price=100, account=ACCOUNTS[0])
            except RaytradeError as error:
                self.refused[type(error).__name__] += 1

        def burst() -> None:
            for _ in range(2):  # the second in a row is over the account's rate
                self._batch([self._order(BURST_ACCOUNT) for _ in range(BURST_ORDERS)])

        def halt(halted: bool) -> None:
            self.client.halt(HALTED, halted=halted)
            self.active = [instrument for instrument in self.instruments
                           if instrument.symbol != HALTED or not halted]

        def kill_reader() -> None:
            print("  (Ray reports this worker's death: expected)", flush=True)
            pid = self.cluster.reader(KILLED_READER).pid().result(30)
            os.kill(pid, signal.SIGKILL)  # a worker of the Ray this script started

        return sorted([
            (0.10, "unknown symbol", unknown_symbol),
            (0.25, f"{HALTED} halted", lambda: halt(True)),
            (0.30, f"reader-{KILLED_READER} killed", kill_reader),
            (0.45, f"{HALTED} resumed", lambda: halt(False)),
            (0.50, "rate-limit burst", burst),
            (0.55, "unknown symbol", unknown_symbol),
            (0.65, f"reader-{KILLED_READER} killed", kill_reader),
            (0.80, "rate-limit burst", burst),
            (0.90, "unknown symbol", unknown_symbol),
        ], key=lambda event: event[0])

    def run(self) -> float:
        """Send the warm-up and the flow; return the start of the ramp (Unix seconds)."""
        from actors.core.engine import ORDER_ID_SHARD_BITS

        for account in ACCOUNTS:
            self.client.set_risk_limits(account, max_order_quantity=MAX_ORDER_QUANTITY)
        events = self._events()
        started_unix, started = time.time() + WARMUP_S, time.monotonic() + WARMUP_S
        ticks = int((WARMUP_S + self.seconds) / TICK_S)
        deadline = started + 1.5 * self.seconds + 10  # on a loaded machine, stay bounded
        next_report = -WARMUP_S + 10.0
        for tick in range(ticks):
            at_s = tick * TICK_S - WARMUP_S
            delay = started + at_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif time.monotonic() > deadline:
                print(f"  the flow fell behind; stopped at {at_s:.0f} s", flush=True)
                break
            while events and events[0][0] * self.seconds <= at_s:
                _, what, action = events.pop(0)
                self.marks.append((time.monotonic() - started, what))
                action()
                print(f"  {at_s:5.1f} s  {what}", flush=True)
            per_account = max(1, round(self.rate(at_s) * TICK_S / len(ACCOUNTS)))
            for account in ACCOUNTS:
                self._batch([self._order(account) for _ in range(per_account)])
            # single orders, a post-only buy at the top of the band (it would take), cancels
            self._single(self.client.submit, self._order(ACCOUNTS[tick % 2]))
            instrument = self.instruments[tick % len(self.instruments)]
            self._single(self.client.submit, self._order(
                ACCOUNTS[0], symbol=instrument.symbol, side="buy", quantity=1,
                price=self.reference[instrument.symbol] + 5 * instrument.tick_size,
                time_in_force="gtc", post_only=True))
            for _ in range(min(2, len(self.resting))):
                account, symbol, order_id = self.resting.popleft()
                self._single(self.client.cancel_order, symbol, order_id, account=account)
            if tick % 4 == 0:  # an order id that never existed, on the symbol's own shard
                shard = self.cluster.shard_map.shard_of(instrument.symbol)
                never = (shard << ORDER_ID_SHARD_BITS) + 10**9 + tick
                self._single(self.client.cancel_order, instrument.symbol, never,
                             account=ACCOUNTS[0])
            if at_s >= next_report:
                next_report += 10.0
                print(f"  {at_s:5.1f} s  {self.orders:,} orders sent, "
                      f"{sum(self.rejects.values()):,} rejected", flush=True)
        return started_unix


# ------------------------------------------------------------------------------ the picture


def _legend(template: str, labels: dict[str, str]) -> str:
    """Apply a Grafana ``legendFormat`` (``{{label}}``) to a series' labels."""
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda found: labels.get(found.group(1), ""),
                  template).strip() or "value"


def collect(base: str, dashboard: dict[str, Any], start_s: float, end_s: float
            ) -> list[tuple[dict[str, Any], list[tuple[str, list[float], list[float]]]]]:
    """Run ``query_range`` for every target of the chosen panels; return each panel with its
    series as (legend, seconds since ``start_s``, values)."""
    from cluster.edge.prometheus import query_range

    by_title = {panel["title"]: panel for panel in dashboard["panels"]}
    missing = [title for title, _, _ in PANELS if title not in by_title]
    if missing:
        raise RuntimeError(f"{DASHBOARD} has no panel titled {missing}")
    drawn = []
    for title, _, _ in PANELS:
        panel = by_title[title]
        series = []
        for target in panel["targets"]:
            for row in query_range(base, target["expr"], start_s - 10, end_s):
                times = [float(at) - start_s for at, _ in row["values"]]
                values = [float(value) for _, value in row["values"]]
                series.append((_legend(target.get("legendFormat", ""), row["metric"]),
                               times, values))
        drawn.append((panel, series))
    return drawn


def draw(drawn: list[tuple[dict[str, Any], list[tuple[str, list[float], list[float]]]]],
         marks: list[tuple[float, str]], seconds: float, output: Path) -> None:
    """Draw the panels in a grid (two columns) into ``output``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {title: (label, log) for title, label, log in PANELS}
    rows = math.ceil(len(drawn) / 2)
    figure, axes = plt.subplots(rows, 2, figsize=(15, 4.2 * rows), squeeze=False)
    halted = [at for at, what in marks if what.startswith(HALTED)]
    for index, (panel, series) in enumerate(drawn):
        axis = axes[index // 2][index % 2]
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        scale = 1000.0 if unit == "s" else 1.0  # seconds are drawn in milliseconds
        for legend, times, values in sorted(series, key=lambda item: item[0]):
            axis.plot(times, [value * scale for value in values], label=legend, linewidth=1.3)
        label, log = labels[panel["title"]]
        if log:
            axis.set_yscale("log")
        if len(halted) == 2:
            axis.axvspan(halted[0], halted[1], color="0.85", zorder=0)
        for at, what in marks:
            if "killed" in what:
                axis.axvline(at, color="tab:red", linestyle="--", linewidth=1)
            elif "burst" in what:
                axis.axvline(at, color="tab:orange", linestyle=":", linewidth=1.3)
        axis.set_title(panel["title"], fontsize=11)
        axis.set_ylabel(label)
        axis.set_xlabel("seconds since the ramp began")
        axis.set_xlim(-10, seconds + 5)
        axis.grid(True, alpha=0.3)
        if series:
            axis.legend(fontsize=7, loc="upper left", ncol=2 if len(series) > 6 else 1)
        else:
            axis.text(0.5, 0.5, "no data", transform=axis.transAxes, ha="center")
    for axis in axes.flat[len(drawn):]:
        axis.set_visible(False)
    figure.suptitle(
        "raytrade dashboard panels (cluster/deploy/grafana/raytrade.json) from a real run\n"
        f"seeded gRPC flow: {WARMUP_S:.0f} s at 150 orders/s before 0, then 150 -> 600 -> 150 "
        f"orders/s over {seconds:.0f} s; 2 shards, 1 gateway, Prometheus scraping every 1 s",
        fontsize=12)
    figure.text(
        0.5, 0.004,
        f"Grey band: {HALTED} halted; red dashed: reader-{KILLED_READER} killed (SIGKILL); "
        "orange dotted: a burst over the gateway's per-account rate. The panels' rates and "
        "quantiles are over 1-minute windows, so they lag the load by up to a minute.\n"
        "Made by benchmarks/plot_dashboard.py.", ha="center", va="bottom", fontsize=9)
    figure.tight_layout(rect=(0, 0.025, 1, 0.965))
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=90)
    plt.close(figure)


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=75.0,
                        help=f"length of the ramp, after a {WARMUP_S:.0f} s warm-up "
                             "(default 75; 20 to 90)")
    parser.add_argument("--seed", type=int, default=12, help="seed of the flow")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="the PNG to write")
    args = parser.parse_args(argv)
    if not 20 <= args.seconds <= 90:
        parser.error("--seconds must be between 20 and 90 (the whole run stays under 3 min)")
    binary = shutil.which("prometheus")
    if binary is None:
        print("needs Debian's prometheus on PATH: apt-get install prometheus", file=sys.stderr)
        return 2
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("needs matplotlib: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    dashboard = json.loads(DASHBOARD.read_text())
    # Ray's workers report their metrics every second instead of every 10 s (read by ray.init)
    os.environ.setdefault("RAY_metrics_report_interval_ms", "1000")

    from cluster.clients.grpc_client import TradingClient
    from cluster.config import ClusterConfig, InstrumentRegistry
    from cluster.edge import handles  # before ray: it sets Ray's authentication mode
    from cluster.edge.prometheus import LocalPrometheus
    from cluster.edge.wiring import start_cluster, start_gateways, start_ray
    from cluster.gateway.auth import hash_token
    from cluster.gateway.config import GatewayConfig, TokenEntry

    began = time.monotonic()
    namespace = f"dashboard-{uuid.uuid4().hex[:6]}"
    cluster = gateways = prometheus = None
    with tempfile.TemporaryDirectory(prefix="raytrade-dashboard-") as folder:
        try:
            print("starting Ray, a 2-shard cluster and a gateway with /metrics ...", flush=True)
            start_ray(num_cpus=2, namespace=namespace)
            cluster = start_cluster(
                ClusterConfig(shards=2, namespace=namespace, data_dir=str(Path(folder) / "data")),
                InstrumentRegistry.load())
            token = TokenEntry(sha256=hash_token(TOKEN), name="dashboard", admin=True)
            gateways = start_gateways(cluster, [GatewayConfig(
                port=0, tokens=[token], metrics_port=0, requests_per_second=GATEWAY_RATE)])
            address = f"127.0.0.1:{gateways.ports[0]}"
            print(f"starting Prometheus ({binary}) ...", flush=True)
            prometheus = LocalPrometheus(binary, Path(folder) / "prometheus", gateways.status(),
                                         scrape_interval_s=1.0)
            base = prometheus.url
            print(f"  targets: Ray {', '.join(prometheus.found['ray'])}; gateways "
                  f"{', '.join(prometheus.found['gateways'])}", flush=True)
            print(f"  {base}, after {time.monotonic() - began:.0f} s", flush=True)
            with TradingClient(address, TOKEN) as client:
                client.wait_ready()
                time.sleep(2.0)  # a first scrape before the flow, so rates start from it
                print(f"flow: {WARMUP_S:.0f} s warm-up, then {args.seconds:.0f} s ramp, seed "
                      f"{args.seed} ...", flush=True)
                flow = Flow(client, cluster, args.seconds, args.seed)
                started = flow.run()
            print(f"  sent {flow.orders:,} orders in batches; the shards rejected "
                  f"{dict(sorted(flow.rejects.items()))}; the gateway refused "
                  f"{dict(sorted(flow.refused.items()))}", flush=True)
            counted = wait_for_rejects(base, dict(flow.rejects), timeout_s=12.0)
            ended = time.time()
            print(f"  Prometheus counted rejects {dict(sorted(counted.items()))}"
                  f" ({'the same' if counted == dict(flow.rejects) else 'NOT the same'})",
                  flush=True)
            print(f"querying {len(PANELS)} dashboard panels ...", flush=True)
            drawn = collect(base, dashboard, started, ended)
            for panel, series in drawn:
                print(f"  {panel['title']}: {len(series)} series", flush=True)
            draw(drawn, flow.marks, args.seconds, args.output)
            print(f"wrote {args.output}", flush=True)
        finally:
            print("stopping Prometheus, the cluster and Ray ...", flush=True)
            if prometheus is not None:
                prometheus.stop()
            if gateways is not None:
                gateways.stop()
            if cluster is not None:
                cluster.stop()
            handles.stop_ray()
    print(f"done in {time.monotonic() - began:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
