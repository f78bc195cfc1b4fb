"""The audit trail end to end: orders and admin calls over a real gRPC gateway reach the
journal with who sent them (the token's name), through which gateway and from where, and
`order_history` tells their life from the journal files alone."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cluster.clients.grpc_client import TradingClient, new_order
from cluster.config import ClusterConfig, InstrumentRegistry
from cluster.edge.wiring import Cluster, GatewayGroup, start_cluster, start_gateways
from cluster.gateway.auth import hash_token
from cluster.gateway.config import GatewayConfig, TokenEntry
from cluster.research.audit import account_history, order_history
from cluster.storage.journal import read_batches
from cluster.storage.shard import shard_directory
from protocols.generated import trading_pb2 as pb
from protocols.messages import Command, SetKillSwitch, parse_origin
from tests.integration.ports import free_port

pytestmark = [pytest.mark.ray, pytest.mark.grpc]

TOKENS = [
    TokenEntry(sha256=hash_token("t"), name="erin", accounts=["erin"]),
    TokenEntry(sha256=hash_token("ops-t"), name="ops", admin=True),
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
    data_dir = tmp_path_factory.mktemp("audit-grpc")
    namespace = f"audit-grpc-{uuid.uuid4().hex[:8]}"
    cluster = start_cluster(ClusterConfig(shards=2, namespace=namespace, data_dir=str(data_dir)),
                            InstrumentRegistry.load())
    port = free_port()
    gateways = start_gateways(cluster, [GatewayConfig(port=port, tokens=TOKENS)])
    try:
        yield Deployment(cluster, gateways, data_dir, f"127.0.0.1:{port}")
    finally:
        gateways.stop()
        cluster.stop()


def journaled(deployment: Deployment) -> list[Command]:
    """Every command in every shard's journal."""
    return [command for shard in range(deployment.cluster.shards)
            for batch in read_batches(shard_directory(deployment.data_dir, shard) / "journal")
            for command in batch.commands]


def test_an_order_over_grpc_is_journaled_and_audited_with_its_origin(
    deployment: Deployment,
) -> None:
    """Principal "erin", the gateway's name and a 127.0.0.1 peer, on the journaled commands
    (single orders, batches, cancels, admin calls) and in the order's audited life."""
    prefix = uuid.uuid4().hex[:8]
    gateway = deployment.gateways.names[0]
    with TradingClient(deployment.address, "t") as trader, \
            TradingClient(deployment.address, "ops-t") as ops:
        (accepted,) = trader.submit_order("AAPL", "buy", 3, price=18_000,
                                          client_order_id=f"{prefix}-1")
        assert accepted.type == pb.EXECUTION_TYPE_ACCEPTED
        batch = trader.submit_orders([
            new_order("MSFT", "buy", 1, price=30_000, client_order_id=f"{prefix}-b{index}")
            for index in range(2)])
        assert len(batch.order_ids) == 2
        (cancelled,) = trader.cancel_order("AAPL", accepted.order_id,
                                           client_order_id=f"{prefix}-k")
        assert cancelled.type == pb.EXECUTION_TYPE_CANCELLED
        ops.admin.SetKillSwitch(pb.SetKillSwitchRequest(account="erin", engaged=False),
                                metadata=ops.metadata, timeout=10)
    ours = [command for command in journaled(deployment)
            if command.client_order_id.startswith(prefix)]
    assert len(ours) == 4
    for command in ours:
        origin = parse_origin(command.origin)
        assert (origin.principal, origin.gateway) == ("erin", gateway)
        assert origin.peer.startswith("ipv4:127.0.0.1:"), origin.peer
    admin = [command for command in journaled(deployment)
             if isinstance(command, SetKillSwitch) and parse_origin(command.origin).principal
             == "ops"]
    assert admin and all(parse_origin(command.origin).gateway == gateway for command in admin)

    window = deployment.cluster.topology.config.client_order_id_window
    life = order_history(deployment.data_dir, accepted.order_id,
                         client_order_id_window=window)
    assert [entry.step for entry in life] == ["received", "accepted", "received", "cancelled"]
    received = life[0]
    assert (received.principal, received.gateway, received.client_order_id) == (
        "erin", gateway, f"{prefix}-1")
    assert received.peer.startswith("ipv4:127.0.0.1:")
    assert received.ts_ns == accepted.ts_ns > 0
    assert life[3].details["request_id"] == f"{prefix}-k"
    by_key = order_history(deployment.data_dir, account="erin",
                           client_order_id=f"{prefix}-1", client_order_id_window=window)
    assert by_key == life
    since = account_history(deployment.data_dir, "erin", received.ts_ns,
                            client_order_id_window=window)
    assert {entry.principal for entry in since if entry.step == "received"} == {"erin", "ops"}
