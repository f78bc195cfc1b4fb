"""A shard's own front end (cluster.gateway.direct) on a real cluster: real Ray, a real gRPC
client on 127.0.0.1, real journals, a real SIGKILL of the book actor's process.

Orders sent straight to the shard's process are acknowledged, journaled and seen by the
gateways like any other; what the front end does not serve says who does; a killed book comes
back with its front end on the same port and loses no acknowledged order.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from cluster.clients.grpc_client import TradingClient, packed_order
from cluster.config import ClusterConfig, InstrumentRegistry
from cluster.edge.wiring import Cluster, gateway_statuses, start_cluster
from cluster.gateway.auth import hash_token
from cluster.gateway.config import GatewayConfig, TokenEntry
from protocols.errors import InvalidRequestError, NotAuthenticatedError, RaytradeError
from protocols.generated import trading_pb2 as pb
from tests.integration.ports import free_port_run

pytestmark = [pytest.mark.ray, pytest.mark.grpc, pytest.mark.chaos, pytest.mark.slow]

TOKENS = [TokenEntry(sha256=hash_token("ida-token"), name="ida", accounts=["ida"])]


@dataclass
class Deployment:
    cluster: Cluster
    gateway: str
    front_ends: list[str]


@pytest.fixture(scope="module")
def deployment(ray_session: None, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Deployment]:
    data_dir = tmp_path_factory.mktemp("front-end")
    namespace = f"front-end-{uuid.uuid4().hex[:8]}"
    base = free_port_run(2)  # fixed, so a restarted book's front end serves where it did
    cluster = start_cluster(
        ClusterConfig(shards=2, namespace=namespace, data_dir=str(data_dir)),
        InstrumentRegistry.load(), [GatewayConfig(port=0, tokens=TOKENS)],
        front_ends=GatewayConfig(port=base, tokens=TOKENS))
    try:
        port = gateway_statuses(cluster)[0]["address"].rpartition(":")[2]
        yield Deployment(cluster, f"127.0.0.1:{port}", cluster.front_ends())
    finally:
        cluster.stop()


def client(address: str, token: str = "ida-token") -> TradingClient:
    return TradingClient(address, token, retries=20, retry_backoff_s=0.25)


def test_each_shard_serves_on_its_own_port(deployment: Deployment) -> None:
    base = int(deployment.front_ends[0].rpartition(":")[2])
    assert deployment.front_ends == [f"127.0.0.1:{base}", f"127.0.0.1:{base + 1}"]


def test_an_order_sent_to_its_shard_is_acknowledged_and_seen_by_the_gateways(
    deployment: Deployment,
) -> None:
    """AAPL is shard 0's: its front end accepts it, and the gateway (which follows the shard's
    events) lists it among ida's open orders; a batch of packed orders works the same."""
    client_order_id = f"direct-{uuid.uuid4().hex[:8]}"
    with client(deployment.front_ends[0]) as direct, client(deployment.gateway) as gateway:
        (accepted,) = direct.submit_order("AAPL", "sell", 3, price=19_990,
                                          client_order_id=client_order_id)
        assert accepted.type == pb.EXECUTION_TYPE_ACCEPTED and accepted.shard == 0
        reply = direct.submit_packed([packed_order("BTC-USD", "sell", 1, 9_000_000),
                                      packed_order("AAPL", "sell", 1, 19_995)])
        assert not reply.rejections and all(reply.order_ids)
        assert {order_id >> 40 for order_id in reply.order_ids} == {0}  # shard 0's ids
        deadline = time.monotonic() + 30
        while client_order_id not in {o.client_order_id for o in gateway.open_orders("AAPL")}:
            assert time.monotonic() < deadline, "the gateway never saw the direct order"
            time.sleep(0.1)
        # the same id again is the shard's duplicate, as through a gateway
        (again,) = direct.submit_order("AAPL", "sell", 3, price=19_990,
                                       client_order_id=client_order_id)
        assert again.type == pb.EXECUTION_TYPE_REJECTED
        assert again.order_id == accepted.order_id


def test_what_a_front_end_does_not_serve_is_refused_with_where_to_go(
    deployment: Deployment,
) -> None:
    with client(deployment.front_ends[0]) as direct:
        with pytest.raises(InvalidRequestError, match="shard 1"):
            direct.submit_order("MSFT", "sell", 1, price=45_000)  # shard 1's symbol
        with pytest.raises(InvalidRequestError, match=r"orders\[1\]"):
            direct.submit_packed([packed_order("AAPL", "sell", 1, 19_990),
                                  packed_order("MSFT", "sell", 1, 45_000)])
        with pytest.raises(RaytradeError, match="served by the gateways"):
            direct.book("AAPL")
        with pytest.raises(RaytradeError, match="served by the gateways"):
            next(iter(direct.stream_executions()))
    with client(deployment.front_ends[0], "wrong-token") as stranger, \
            pytest.raises(NotAuthenticatedError):
        stranger.submit_order("AAPL", "sell", 1, price=19_990)


def test_a_killed_book_comes_back_with_its_front_end_and_every_acknowledged_order(
    deployment: Deployment,
) -> None:
    """SIGKILL of shard 1's process: Ray restarts it, it recovers from its journal and serves
    its front end on the same port again; the order acknowledged before the kill is open,
    and its id is still a duplicate."""
    client_order_id = f"kept-{uuid.uuid4().hex[:8]}"
    with client(deployment.front_ends[1]) as direct:
        (accepted,) = direct.submit_order("MSFT", "buy", 2, price=40_000,
                                          client_order_id=client_order_id)
        assert accepted.type == pb.EXECUTION_TYPE_ACCEPTED
        pid = deployment.cluster.book(1).pid().result(10.0)
        os.kill(pid, signal.SIGKILL)
        # the client's retries (UNAVAILABLE, backed off) carry it over the restart
        (again,) = direct.submit_order("MSFT", "buy", 2, price=40_000,
                                       client_order_id=client_order_id)
        assert again.type == pb.EXECUTION_TYPE_REJECTED
        assert again.order_id == accepted.order_id
    assert deployment.cluster.book(1).pid().result(10.0) != pid
    assert deployment.cluster.front_ends()[1] == deployment.front_ends[1]
