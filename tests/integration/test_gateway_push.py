"""No push of a gateway's own batches back to it, on a real cluster with two gateways.

A gateway names itself with each batch it sends; the book publishes that batch to every other
reader (risk, positions, the other gateway) but not to its origin, which has the events in the
reply. The rules: the origin's feed gets no push for its own batches and its stream still
shows every report exactly once; batches of other origins (another gateway, a client that
bypasses gateways) are still pushed and reach the stream.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import ray

from cluster.clients.grpc_client import TradingClient, new_order
from cluster.clients.ray_client import Client
from cluster.config import ClusterConfig, InstrumentRegistry
from cluster.edge import handles
from cluster.edge.wiring import Cluster, GatewayGroup, start_cluster, start_gateways
from cluster.gateway.auth import hash_token
from cluster.gateway.config import GatewayConfig, TokenEntry
from cluster.gateway.history import JournalHistory
from cluster.gateway.streams import concerns
from cluster.storage.shard import shard_directory
from protocols.convert import Converter
from protocols.messages import NewOrder, Side
from tests.integration.follower import Follower
from tests.integration.ports import free_port

pytestmark = [pytest.mark.ray, pytest.mark.grpc, pytest.mark.slow]

TOKENS = [TokenEntry(sha256=hash_token("erin-token"), name="erin", accounts=["erin"])]




@dataclass
class Deployment:
    cluster: Cluster
    gateways: GatewayGroup
    data_dir: Path
    addresses: list[str]


@pytest.fixture(scope="module")
def deployment(ray_session: None, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Deployment]:
    data_dir = tmp_path_factory.mktemp("gateway-push")
    namespace = f"gateway-push-{uuid.uuid4().hex[:8]}"
    cluster = start_cluster(ClusterConfig(shards=1, namespace=namespace, data_dir=str(data_dir)),
                            InstrumentRegistry.load())
    ports = [free_port(), free_port()]
    gateways = start_gateways(cluster, [
        GatewayConfig(port=port, tokens=TOKENS, heartbeat_s=0.2, health_check_s=0.2)
        for port in ports
    ])
    try:
        yield Deployment(cluster, gateways, data_dir, [f"127.0.0.1:{port}" for port in ports])
    finally:
        gateways.stop()
        cluster.stop()


def head(deployment: Deployment) -> int:
    _, next_seq = deployment.cluster.book(0).ping().result(30)
    return next_seq - 1


def reader_stats(deployment: Deployment) -> dict[str, dict[str, int]]:
    """The book's fanout counters per reader, once nothing waits to be sent (linger)."""
    book = handles.raw_handle("book-0", deployment.cluster.namespace)
    deadline = time.monotonic() + 10
    while True:
        stats: dict[str, dict[str, int]] = ray.get(book.reader_stats.remote(), timeout=30)
        if not any(row["pending"] for row in stats.values()) or time.monotonic() > deadline:
            return stats
        time.sleep(0.02)


def gateway_feed(deployment: Deployment, name: str) -> dict[str, Any]:
    status = deployment.gateways.gateway(name).status().result(30)
    feed: dict[str, Any] = status["feeds"][0]
    return feed


def truth(deployment: Deployment, after: int) -> set[tuple[int, int, int, int]]:
    """Erin's reports after ``after``, from the journal."""
    registry = InstrumentRegistry.load()
    converter = Converter(registry.instruments, {i.symbol: 0 for i in registry.instruments})
    history = JournalHistory(shard_directory(deployment.data_dir, 0), 0, registry.instruments,
                             deployment.cluster.topology.config.client_order_id_window)
    reports: set[tuple[int, int, int, int]] = set()
    for events in history.events(1):
        fresh = [e for e in events if e.seq > after and concerns(e, {"erin"})]
        for report in converter.reports(fresh, 0, ("erin",)):
            reports.add((report.shard, report.seq, report.type, report.order_id))
    return reports


def test_own_batches_are_not_pushed_back_and_other_origins_still_are(
    deployment: Deployment,
) -> None:
    """gateway-0's batches reach gateway-1 by push but gateway-0 only by reply; batches of
    gateway-1 and of a client without a gateway reach gateway-0 by push; gateway-0's stream
    shows every report once."""
    prefix = uuid.uuid4().hex[:8]
    watcher = TradingClient(deployment.addresses[0], "erin-token", retry_backoff_s=0.2)
    follower = Follower(watcher.stream_executions(max_reconnects=20))
    start = follower.start()[0]
    before = reader_stats(deployment)
    own = TradingClient(deployment.addresses[0], "erin-token")
    own.submit_orders([new_order("AAPL", "buy", 1, price=18900 - 25 * index,
                                 client_order_id=f"{prefix}-batch-{index}")
                       for index in range(50)])
    for index in range(5):
        own.submit_order("MSFT", "sell", 1, price=50000 + 25 * index,
                         client_order_id=f"{prefix}-single-{index}")
    follower.wait_for({0: head(deployment)})
    after_own = reader_stats(deployment)
    own_feed = gateway_feed(deployment, "gateway-0")
    skipped = after_own["gateway-0"]["skipped"] - before["gateway-0"]["skipped"]
    assert skipped >= 2  # at least the batch and one single order
    assert after_own["gateway-0"]["sent"] == before["gateway-0"]["sent"]
    assert after_own["gateway-1"]["sent"] - before["gateway-1"]["sent"] == skipped
    assert after_own["reader"]["sent"] - before["reader"]["sent"] == skipped
    assert own_feed["pushed_batches"] == 0 and own_feed["repairs"] == 0

    other = TradingClient(deployment.addresses[1], "erin-token")
    for index in range(5):
        other.submit_order("AAPL", "sell", 1, price=19500 + 25 * index,
                           client_order_id=f"{prefix}-other-{index}")
    direct = Client(deployment.cluster)
    for index in range(5):
        direct.submit([NewOrder(account="erin", client_order_id=f"{prefix}-direct-{index}",
                                symbol="NVDA", side=Side.BUY, quantity=1,
                                price=11000 + index)])
    follower.wait_for({0: head(deployment)})
    follower.stop()
    for client in (watcher, own, other):
        client.close()
    final = reader_stats(deployment)
    pushed = final["gateway-0"]["sent"] - after_own["gateway-0"]["sent"]
    assert pushed == final["gateway-1"]["skipped"] - after_own["gateway-1"]["skipped"] + 5
    assert gateway_feed(deployment, "gateway-0")["pushed_batches"] >= 1
    assert not follower.errors
    assert len(follower.seen) == len(set(follower.seen)), "a report was delivered twice"
    assert set(follower.seen) == truth(deployment, start)
