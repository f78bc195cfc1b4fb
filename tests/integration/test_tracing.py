"""Traces end to end: a client's traceparent through a real gateway and Ray book actors.

The cluster runs with ``traces = "file"``: every process (the gateway actor, each book actor)
writes its spans as JSON lines under ``<data_dir>/traces``, which is how this test collects
the spans of Ray worker processes. Spans leave each process from a batch processor about
every 5 s, so the test polls the files.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cluster.clients.grpc_client import TradingClient, new_order
from cluster.config import ClusterConfig, InstrumentRegistry
from cluster.edge.wiring import Cluster, GatewayGroup, start_cluster, start_gateways
from cluster.gateway.auth import hash_token
from cluster.gateway.config import GatewayConfig, TokenEntry
from cluster.tracing import TRACES_FOLDER
from protocols.generated import trading_pb2 as pb
from tests.integration.ports import free_port

pytestmark = [pytest.mark.ray, pytest.mark.grpc, pytest.mark.slow]

TOKENS = [TokenEntry(sha256=hash_token("t"), name="erin", accounts=["erin"])]
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


@dataclass
class Deployment:
    cluster: Cluster
    gateways: GatewayGroup
    data_dir: Path
    address: str


@pytest.fixture(scope="module")
def deployment(ray_session: None, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Deployment]:
    data_dir = tmp_path_factory.mktemp("tracing")
    namespace = f"tracing-{uuid.uuid4().hex[:8]}"
    cluster = start_cluster(ClusterConfig(shards=2, namespace=namespace, data_dir=str(data_dir),
                                          traces="file"),
                            InstrumentRegistry.load())
    port = free_port()
    gateways = start_gateways(cluster, [GatewayConfig(port=port, tokens=TOKENS)])
    try:
        yield Deployment(cluster, gateways, data_dir, f"127.0.0.1:{port}")
    finally:
        gateways.stop()
        cluster.stop()


def _spans(data_dir: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted((data_dir / TRACES_FOLDER).glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                try:
                    found.append(json.loads(line))
                except json.JSONDecodeError:  # a line still being written
                    continue
    return found


def _hex(value: str | None) -> str | None:
    return value.removeprefix("0x") if value else None


def _wait_for(data_dir: Path, done: Any, timeout_s: float = 45.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        spans = _spans(data_dir)
        if done(spans):
            return spans
        if time.monotonic() > deadline:
            raise AssertionError(f"spans after {timeout_s} s: "
                                 f"{[(span['name'], span['context']) for span in spans]}")
        time.sleep(0.5)


def test_a_clients_traceparent_follows_the_order_through_the_shard_batch(
    deployment: Deployment,
) -> None:
    """A single order and a multi-symbol batch, each sent with a traceparent: the gateway's
    server span is the client span's child, the book actors' batch spans (in their own Ray
    worker processes) link to the gateway span, and each journal append is its batch's
    child."""
    prefix = uuid.uuid4().hex[:8]
    with TradingClient(deployment.address, "t") as trader:
        traced = (*trader.metadata, ("traceparent", f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        (accepted,) = trader.trading.SubmitOrder(
            new_order("AAPL", "buy", 1, price=18_000, client_order_id=f"{prefix}-1"),
            metadata=traced, timeout=30).reports
        assert accepted.type == pb.EXECUTION_TYPE_ACCEPTED
        instruments = deployment.cluster.topology.instruments
        shards = {deployment.cluster.shard_map.shard_of(instrument.symbol)
                  for instrument in instruments}
        response = trader.trading.SubmitOrders(pb.SubmitOrdersRequest(orders=[
            new_order(instrument.symbol, "buy", instrument.lot_size,
                      price=instrument.reference_price or 100,
                      client_order_id=f"{prefix}-{instrument.symbol}")
            for instrument in instruments]), metadata=traced, timeout=30)
        assert len(response.order_ids) == len(instruments)

    def linked(spans: list[dict[str, Any]], gateway_span: dict[str, Any]
               ) -> list[dict[str, Any]]:
        return [span for span in spans if span["name"] == "raytrade.shard/batch"
                and any(link["context"]["span_id"] == gateway_span["context"]["span_id"]
                        for link in span["links"])]

    def gateway_spans(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [span for span in spans if span["name"].startswith("raytrade.gateway/Submit")
                and _hex(span["context"]["trace_id"]) == CLIENT_TRACE]

    def complete(spans: list[dict[str, Any]]) -> bool:
        ours = gateway_spans(spans)
        if len(ours) != 2:
            return False
        batches = [batch for gateway_span in ours for batch in linked(spans, gateway_span)]
        journaled = {_hex(span["parent_id"]) for span in spans
                     if span["name"] == "raytrade.journal/append"}
        return (len(batches) == 1 + len(shards)
                and all(_hex(batch["context"]["span_id"]) in journaled for batch in batches))

    spans = _wait_for(deployment.data_dir, complete)
    single, many = sorted(gateway_spans(spans), key=lambda span: span["name"])
    assert (single["name"], many["name"]) == ("raytrade.gateway/SubmitOrder",
                                              "raytrade.gateway/SubmitOrders")
    for gateway_span in (single, many):
        assert _hex(gateway_span["parent_id"]) == CLIENT_SPAN
        assert gateway_span["kind"] == "SpanKind.SERVER"
        assert gateway_span["attributes"]["raytrade.gateway"] == deployment.gateways.names[0]
    (single_batch,) = linked(spans, single)
    many_batches = linked(spans, many)
    assert {batch["attributes"]["raytrade.shard"] for batch in many_batches} == shards
    for batch in (single_batch, *many_batches):
        assert batch["parent_id"] is None and batch["kind"] == "SpanKind.CONSUMER"
        assert batch["attributes"]["raytrade.origin"] == deployment.gateways.names[0]
        assert batch["attributes"]["raytrade.first_seq"] <= batch["attributes"][
            "raytrade.last_seq"]
    # the gateway and the books are different processes, each with its own file
    gateway_pid = single["resource"]["attributes"]["process.pid"]
    assert all(batch["resource"]["attributes"]["process.pid"] != gateway_pid
               for batch in (single_batch, *many_batches))
