"""The gRPC gateway end to end: real grpc.aio servers in Ray actors, real clients, real shards.

One raytrade cluster (2 shards) and three gateways for the module: plaintext, TLS (with a low
rate limit) and mutual TLS, over the session's Ray. Certificates are made at run time with
the ``openssl`` command.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import msgspec
import pytest
import ray
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.clients.grpc_client import (
    ClientTls,
    LocalBook,
    TradingClient,
    new_order,
    packed_order,
)
from cluster.config import ClusterConfig, InstrumentRegistry
from cluster.edge.wiring import Cluster, GatewayGroup, start_cluster, start_gateways
from cluster.gateway.auth import hash_token
from cluster.gateway.config import GatewayConfig, TlsConfig, TokenEntry
from cluster.gateway.history import JournalHistory
from cluster.gateway.streams import concerns
from cluster.storage.shard import shard_directory
from protocols.convert import Converter
from protocols.errors import (
    GatewayUnavailableError,
    InvalidRequestError,
    NotTradableError,
    OrderNotFoundError,
    PermissionDeniedError,
    RateLimitedError,
)
from protocols.generated import trading_pb2 as pb
from protocols.generated import trading_pb2_grpc as pb_grpc

pytestmark = [pytest.mark.ray, pytest.mark.grpc]

TOKENS = {
    "alice": TokenEntry(sha256=hash_token("alice-token"), name="alice", accounts=["alice"]),
    "bob": TokenEntry(sha256=hash_token("bob-token"), name="bob", accounts=["bob"]),
    "carol": TokenEntry(sha256=hash_token("carol-token"), name="carol", accounts=["carol"]),
    "desk": TokenEntry(sha256=hash_token("desk-token"), name="desk", accounts=["d1", "d2"]),
    "fuzz": TokenEntry(sha256=hash_token("fuzz-token"), name="fuzz", accounts=["fuzz"]),
    "ops": TokenEntry(sha256=hash_token("ops-token"), name="ops", admin=True),
}


def token(name: str) -> str:
    return f"{name}-token"


# ------------------------------------------------------------------------------ certificates


@dataclass
class Certificates:
    ca: Path
    server_certificate: Path
    server_key: Path
    client_certificate: Path
    client_key: Path
    other_ca: Path
    stranger_certificate: Path
    stranger_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(directory: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)


def _make_leaf(directory: Path, name: str, ca: str, usage: str) -> None:
    (directory / f"{name}.ext").write_text(
        f"subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage={usage}\n"
    )
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
             cwd=directory)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile",
             f"{name}.ext", cwd=directory)


def make_certificates(directory: Path) -> Certificates:
    """Make a CA, a server and a client certificate, and a second CA with its own client."""
    _make_ca(directory, "ca")
    _make_leaf(directory, "server", "ca", "serverAuth")
    _make_leaf(directory, "client", "ca", "clientAuth")
    _make_ca(directory, "other-ca")
    _make_leaf(directory, "stranger", "other-ca", "clientAuth")
    return Certificates(
        ca=directory / "ca.pem", server_certificate=directory / "server.pem",
        server_key=directory / "server.key", client_certificate=directory / "client.pem",
        client_key=directory / "client.key", other_ca=directory / "other-ca.pem",
        stranger_certificate=directory / "stranger.pem", stranger_key=directory / "stranger.key",
    )


# ------------------------------------------------------------------------------ fixtures


@dataclass
class Deployment:
    cluster: Cluster
    gateways: GatewayGroup
    certificates: Certificates
    data_dir: Path

    @property
    def plain(self) -> str:
        return f"127.0.0.1:{self.gateways.ports[0]}"

    @property
    def tls(self) -> str:
        return f"127.0.0.1:{self.gateways.ports[1]}"

    @property
    def mutual_tls(self) -> str:
        return f"127.0.0.1:{self.gateways.ports[2]}"

    def client(self, name: str, **options: Any) -> TradingClient:
        return TradingClient(self.plain, token(name), **options)


@pytest.fixture(scope="module")
def deployment(ray_session: None, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Deployment]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    certificates = make_certificates(tmp_path_factory.mktemp("certificates"))
    data_dir = tmp_path_factory.mktemp("gateway-data")
    namespace = f"gateway-test-{uuid.uuid4().hex[:8]}"
    cluster = start_cluster(ClusterConfig(shards=2, namespace=namespace, data_dir=str(data_dir)),
                            InstrumentRegistry.load())
    tokens = list(TOKENS.values())
    server_tls = TlsConfig(certificate=str(certificates.server_certificate),
                           private_key=str(certificates.server_key))
    configs = [
        GatewayConfig(port=0, tokens=tokens, heartbeat_s=0.2, ring_events=200),
        GatewayConfig(port=0, tokens=tokens, tls=server_tls, requests_per_second=5),
        GatewayConfig(port=0, tokens=tokens, tls=TlsConfig(
            certificate=str(certificates.server_certificate),
            private_key=str(certificates.server_key), client_ca=str(certificates.ca))),
    ]
    gateways = start_gateways(cluster, configs)
    try:
        yield Deployment(cluster, gateways, certificates, data_dir)
    finally:
        gateways.stop()
        cluster.stop()


@pytest.fixture(scope="module")
def alice(deployment: Deployment) -> Iterator[TradingClient]:
    with deployment.client("alice") as client:
        yield client


@pytest.fixture(scope="module")
def bob(deployment: Deployment) -> Iterator[TradingClient]:
    with deployment.client("bob") as client:
        yield client


@pytest.fixture(scope="module")
def ops(deployment: Deployment) -> Iterator[TradingClient]:
    with deployment.client("ops", timeout_s=10.0) as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def types(reports: list[pb.ExecutionReport]) -> list[int]:
    return [report.type for report in reports]


# ------------------------------------------------------------------------------ every RPC


def test_instruments_show_scale_tick_lot_and_shard(alice: TradingClient) -> None:
    """ListInstruments gives what a client needs to send integer prices and quantities."""
    reply = alice.instruments()
    assert reply.shards == 2
    esz6 = next(i for i in reply.instruments if i.symbol == "ESZ6")
    assert (esz6.tick_size, esz6.price_scale, esz6.min_price) == (25, 2, 400000)


def test_submit_fill_cancel_replace_and_read(alice: TradingClient, bob: TradingClient) -> None:
    """An order rests, is read back, replaced, partly filled by another account, cancelled."""
    symbol = "MSFT"
    (accepted,) = alice.submit_order(symbol, "sell", 10, price=41590)
    assert accepted.type == pb.EXECUTION_TYPE_ACCEPTED and accepted.order_id
    order_id = accepted.order_id
    assert alice.order(order_id).open_quantity == 10
    assert order_id in [order.order_id for order in alice.open_orders(symbol)]

    (replaced,) = alice.replace_order(symbol, order_id, 41580, 8)
    assert replaced.type == pb.EXECUTION_TYPE_REPLACED
    assert (replaced.previous_price, replaced.price, replaced.quantity) == (41590, 41580, 8)

    taker = bob.submit_order(symbol, "buy", 3, price=41580)
    assert types(taker) == [pb.EXECUTION_TYPE_ACCEPTED, pb.EXECUTION_TYPE_FILL]
    assert taker[1].liquidity == pb.LIQUIDITY_TAKER and taker[1].last_quantity == 3
    assert alice.order(order_id).open_quantity == 5

    (cancelled,) = alice.cancel_order(symbol, order_id)
    assert cancelled.type == pb.EXECUTION_TYPE_CANCELLED and cancelled.quantity == 5
    with pytest.raises(OrderNotFoundError):
        alice.order(order_id)


def test_positions_carry_pnl(alice: TradingClient, bob: TradingClient,
                             deployment: Deployment) -> None:
    """After trades, GetPositions shows net quantity, money as decimal strings, and a mark."""
    alice.submit_order("NVDA", "sell", 4, price=12000)
    bob.submit_order("NVDA", "buy", 4, price=12000)
    deadline = time.monotonic() + 10
    while True:  # positions are a read model: one publication behind at most
        positions = {p.symbol: p for p in bob.positions()}
        if "NVDA" in positions or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    nvda = positions["NVDA"]
    assert nvda.net_quantity >= 4 and nvda.mark_price == 12000
    int(nvda.realized_pnl), int(nvda.cost), int(nvda.unrealized_pnl)  # decimal integers


def test_book_l1_and_l2(alice: TradingClient) -> None:
    """GetBook depth 1 is L1; deeper shows more levels, best first."""
    for price in (24500, 24400, 24300):
        alice.submit_order("TSLA", "buy", 2, price=price)
    assert [level.price for level in alice.book("TSLA", depth=1).bids] == [24500]
    prices = [level.price for level in alice.book("TSLA", depth=3).bids]
    assert prices == sorted(prices, reverse=True) and prices[0] == 24500


def test_batch_submit_answers_in_columns(alice: TradingClient) -> None:
    """SubmitOrders answers each order by index; a shard's rejection is a sparse entry."""
    prefix = unique("batch")
    orders = [new_order("SPY", "buy", 1, price=50000 + i, client_order_id=f"{prefix}-{i}")
              for i in range(50)]
    orders.append(new_order("SPY", "buy", 1, price=50000, client_order_id=f"{prefix}-0"))
    reply = alice.submit_orders(orders)
    assert len(reply.order_ids) == 51 and all(reply.order_ids[:50])
    (rejection,) = reply.rejections
    assert rejection.index == 50
    assert rejection.code == pb.REJECT_CODE_DUPLICATE_CLIENT_ORDER_ID
    assert rejection.order_id == reply.order_ids[0]
    assert alice.mass_cancel("SPY").cancelled_orders >= 50


def test_packed_orders_are_answered_as_typed_orders(alice: TradingClient) -> None:
    """The same orders packed (MessagePack rows in `packed_orders`) and typed get the same
    columns: ids, fills, open quantities and rejections by index; a malformed packed order
    refuses the call naming its field, and a call may not carry both kinds."""
    prefix = unique("packed")
    rows = [packed_order("SPY", "buy", 1, price=49000 + i, client_order_id=f"{prefix}-{i}")
            for i in range(20)]
    rows.append(packed_order("SPY", "buy", 1, price=49000, client_order_id=f"{prefix}-0"))
    rows.append(packed_order("SPY", "sell", 2, time_in_force="ioc",
                             client_order_id=f"{prefix}-take"))
    reply = alice.submit_packed(rows)
    assert len(reply.order_ids) == 22 and all(reply.order_ids[:20])
    (rejection,) = reply.rejections
    assert rejection.index == 20
    assert rejection.code == pb.REJECT_CODE_DUPLICATE_CLIENT_ORDER_ID
    assert rejection.order_id == reply.order_ids[0]
    # the market sell found at least the 20 lots bid above: filled whole, nothing left open
    assert reply.filled_quantities[21] == 2 and reply.open_quantities[21] == 0
    assert reply.filled_quantities[0] == 0 and reply.open_quantities[0] == 1
    assert alice.order(reply.order_ids[0]).client_order_id == f"{prefix}-0"
    with pytest.raises(InvalidRequestError) as caught:
        alice.submit_packed([packed_order("SPY", "buy", 0, price=49000)])
    assert caught.value.details.startswith("packed_orders[0].quantity:"), caught.value.details
    with pytest.raises(InvalidRequestError) as caught:
        alice.submit_packed([("", "x", "SPY", 1, 1, 0, "ten")])
    assert caught.value.details.startswith("packed_orders[0].quantity:"), caught.value.details
    both = pb.SubmitOrdersRequest(orders=[new_order("SPY", "buy", 1, price=49000)],
                                  packed_orders=msgspec.msgpack.encode(
                                      [packed_order("SPY", "buy", 1, price=49000)]))
    with pytest.raises(InvalidRequestError) as caught:
        alice._call("SubmitOrders", both)
    assert caught.value.details.startswith("packed_orders: set orders or packed_orders")
    assert alice.mass_cancel("SPY").cancelled_orders >= 18  # 20 bids, 2 lots sold


def test_a_retried_order_is_never_entered_twice(alice: TradingClient) -> None:
    """Resending an order with its client order id is answered with the original order."""
    order = new_order("AAPL", "buy", 1, price=18000, client_order_id=unique("retry"))
    (first,) = alice.submit(order)
    (again,) = alice.submit(order)
    assert again.type == pb.EXECUTION_TYPE_REJECTED
    assert again.reject_code == pb.REJECT_CODE_DUPLICATE_CLIENT_ORDER_ID
    assert again.order_id == first.order_id


def test_business_rejects_are_reports_not_statuses(alice: TradingClient, ops: TradingClient
                                                   ) -> None:
    """A shard's risk or matching refusal comes back OK, as a REJECTED report with a code."""
    ops.set_risk_limits("alice", "BTC-USD", max_order_quantity=5)
    (report,) = alice.submit_order("BTC-USD", "buy", 6, price=9500000)
    assert report.type == pb.EXECUTION_TYPE_REJECTED
    assert report.reject_code == pb.REJECT_CODE_RISK_MAX_ORDER_QUANTITY and report.text
    (report,) = alice.submit_order("BTC-USD", "sell", 1, time_in_force="fok")
    assert report.reject_code in (pb.REJECT_CODE_NO_LIQUIDITY, pb.REJECT_CODE_FOK_NOT_FILLABLE)


# ------------------------------------------------------------------------------ statuses


def test_malformed_fields_are_invalid_argument_naming_the_field(alice: TradingClient) -> None:
    """INVALID_ARGUMENT says which field and why."""
    cases = {
        "quantity": new_order("AAPL", "buy", 0, price=100),
        "price": new_order("ESZ6", "buy", 1, price=560010),
        "symbol": new_order("NOPE", "buy", 1, price=100),
        "side": pb.NewOrderRequest(client_order_id="x", symbol="AAPL", side=9,  # type: ignore[arg-type]
                                   order_type=pb.ORDER_TYPE_LIMIT, quantity=1, price=1),
    }
    for field, request in cases.items():
        with pytest.raises(InvalidRequestError) as caught:
            alice.submit(request)
        assert caught.value.details.startswith(f"{field}:"), caught.value.details


def test_halted_symbols_and_killed_accounts_are_failed_precondition(
    alice: TradingClient, ops: TradingClient
) -> None:
    """The gateway refuses orders for a halted symbol or a killed account, until released."""
    assert ops.halt("EURUSD").applied
    try:
        with pytest.raises(NotTradableError, match="halted"):
            alice.submit_order("EURUSD", "buy", 1000, price=108000)
    finally:
        ops.halt("EURUSD", halted=False)
    alice.submit_order("EURUSD", "buy", 1000, price=107000)
    response = ops.kill_switch("alice")
    assert response.applied and response.cancelled_orders >= 1 and len(response.seqs) == 2
    try:
        with pytest.raises(NotTradableError, match="kill switch"):
            alice.submit_order("AAPL", "buy", 1, price=100)
    finally:
        ops.kill_switch("alice", engaged=False)
    alice.submit_order("AAPL", "buy", 1, price=100)


def test_unknown_orders_are_not_found(alice: TradingClient) -> None:
    """GetOrder of an order that is not open is NOT_FOUND; so is a cancel whose order id
    cannot be in the symbol's shard."""
    with pytest.raises(OrderNotFoundError):
        alice.order(1 << 45)
    (accepted,) = alice.submit_order("AAPL", "buy", 1, price=101)
    other = "MSFT" if accepted.order_id >> 40 != 1 else "AAPL"
    instruments = {i.symbol: i.shard for i in alice.instruments().instruments}
    wrong = next(s for s in instruments if instruments[s] != accepted.order_id >> 40)
    assert other
    with pytest.raises(OrderNotFoundError):
        alice.cancel_order(wrong, accepted.order_id)


def test_oversize_messages_are_refused(alice: TradingClient) -> None:
    """A request beyond the message size limit is RESOURCE_EXHAUSTED, the server stays up."""
    huge = new_order("AAPL", "buy", 1, price=100)
    huge.client_order_id = "x" * (9 << 20)
    with pytest.raises(RateLimitedError):  # RESOURCE_EXHAUSTED
        alice.submit(huge)
    assert alice.instruments().shards == 2


# ------------------------------------------------------------------------------ authn / authz


@pytest.mark.parametrize("secret", [None, "wrong-token"])
def test_missing_or_wrong_tokens_are_unauthenticated(deployment: Deployment,
                                                     secret: str | None) -> None:
    """Without a known bearer token, every call is UNAUTHENTICATED."""
    channel = grpc.insecure_channel(deployment.plain)
    stub = pb_grpc.TradingServiceStub(channel)
    admin = pb_grpc.AdminServiceStub(channel)
    metadata = () if secret is None else (("authorization", f"Bearer {secret}"),)
    calls = [
        lambda: stub.ListInstruments(pb.ListInstrumentsRequest(), metadata=metadata, timeout=5),
        lambda: stub.SubmitOrder(new_order("AAPL", "buy", 1, price=1), metadata=metadata,
                                 timeout=5),
        lambda: stub.GetBook(pb.GetBookRequest(symbol="AAPL"), metadata=metadata, timeout=5),
        lambda: next(iter(stub.StreamExecutions(pb.StreamExecutionsRequest(),
                                                metadata=metadata, timeout=5))),
        lambda: admin.GetStatus(pb.GetStatusRequest(), metadata=metadata, timeout=5),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    channel.close()


def test_a_client_cannot_act_for_another_account(alice: TradingClient, bob: TradingClient
                                                 ) -> None:
    """Every call naming another account is PERMISSION_DENIED; nothing reaches a shard."""
    calls = [
        lambda: alice.submit_order("AAPL", "buy", 1, price=100, account="bob"),
        lambda: alice.cancel_order("AAPL", 1, account="bob"),
        lambda: alice.replace_order("AAPL", 1, 100, 1, account="bob"),
        lambda: alice.mass_cancel(account="bob"),
        lambda: alice.order(1, account="bob"),
        lambda: alice.open_orders(account="bob"),
        lambda: alice.positions(account="bob"),
        lambda: next(iter(alice.stream_executions(["bob"], resume=False))),
        lambda: alice.submit_orders([new_order("AAPL", "buy", 1, price=100),
                                     new_order("AAPL", "buy", 1, price=100, account="bob")]),
    ]
    for call in calls:
        with pytest.raises(PermissionDeniedError, match="'bob'"):
            call()


def test_another_accounts_order_is_neither_readable_nor_cancellable(
    alice: TradingClient, bob: TradingClient
) -> None:
    """Reading bob's order as alice is NOT_FOUND; cancelling it is the shard's rejection, as for
    an order that is not open (so no one learns which order ids are live)."""
    (accepted,) = bob.submit_order("AAPL", "sell", 1, price=19999)
    with pytest.raises(OrderNotFoundError):
        alice.order(accepted.order_id)
    (report,) = alice.cancel_order("AAPL", accepted.order_id)
    assert report.type == pb.EXECUTION_TYPE_REJECTED
    assert report.reject_code == pb.REJECT_CODE_ORDER_NOT_OPEN
    assert bob.order(accepted.order_id).open_quantity == 1


def test_admin_calls_need_the_admin_role(alice: TradingClient, ops: TradingClient) -> None:
    """Admin RPCs are PERMISSION_DENIED for a trading token; the admin gets status."""
    for call in (lambda: alice.halt("AAPL"), lambda: alice.kill_switch("bob"),
                 lambda: alice.set_risk_limits("alice", max_position=1), alice.status):
        with pytest.raises(PermissionDeniedError, match="admin role"):
            call()
    status = ops.status()
    assert [shard.up for shard in status.shards] == [True, True]
    assert {s.name for s in status.supervisors} >= {"supervisor", "supervisor-gateways"}


def test_a_multi_account_token_must_name_the_account(deployment: Deployment) -> None:
    """With several accounts an empty account is INVALID_ARGUMENT; a named one works."""
    with deployment.client("desk") as desk:
        with pytest.raises(InvalidRequestError, match="account: is required"):
            desk.submit_order("AAPL", "buy", 1, price=100)
        (report,) = desk.submit_order("AAPL", "buy", 1, price=100, account="d2")
        assert report.account == "d2"


# ------------------------------------------------------------------------------ transport


def test_tls_handshake_and_the_rate_limit(deployment: Deployment) -> None:
    """A client that trusts the CA talks TLS; past its rate it gets RESOURCE_EXHAUSTED."""
    tls = ClientTls(ca_file=deployment.certificates.ca)
    with TradingClient(deployment.tls, token("carol"), tls=tls) as client:
        assert client.instruments().shards == 2
        with pytest.raises(RateLimitedError) as caught:
            for _ in range(20):
                client.open_orders()
        assert caught.value.retry_after_s is not None and caught.value.retry_after_s > 0


def test_tls_with_a_wrong_ca_fails_the_handshake(deployment: Deployment) -> None:
    """A client that does not trust the server's CA cannot connect."""
    tls = ClientTls(ca_file=deployment.certificates.other_ca)
    with (
        TradingClient(deployment.tls, token("carol"), tls=tls, retries=0, timeout_s=3) as client,
        pytest.raises(GatewayUnavailableError),
    ):
        client.instruments()


def test_mutual_tls_requires_a_client_certificate_from_the_ca(deployment: Deployment) -> None:
    """mTLS: a client certificate signed by the configured CA is required."""
    certificates = deployment.certificates
    good = ClientTls(ca_file=certificates.ca, certificate_file=certificates.client_certificate,
                     private_key_file=certificates.client_key)
    with TradingClient(deployment.mutual_tls, token("carol"), tls=good) as client:
        assert client.instruments().shards == 2
    for tls in (
        ClientTls(ca_file=certificates.ca),
        ClientTls(ca_file=certificates.ca, certificate_file=certificates.stranger_certificate,
                  private_key_file=certificates.stranger_key),
    ):
        with TradingClient(deployment.mutual_tls, token("carol"), tls=tls, retries=0,
                           timeout_s=3) as client, pytest.raises(GatewayUnavailableError):
            client.instruments()


def test_health_and_reflection(deployment: Deployment) -> None:
    """grpc.health.v1 says SERVING; reflection lists the services (what grpcurl uses)."""
    channel = grpc.insecure_channel(deployment.plain)
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "raytrade.v1.TradingService", "raytrade.v1.AdminService"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    (answer,) = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = {service.name for service in answer.list_services_response.service}
    assert names >= {"raytrade.v1.TradingService", "raytrade.v1.AdminService",
                     "grpc.health.v1.Health"}
    (answer,) = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="raytrade.v1.TradingService")]), timeout=5
    )
    assert answer.file_descriptor_response.file_descriptor_proto
    channel.close()


# ------------------------------------------------------------------------------ streams


def journal_reports(deployment: Deployment, account: str, after: dict[int, int]
                    ) -> set[tuple[int, int, int, int]]:
    """The account's reports after the cursor, from the shards' journals (the truth)."""
    registry = InstrumentRegistry.load()
    shard_map = deployment.cluster.shard_map
    converter = Converter(registry.instruments,
                          {i.symbol: shard_map.shard_of(i.symbol) for i in registry.instruments})
    found = set()
    for shard in range(2):
        history = JournalHistory(
            shard_directory(deployment.data_dir, shard), shard,
            [i for i in registry.instruments if shard_map.shard_of(i.symbol) == shard],
            deployment.cluster.topology.config.client_order_id_window,
        )
        for events in history.events(after.get(shard, 0) + 1):
            for report in converter.reports(
                [e for e in events if concerns(e, {account})], shard, (account,)
            ):
                found.add((report.shard, report.seq, report.type, report.order_id))
    return found


def drain(stream_iterator: Iterator[pb.ExecutionBatch], until: dict[int, int],
          seen: list[tuple[int, int, int, int]]) -> dict[int, int]:
    cursor: dict[int, int] = {}
    for batch in stream_iterator:
        seen.extend((r.shard, r.seq, r.type, r.order_id) for r in batch.reports)
        cursor = dict(batch.cursor)
        if all(cursor.get(shard, 0) >= seq for shard, seq in until.items()):
            break
    return cursor


def heads(ops: TradingClient) -> dict[int, int]:
    return {shard.shard: shard.next_seq - 1 for shard in ops.status().shards}


def test_execution_stream_resumes_after_a_dropped_connection(
    deployment: Deployment, ops: TradingClient
) -> None:
    """Drop the stream, trade meanwhile, resume from the cursor: no gap, no duplicate.

    The plaintext gateway keeps only 200 events per shard, so the resume reads the journal.
    """
    with deployment.client("carol") as carol, deployment.client("bob") as bob:
        stream = carol.stream_executions(resume=False)
        iterator = iter(stream)
        start = dict(next(iterator).cursor)
        for price in range(19000, 19010):
            carol.submit_order("AAPL", "sell", 1, price=price)
        bob.submit_order("AAPL", "buy", 4, price=19003)
        seen: list[tuple[int, int, int, int]] = []
        cursor = drain(iterator, heads(ops), seen)
        stream.close()
        # while disconnected: fills, cancels, a replace, and enough noise to leave the ring
        bob.submit_order("AAPL", "buy", 3, price=19009)
        reports = carol.submit_order("MSFT", "buy", 2, price=40000)
        carol.replace_order("MSFT", reports[0].order_id, 40001, 1)
        carol.mass_cancel("MSFT")
        bob.submit_orders([new_order("NVDA", "buy", 1, price=11000 + i) for i in range(300)])
        bob.mass_cancel("NVDA")
        resumed = carol.stream_executions(after_seq=cursor)
        drain(iter(resumed), heads(ops), seen)
        resumed.close()
    assert len(seen) == len(set(seen)), "a report was delivered twice"
    assert set(seen) == journal_reports(deployment, "carol", start)


def test_cancel_on_disconnect(deployment: Deployment) -> None:
    """With cancel_on_disconnect, closing the stream cancels the account's resting orders."""
    with deployment.client("carol") as carol:
        stream = carol.stream_executions(cancel_on_disconnect=True, resume=False)
        iterator = iter(stream)
        next(iterator)
        for price in (100, 101, 102):  # SPY is in shard 1, BTC-USD in shard 0
            carol.submit_order("SPY", "buy", 1, price=price)
        carol.submit_order("BTC-USD", "buy", 1, price=100)
        assert len(carol.open_orders("SPY")) == 3
        stream.close()
        deadline = time.monotonic() + 10
        while carol.open_orders() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert carol.open_orders() == []


def test_market_data_snapshot_and_deltas_reproduce_the_book(
    alice: TradingClient, bob: TradingClient
) -> None:
    """A LocalBook fed the stream (snapshot, level updates, trades) equals GetBook."""
    symbol = "ESZ6"
    alice.submit_order(symbol, "buy", 3, price=559000)
    book = LocalBook()
    errors: list[BaseException] = []
    stop = threading.Event()
    stream = alice.stream_market_data([symbol])

    def follow() -> None:
        try:
            for batch in stream:
                for update in batch.updates:
                    book.apply(update)
                if stop.is_set():
                    return
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    for step in range(20):
        alice.submit_order(symbol, "buy", 1 + step % 3, price=558000 + 25 * (step % 7))
        bob.submit_order(symbol, "sell", 1 + step % 2, price=560000 - 25 * (step % 5))
    bob.submit_order(symbol, "sell", 5, price=558000)
    expected = alice.book(symbol, depth=1000)
    deadline = time.monotonic() + 10
    want = ([(x.price, x.quantity, x.order_count) for x in expected.bids],
            [(x.price, x.quantity, x.order_count) for x in expected.asks])
    while book.levels(symbol) != want and time.monotonic() < deadline and not errors:
        time.sleep(0.05)
    reproduced = book.levels(symbol)
    stop.set()
    alice.submit_order(symbol, "buy", 1, price=400000)  # wakes the reader so it can stop
    thread.join(timeout=5)
    assert not errors, errors
    assert reproduced == want
    assert book.trades.get(symbol)


# ------------------------------------------------------------------------------ fuzz

identifiers = st.one_of(st.just(""), st.text(max_size=8), st.text(min_size=60, max_size=70),
                        st.just("x" * 100_000), st.just("ok-id"))
integers = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from(
    [0, 1, -1, 25, 1000, 18950, 2**63 - 1, -(2**63)]))
enums = st.one_of(st.integers(0, 3), st.integers(-(2**31), 2**31 - 1))


@st.composite
def fuzzed_orders(draw: st.DrawFn) -> pb.NewOrderRequest:
    request = pb.NewOrderRequest()
    for field, values in (
        ("account", st.sampled_from(["", "fuzz", "bob", "x" * 70])),
        ("client_order_id", identifiers),
        ("symbol", st.one_of(st.sampled_from(["AAPL", "ESZ6", "EURUSD", "", "NOPE"]),
                             st.text(max_size=40))),
        ("side", enums), ("order_type", enums), ("time_in_force", enums),
        ("self_trade_prevention", enums),
        ("quantity", integers), ("price", integers),
        ("price_decimal", st.one_of(st.just(""), st.sampled_from(["189.5", "1e9", "NaN", "-1"]),
                                    st.text(max_size=45))),
        ("post_only", st.booleans()),
    ):
        if draw(st.booleans()):  # leave some fields unset (missing)
            setattr(request, field, draw(values))
    return request


PRECISE = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT,
           grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION}


@pytest.mark.slow
def test_fuzzed_requests_get_precise_statuses_and_invalid_ones_change_nothing(
    deployment: Deployment, ops: TradingClient
) -> None:
    """Random, extreme, oversize and missing fields: the server answers every request with
    a precise status, INVALID_ARGUMENT names a field, and a refused request journals nothing."""
    channel = grpc.insecure_channel(deployment.plain, options=[
        ("grpc.max_send_message_length", 64 << 20)])
    stub = pb_grpc.TradingServiceStub(channel)
    metadata = (("authorization", "Bearer fuzz-token"),)
    statuses: dict[grpc.StatusCode, int] = {}

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(request=fuzzed_orders())
    def check(request: pb.NewOrderRequest) -> None:
        before = heads(ops)
        try:
            stub.SubmitOrder(request, metadata=metadata, timeout=10)
            code = grpc.StatusCode.OK
        except grpc.RpcError as error:
            code = error.code()
            assert code in PRECISE, (code, error.details())
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                field = error.details().split(":")[0]
                assert field in pb.NewOrderRequest.DESCRIPTOR.fields_by_name, error.details()
            assert heads(ops) == before, "a refused request changed a shard"
        statuses[code] = statuses.get(code, 0) + 1

    check()
    channel.close()
    assert statuses.get(grpc.StatusCode.INVALID_ARGUMENT, 0) > 0
    assert ray.get(deployment.gateways.handle("gateway-0").ping.remote())


# ------------------------------------------------------------------------------ empty batches


def test_a_mass_cancel_with_nothing_to_cancel_keeps_the_shard_serving(
    deployment: Deployment, ops: TradingClient
) -> None:
    """A mass cancel for an account without resting orders answers with no reports, and the
    shard keeps serving (a batch that makes no events is not journaled)."""
    with deployment.client("fuzz") as client:
        assert client.mass_cancel("AAPL").cancelled_orders == 0
        client.book("AAPL")
        client.submit_order("AAPL", "buy", 1, price=1)
