"""A real Prometheus scrapes a running raytrade with the shipped configuration (issue 12).

The session's Ray exports the actors' metrics; a gateway serves its own ``/metrics``. The
test writes the target files (`write_prometheus_targets`), starts Prometheus on loopback with
cluster/deploy/prometheus/prometheus.yml (its scrape interval shortened to 1 s), sends a flow
over gRPC whose rejects it knows, kills a reader once (a restart to count), and asks
Prometheus's HTTP API: orders decided at a rate above zero, a latency quantile per method, the
rejects by reason equal to what the client was told, the restart counted; then every
expression of the Grafana dashboard (cluster/deploy/grafana/raytrade.json) is evaluated and
must answer, over metrics that are declared in `protocols.metrics` and really exist.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.clients.grpc_client import TradingClient, new_order
from cluster.config import ClusterConfig, InstrumentRegistry
from cluster.edge.prometheus import LocalPrometheus, query, wait_for
from cluster.edge.watch import scrape, shard_rows
from cluster.edge.wiring import (
    metrics_endpoints,
    start_cluster,
    start_gateways,
)
from cluster.gateway.auth import hash_token
from cluster.gateway.config import GatewayConfig, TokenEntry
from protocols.errors import RaytradeError
from protocols.generated import trading_pb2 as pb
from protocols.metrics import METRICS, series_names
from tests.integration.ports import free_port

pytestmark = [pytest.mark.ray, pytest.mark.grpc, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "cluster" / "deploy" / "grafana" / "raytrade.json"
NOT_CAUSED: set[str] = set()
"""Metrics this flow does not make exist (none: the supervisors create their counters at 0)."""
PROMQL_WORDS = {
    "sum", "by", "rate", "increase", "histogram_quantile", "max", "on", "or", "vector", "le",
    "without", "avg", "min", "count", "ignoring", "group_left", "group_right",
}


def _value(base: str, expression: str) -> float | None:
    result = query(base, expression)
    return float(result[0]["value"][1]) if result else None


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        pytest.skip("Debian's prometheus is not installed (.ci/run installs it)")
    return found


@pytest.fixture(scope="module")
def deployment(ray_session: None, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[tuple[Any, Any, str]]:
    data_dir = tmp_path_factory.mktemp("prometheus-data")
    namespace = f"prometheus-{uuid.uuid4().hex[:8]}"
    cluster = start_cluster(ClusterConfig(shards=2, namespace=namespace, data_dir=str(data_dir)),
                            InstrumentRegistry.load())
    tokens = [TokenEntry(sha256=hash_token("erin-token"), name="erin", accounts=["erin"])]
    gateways = start_gateways(cluster, [GatewayConfig(port=free_port(), tokens=tokens,
                                                      metrics_port=0)])
    try:
        yield cluster, gateways, f"127.0.0.1:{gateways.ports[0]}"
    finally:
        gateways.stop()
        cluster.stop()


@pytest.fixture(scope="module")
def prometheus(prometheus_binary: str, deployment: tuple[Any, Any, str],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _, gateways, _ = deployment
    server = LocalPrometheus(prometheus_binary, tmp_path_factory.mktemp("prometheus"),
                             gateways.status(), scrape_interval_s=1.0)
    try:
        yield server.url
    finally:
        server.stop()


def _flow(address: str, aapl_shard: int) -> Counter[str]:
    """Trade, and make rejects of known reasons; return the rejects the client was told of."""
    rejects: Counter[str] = Counter()
    with TradingClient(address, "erin-token") as client:
        prefix = uuid.uuid4().hex[:6]
        # a first order makes the counters exist; a rate needs them scraped before the flow
        client.submit_order("MSFT", "buy", 1, price=40000, client_order_id=f"{prefix}-w")
        time.sleep(3)  # the workers report every second, Prometheus scrapes every second
        for wave in range(4):  # a flow over a few scrapes
            resting = [new_order("AAPL", "sell", 1, price=18950 + 10 * (index % 3),
                                 client_order_id=f"{prefix}-s{wave}-{index}")
                       for index in range(5)]
            resting += [new_order("MSFT", "buy", 2, price=41000 - 5 * (index % 4),
                                  client_order_id=f"{prefix}-b{wave}-{index}")
                        for index in range(5)]
            client.submit_orders(resting)
            time.sleep(0.7)
        for index in range(5):  # trades
            client.submit_order("AAPL", "buy", 1, client_order_id=f"{prefix}-m{index}")
        odd = [new_order("AAPL", "buy", 1, price=18990, post_only=True,
                         client_order_id=f"{prefix}-p{index}") for index in range(3)]
        odd += [new_order("AAPL", "buy", 100_000, price=18990, time_in_force="fok",
                          client_order_id=f"{prefix}-f{index}") for index in range(2)]
        reply = client.submit_orders(odd)
        for rejection in reply.rejections:
            rejects[pb.RejectCode.Name(rejection.code).removeprefix("REJECT_CODE_")] += 1
        for index in range(4):
            for report in client.cancel_order("AAPL", (aapl_shard << 40) + 900_000 + index):
                if report.type == pb.EXECUTION_TYPE_REJECTED:
                    rejects[pb.RejectCode.Name(report.reject_code)
                            .removeprefix("REJECT_CODE_")] += 1
        with pytest.raises(RaytradeError):  # refused by validation: counted by the gateway
            client.submit_order("NOPE", "buy", 1, price=100)
    return rejects


@pytest.fixture(scope="module")
def flowed(deployment: tuple[Any, Any, str], prometheus: str) -> Counter[str]:
    """Run the flow once, kill a reader once; return the rejects the client was told of."""
    cluster, _, address = deployment
    rejects = _flow(address, cluster.shard_map.shard_of("AAPL"))
    assert rejects == {"POST_ONLY_WOULD_TAKE": 3, "FOK_NOT_FILLABLE": 2, "UNKNOWN_ORDER": 4}
    reader = cluster.reader(1)
    os.kill(reader.pid().result(30), signal.SIGKILL)  # a restart for the supervisor to count
    return rejects


def test_prometheus_scrapes_what_the_flow_did(deployment: tuple[Any, Any, str],
                                              prometheus: str, flowed: Counter[str]) -> None:
    rejects = flowed
    mine = f'namespace="{deployment[0].namespace}"'  # the session's Ray runs other clusters

    wait_for(prometheus, f"sum(rate(ray_raytrade_orders_total{{{mine}}}[1m])) > 0", bool)
    by_code = wait_for(
        prometheus, f'sum by (code) (ray_raytrade_orders_total{{outcome="rejected",{mine}}})',
        lambda result: {row["metric"]["code"]: int(float(row["value"][1]))
                        for row in result} == dict(rejects))
    assert by_code
    quantile = wait_for(
        prometheus, "histogram_quantile(0.99, sum by (le, method) "
        "(rate(raytrade_gateway_rpc_duration_seconds_bucket[1m])))",
        lambda result: {"SubmitOrders", "SubmitOrder", "CancelOrder"}
        <= {row["metric"]["method"] for row in result})
    p99 = {row["metric"]["method"]: float(row["value"][1]) for row in quantile}
    assert 0 < p99["SubmitOrders"] < 5, p99  # seen across scrapes: a rate, so a quantile
    invalid = _value(prometheus, 'sum(raytrade_gateway_rpcs_total{code="INVALID_ARGUMENT"})')
    assert invalid == 1
    # as the dashboard asks it: increase() sees the first restart only because the series
    # existed at 0 before it (the supervisor creates it at start)
    wait_for(prometheus, f'sum(increase(ray_raytrade_actor_restarts_total'
                          f'{{child="reader-1",{mine}}}[10m])) > 0.5', bool)


def test_every_dashboard_expression_answers_over_declared_metrics(
    prometheus: str, flowed: Counter[str],
) -> None:
    declared = {name for spec in METRICS for name in series_names(spec)}
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"]
                   for target in panel["targets"]]
    assert len(expressions) >= 10
    for expression in expressions:
        names = {word for word in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expression)
                 if word not in PROMQL_WORDS and not word.isdigit()}
        labels = set(re.findall(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)", expression))
        label_words = {word.strip() for group in labels for word in group.split(",")}
        metrics = {name for name in names - label_words
                   if name.startswith(("ray_raytrade_", "raytrade_"))}
        assert metrics, expression
        assert metrics <= declared, (expression, metrics - declared)
        missing = [name for name in sorted(metrics - NOT_CAUSED)
                   if not wait_for(prometheus, f"count({name})", bool, timeout_s=30)]
        assert not missing, (expression, missing)
        assert wait_for(prometheus, expression, bool, timeout_s=30), expression


def test_status_watch_reads_the_same_metrics(deployment: tuple[Any, Any, str],
                                             flowed: Counter[str]) -> None:
    """`raytrade status --watch`'s view from the live endpoints: orders per shard, stages."""
    cluster, gateways, address = deployment
    endpoints = metrics_endpoints(gateways.status())
    before = scrape(endpoints)
    with TradingClient(address, "erin-token") as client:
        prefix = uuid.uuid4().hex[:6]
        client.submit_orders([new_order("MSFT", "buy", 1, price=40000 - index,
                                        client_order_id=f"{prefix}-{index}")
                              for index in range(50)])
    shard = str(cluster.shard_map.shard_of("MSFT"))
    deadline = time.monotonic() + 30
    while True:  # the workers report about once a second
        time.sleep(1.0)
        rows = {row.shard: row
                for row in shard_rows(before, scrape(endpoints), cluster.namespace)}
        if shard in rows and rows[shard].orders_per_s > 0 and rows[shard].lag_events is not None:
            break
        assert time.monotonic() < deadline, rows
    row = rows[shard]
    assert {"gate_match", "journal", "publish", "gateway call"} <= set(row.stages_ms), row
    assert row.lag_events is not None and row.lag_events >= 0
