"""A shard's front end without Ray: its core (`DirectCore`) refuses what is another shard's
and batches its in-process calls to the book; its server (`DirectFrontEnd`, real gRPC on
127.0.0.1 over a stand-in book) serves the order methods, sends the rest to the gateways, and
stops."""

from __future__ import annotations

import asyncio
import socket
import threading

import msgspec
import pytest

from cluster.clients.grpc_client import TradingClient
from cluster.config import ClusterConfig, InstrumentRegistry
from cluster.gateway.auth import hash_token
from cluster.gateway.config import GatewayConfig, TokenEntry
from cluster.gateway.direct import DirectCore, DirectFrontEnd
from protocols.errors import (
    InvalidFieldError,
    OrderNotFoundError,
    RaytradeError,
    ShardUnavailableError,
    UnavailableError,
)
from protocols.messages import (
    CancelOrder,
    Command,
    Event,
    NewOrder,
    Side,
    TimeInForce,
    decode_commands,
)

SYMBOL_SHARD = {"AAPL": 0, "MSFT": 1}


class FakeBook:
    """Answers `apply_batch_with_ends` as a book does: one accept-like end per command."""

    def __init__(self) -> None:
        self.batches: list[list[Command]] = []
        self.failing = False

    def apply(self, payload: bytes, origin: str, traceparents: object) -> bytes:
        if self.failing:
            raise RuntimeError("shard 0 stopped serving: journal append failed")
        assert origin == ""  # published to every reader and gateway
        commands = decode_commands(payload)
        self.batches.append(commands)
        return msgspec.msgpack.encode([[0] * len(commands), []])


def order(symbol: str, client_order_id: str = "c1") -> NewOrder:
    return NewOrder(account="ida", client_order_id=client_order_id, symbol=symbol,
                    side=Side.BUY, price=100, quantity=1, time_in_force=TimeInForce.GTC,
                    ts_ns=1)


def core(book: FakeBook) -> DirectCore:
    return DirectCore(0, "shard-0-front-end", GatewayConfig(requests_per_second=1e9),
                      SYMBOL_SHARD, book.apply)


def test_another_shards_symbol_or_order_is_refused_naming_its_shard() -> None:
    direct = core(FakeBook())
    direct.check_tradable(order("AAPL"))
    with pytest.raises(InvalidFieldError, match="shard 1"):
        direct.check_tradable(order("MSFT"))
    with pytest.raises(InvalidFieldError, match=r"orders\[1\]\.symbol"):
        direct.check_batch_tradable(["ida", "ida"], ["AAPL", "MSFT"], [0, 1])
    assert direct.check_order_shard("AAPL", 5) == 0
    with pytest.raises(OrderNotFoundError):
        direct.check_order_shard("AAPL", (1 << 40) | 5)  # an order id of shard 1


def test_concurrent_requests_share_one_in_process_batch() -> None:
    book = FakeBook()
    direct = core(book)

    async def send() -> list[tuple[int, list[Event]]]:
        return list(await asyncio.gather(*(direct.route_to_shard(order("AAPL", f"c{i}"))
                                           for i in range(5))))

    answers = asyncio.run(send())
    assert answers == [(0, [])] * 5
    assert [len(batch) for batch in book.batches] == [5]


def test_a_book_that_fails_answers_shard_unavailable() -> None:
    book = FakeBook()
    book.failing = True
    direct = core(book)
    cancel = CancelOrder(account="ida", client_order_id="x", symbol="AAPL", order_id=1, ts_ns=1)
    with pytest.raises(ShardUnavailableError, match="journal append failed"):
        asyncio.run(direct.route_to_shard(cancel))


def test_the_server_serves_orders_sends_the_rest_elsewhere_and_stops(tmp_path: object) -> None:
    book = FakeBook()
    registry = InstrumentRegistry.load()
    config = GatewayConfig(port=0, tokens=[TokenEntry(sha256=hash_token("t"), name="ida",
                                                      accounts=["ida"])])
    front_end = DirectFrontEnd(0, config, ClusterConfig(shards=2), registry.instruments,
                               dict(registry.pins), book.apply)
    front_end.start()
    assert front_end.failure is None and front_end.address.startswith("127.0.0.1:")
    try:
        with TradingClient(front_end.address, "t", retries=0) as client:
            assert client.submit_order("AAPL", "buy", 1, price=18_950) == []  # no events
            assert [len(batch) for batch in book.batches] == [1]
            with pytest.raises(RaytradeError, match="served by the gateways"):
                client.positions()
    finally:
        front_end.stop()
    with TradingClient(front_end.address, "t", retries=0, timeout_s=2.0) as client, \
            pytest.raises(UnavailableError):
        client.submit_order("AAPL", "buy", 1, price=18_950)


def test_a_front_end_that_cannot_bind_says_why_and_does_not_raise() -> None:
    """Its port taken for longer than it retries: the book actor's constructor must not fail
    for it (the shard still serves through the gateways); the address says what happened."""
    registry = InstrumentRegistry.load()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        front_end = DirectFrontEnd(0, GatewayConfig(port=port), ClusterConfig(shards=2),
                                   registry.instruments, dict(registry.pins), FakeBook().apply,
                                   bind_retry_s=0.3)
        front_end.start()
    assert front_end.address.startswith("failed: ") and str(port) in front_end.address
    front_end.stop()


def test_a_port_freed_while_it_retries_is_taken() -> None:
    """A restarted book's predecessor may still hold the port for a moment: the front end
    binds once it is free, on the same port."""
    registry = InstrumentRegistry.load()
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    front_end = DirectFrontEnd(0, GatewayConfig(port=port), ClusterConfig(shards=2),
                               registry.instruments, dict(registry.pins), FakeBook().apply)
    releaser = threading.Timer(0.5, holder.close)
    releaser.start()
    try:
        front_end.start()
        assert front_end.address == f"127.0.0.1:{port}"
    finally:
        releaser.join()
        front_end.stop()
