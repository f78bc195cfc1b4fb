"""Client order ids through real gRPC and real Ray: unique per account across shards, a reuse
answered with the original order after the gateway's and a book actor's process are killed,
and another account's order indistinguishable from one that is not open.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import ray

from cluster.clients.grpc_client import TradingClient
from cluster.config import ClusterConfig, InstrumentRegistry
from cluster.edge.wiring import Cluster, GatewayGroup, start_cluster, start_gateways
from cluster.gateway.auth import hash_token
from cluster.gateway.config import GatewayConfig, TokenEntry
from protocols.generated import trading_pb2 as pb
from tests.integration.ports import free_port

pytestmark = [pytest.mark.ray, pytest.mark.grpc, pytest.mark.chaos, pytest.mark.slow]

TOKENS = [
    TokenEntry(sha256=hash_token("gina-token"), name="gina", accounts=["gina"]),
    TokenEntry(sha256=hash_token("hugo-token"), name="hugo", accounts=["hugo"]),
]




@dataclass
class Deployment:
    cluster: Cluster
    gateways: GatewayGroup
    address: str


@pytest.fixture(scope="module")
def deployment(ray_session: None, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Deployment]:
    data_dir = tmp_path_factory.mktemp("client-order-ids")
    namespace = f"client-order-ids-{uuid.uuid4().hex[:8]}"
    cluster = start_cluster(ClusterConfig(shards=2, namespace=namespace, data_dir=str(data_dir)),
                            InstrumentRegistry.load())
    port = free_port()  # fixed, so the restarted gateway serves where the client reconnects
    gateways = start_gateways(cluster, [GatewayConfig(port=port, tokens=TOKENS,
                                                      health_check_s=0.2)])
    try:
        yield Deployment(cluster, gateways, f"127.0.0.1:{port}")
    finally:
        gateways.stop()
        cluster.stop()


@pytest.fixture(scope="module")
def gina(deployment: Deployment) -> Iterator[TradingClient]:
    with TradingClient(deployment.address, "gina-token", retries=20,
                       retry_backoff_s=0.2) as client:
        yield client


def shard_of(client: TradingClient, symbol: str) -> int:
    (found,) = [i.shard for i in client.instruments().instruments if i.symbol == symbol]
    return int(found)


def test_an_id_is_unique_per_account_across_shards_and_restarts(
    deployment: Deployment, gina: TradingClient
) -> None:
    """An id accepted on AAPL (shard 0) is a duplicate on MSFT (shard 1) as on BTC-USD
    (shard 0), naming the AAPL order, and still after SIGKILL of the gateway's process and
    of AAPL's book actor."""
    assert (shard_of(gina, "AAPL"), shard_of(gina, "MSFT"), shard_of(gina, "BTC-USD")) == (
        0, 1, 0)
    client_order_id = f"once-{uuid.uuid4().hex[:8]}"
    (accepted,) = gina.submit_order("AAPL", "sell", 1, price=19990,
                                    client_order_id=client_order_id)
    assert accepted.type == pb.EXECUTION_TYPE_ACCEPTED

    def assert_duplicates(when: str) -> None:
        for symbol, side, price in (("MSFT", "sell", 45000), ("BTC-USD", "sell", 9_000_000),
                                    ("AAPL", "sell", 19990)):
            reports = gina.submit_order(symbol, side, 1, price=price,
                                        client_order_id=client_order_id)
            assert [r.type for r in reports] == [pb.EXECUTION_TYPE_REJECTED], (when, symbol)
            (rejected,) = reports
            assert rejected.reject_code == pb.REJECT_CODE_DUPLICATE_CLIENT_ORDER_ID, (when, symbol)
            assert rejected.order_id == accepted.order_id, (when, symbol)
            assert "for an order, which became order" in rejected.text

    assert_duplicates("live")
    gateway = deployment.gateways.handle("gateway-0")
    old_pid = ray.get(gateway.pid.remote())
    os.kill(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if ray.get(gateway.pid.remote(), timeout=5) != old_pid:
                break
        except Exception:  # the actor is restarting
            time.sleep(0.2)
    assert_duplicates("after the gateway restarted")  # the client retries until it serves
    book = deployment.cluster.handle("book-0")
    os.kill(ray.get(book.pid.remote()), signal.SIGKILL)
    assert_duplicates("after shard 0's book actor restarted")
    assert gina.order(accepted.order_id).open_quantity == 1


def test_another_accounts_order_looks_like_one_that_is_not_open(
    deployment: Deployment, gina: TradingClient
) -> None:
    """Cancelling or replacing hugo's live order as gina gives the same code and text as an
    order of gina's that is closed: nothing tells a prober that it is live, or whose."""
    with TradingClient(deployment.address, "hugo-token") as hugo:
        (live,) = hugo.submit_order("AAPL", "sell", 1, price=19995)
        (closed,) = gina.submit_order("AAPL", "sell", 1, price=19995)
        gina.cancel_order("AAPL", closed.order_id)
        (foreign,) = gina.cancel_order("AAPL", live.order_id)
        (not_open,) = gina.cancel_order("AAPL", closed.order_id)
        assert foreign.type == not_open.type == pb.EXECUTION_TYPE_REJECTED
        assert foreign.reject_code == not_open.reject_code == pb.REJECT_CODE_ORDER_NOT_OPEN
        assert foreign.text.replace(str(live.order_id), "N") == not_open.text.replace(
            str(closed.order_id), "N")
        assert hugo.order(live.order_id).open_quantity == 1
