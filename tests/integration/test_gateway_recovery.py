"""Gateways through failures: a killed gateway process, a killed shard.

The rules: a client that retries with the same client order ids never enters an order twice,
and an execution stream that reconnects by itself delivers every report exactly once, checked
against the shards' journals.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import ray

from cluster.clients.grpc_client import TradingClient, new_order
from cluster.clients.ray_client import Client
from cluster.config import ClusterConfig, InstrumentRegistry
from cluster.edge.wiring import Cluster, GatewayGroup, start_cluster, start_gateways
from cluster.gateway.auth import hash_token
from cluster.gateway.config import GatewayConfig, TokenEntry
from cluster.gateway.history import JournalHistory
from cluster.gateway.streams import concerns
from cluster.storage.shard import shard_directory
from protocols.convert import Converter
from protocols.messages import NewOrder, OrderAccepted, Side
from tests.integration.follower import Follower
from tests.integration.ports import free_port

pytestmark = [pytest.mark.ray, pytest.mark.grpc, pytest.mark.chaos, pytest.mark.slow]

TOKENS = [
    TokenEntry(sha256=hash_token("erin-token"), name="erin", accounts=["erin"]),
    TokenEntry(sha256=hash_token("frank-token"), name="frank", accounts=["frank"]),
    TokenEntry(sha256=hash_token("ops-token"), name="ops", admin=True),
]




@dataclass
class Deployment:
    cluster: Cluster
    gateways: GatewayGroup
    data_dir: Path
    address: str


@pytest.fixture(scope="module")
def deployment(ray_session: None, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Deployment]:
    data_dir = tmp_path_factory.mktemp("gateway-recovery")
    namespace = f"gateway-recovery-{uuid.uuid4().hex[:8]}"
    cluster = start_cluster(ClusterConfig(shards=2, namespace=namespace, data_dir=str(data_dir)),
                            InstrumentRegistry.load())
    port = free_port()  # fixed, so the restarted gateway serves where clients reconnect
    gateways = start_gateways(cluster, [GatewayConfig(port=port, tokens=TOKENS, ring_events=500,
                                                      heartbeat_s=0.2, health_check_s=0.2)])
    try:
        yield Deployment(cluster, gateways, data_dir, f"127.0.0.1:{port}")
    finally:
        gateways.stop()
        cluster.stop()


def journal_truth(deployment: Deployment, account: str, after: dict[int, int]
                  ) -> tuple[set[tuple[int, int, int, int]], Counter[str]]:
    """The account's reports after the cursor, and accepted orders per client order id."""
    registry = InstrumentRegistry.load()
    shard_map = deployment.cluster.shard_map
    converter = Converter(registry.instruments,
                          {i.symbol: shard_map.shard_of(i.symbol) for i in registry.instruments})
    reports = set()
    accepted: Counter[str] = Counter()
    for shard in range(2):
        history = JournalHistory(
            shard_directory(deployment.data_dir, shard), shard,
            [i for i in registry.instruments if shard_map.shard_of(i.symbol) == shard],
            deployment.cluster.topology.config.client_order_id_window,
        )
        for events in history.events(1):
            for event in events:
                if isinstance(event, OrderAccepted) and event.account == account:
                    accepted[event.client_order_id] += 1
            fresh = [e for e in events if e.seq > after.get(shard, 0) and concerns(e, {account})]
            for report in converter.reports(fresh, shard, (account,)):
                reports.add((report.shard, report.seq, report.type, report.order_id))
    return reports, accepted


def heads(deployment: Deployment) -> dict[int, int]:
    pings = ray.get([book.ping.remote() for book in deployment.cluster.books])
    return {shard: next_seq - 1 for shard, (_, next_seq) in enumerate(pings)}


def test_a_killed_gateway_comes_back_and_streams_resume_exactly(deployment: Deployment) -> None:
    """Kill the gateway process mid-flow: orders retried with their client order ids are
    entered once, and the reconnecting stream misses and repeats nothing (the new process
    starts with an empty ring, so the resume reads the journal)."""
    trader = TradingClient(deployment.address, "erin-token", retries=12, retry_backoff_s=0.1)
    watcher = TradingClient(deployment.address, "erin-token", retry_backoff_s=0.2)
    follower = Follower(watcher.stream_executions(max_reconnects=50))
    start = follower.start()
    gateway = deployment.gateways.handle("gateway-0")
    old_pid = ray.get(gateway.pid.remote())
    prefix = uuid.uuid4().hex[:8]
    for index in range(120):
        if index == 40:
            os.kill(old_pid, signal.SIGKILL)
        side = "buy" if index % 2 else "sell"
        trader.submit(new_order("AAPL" if index % 3 else "MSFT", side, 1 + index % 4,
                                price=18950 if side == "sell" else 18960,
                                client_order_id=f"{prefix}-{index}"))
    assert ray.get(gateway.pid.remote()) != old_pid
    follower.wait_for(heads(deployment))
    follower.stop()
    trader.close()
    watcher.close()
    assert not follower.errors
    assert follower.stream.reconnects >= 1
    assert len(follower.seen) == len(set(follower.seen)), "a report was delivered twice"
    truth, accepted = journal_truth(deployment, "erin", start)
    assert set(follower.seen) == truth
    ours = {key: count for key, count in accepted.items() if key.startswith(prefix)}
    assert len(ours) == 120 and set(ours.values()) == {1}


def test_a_restarted_shard_is_followed_again(deployment: Deployment) -> None:
    """Kill a book actor: the gateway answers UNAVAILABLE meanwhile, subscribes to the new
    incarnation, and a stream still sees orders that reach the shard without this gateway."""
    watcher = TradingClient(deployment.address, "frank-token", retry_backoff_s=0.2)
    follower = Follower(watcher.stream_executions(max_reconnects=50))
    start = follower.start()
    driver = Client(deployment.cluster)  # bypasses the gateway: events reach it only by push
    book = deployment.cluster.handle("book-1")
    os.kill(ray.get(book.pid.remote()), signal.SIGKILL)
    trader = TradingClient(deployment.address, "frank-token", retries=15, retry_backoff_s=0.2)
    (accepted,) = trader.submit_order("MSFT", "buy", 1, price=40000)  # retried until back
    assert accepted.order_id
    for index in range(20):
        driver.submit([NewOrder(account="frank", client_order_id=f"driver-{index}",
                                symbol="NVDA", side=Side.BUY, quantity=1, price=11000 + index)])
    follower.wait_for(heads(deployment))
    follower.stop()
    trader.close()
    watcher.close()
    assert not follower.errors
    assert len(follower.seen) == len(set(follower.seen))
    truth, _ = journal_truth(deployment, "frank", start)
    assert set(follower.seen) == truth
    status = ray.get(deployment.gateways.handle("gateway-0").status.remote())
    assert status["serving"] and all(status["shard_up"])
