"""A shard's own front end: orders over gRPC into the book actor's process, no Ray call.

Through a gateway, one order crosses two processes (client -> gateway -> book actor) and pays a
gRPC call and a Ray call, ~1.1 ms and ~1.6 ms of CPU here at 200 orders/s (issue 10): the
single-order targets cannot be met with two hops. A client that routes by symbol can skip the
second one: each book actor may serve the order methods of `raytrade.v1.TradingService` for
its own shard's symbols from its own process (`DirectFrontEnd`, started by the book actor
through ``front_end_factory`` once it has recovered), on ``front_end.port + shard``.

What it serves, and how it differs from a gateway:

* ``SubmitOrder``, ``SubmitOrders`` (typed or packed), ``CancelOrder`` and ``ReplaceOrder``,
  authenticated, validated, rate-limited and answered by the gateway's own code
  (`cluster.gateway.service.TradingService`, over `DirectCore` instead of `GatewayCore`), so
  the same request gets the same answer; concurrent requests share one batch and one fsync
  (the gateway's `ShardBatcher`). Every other method (streams, queries, admin) is the
  gateways' and answers UNIMPLEMENTED naming them.
* An order for another shard's symbol is refused (INVALID_ARGUMENT naming the shard), never
  forwarded.
* A halted symbol or a killed account is answered by the shard's own reject (an
  ``OrderRejected`` report, RISK_SYMBOL_HALTED / RISK_KILL_SWITCH, journaled like any other)
  where a gateway refuses the request before the shard (FAILED_PRECONDITION): the front end
  does not follow the shard's events, the book decides.
* Client order ids are unique per shard (the shard's own window), not across shards: a
  gateway also refuses an id its account used on another shard, which a front end cannot
  see. A retry with the same id to the same front end is safe as through a gateway
  (``DUPLICATE_CLIENT_ORDER_ID`` naming the order).
* Rate limits are per front end (per shard), as they are per gateway.
* Its events reach the readers and every gateway's streams as any batch's do (the book
  publishes them after the reply).

The server runs in its own thread and event loop; the book actor's lock keeps its batches and
Ray's calls one at a time (`actors.book_actor`). A fixed port that is taken is tried again
for ``bind_retry_s`` (a restarted book's predecessor may hold it for a moment); a front end
that cannot start (the port still taken, TLS files unreadable) is logged and shows in the
shard's status (``front_end: failed: ...``); the shard serves through the gateways all the
same.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from actors.core.engine import ORDER_ID_SHARD_BITS
from cluster.config import ClusterConfig, ShardMap
from cluster.gateway.auth import RateLimiter, TokenRegistry
from cluster.gateway.batching import ShardBatcher
from cluster.gateway.config import GatewayConfig
from cluster.gateway.core import SYSTEM_CLOCK, Clock
from cluster.gateway.server import TRADING_SERVICE, bind_error, channel_options, server_credentials
from cluster.gateway.service import TradingService, add_to_server
from protocols.convert import Converter, WireRow
from protocols.errors import InvalidFieldError, OrderNotFoundError, ShardUnavailableError
from protocols.messages import Command, Event, Instrument, NewOrder, ReplaceOrder

log = logging.getLogger(__name__)

Apply = Callable[[bytes, str, Sequence[str]], bytes]
"""`BookActor.apply_batch_with_ends`: (payload, origin, traceparents) -> reply."""

SERVED = ("SubmitOrder", "SubmitOrders", "CancelOrder", "ReplaceOrder")
"""The TradingService methods a shard's front end serves; the gateways serve the rest."""


class DirectCore:
    """What `TradingService`'s order methods need of a gateway's core, for one shard in its own
    process: rate limits, the shard check, and a batcher whose calls are in-process."""

    def __init__(self, shard: int, name: str, config: GatewayConfig, symbol_shard: dict[str, int],
                 apply: Apply, clock: Clock = SYSTEM_CLOCK) -> None:
        self.shard = shard
        self.name = name
        self.clock = clock
        self.symbol_shard = symbol_shard
        self.limiter = RateLimiter(config.requests_per_second, config.request_burst,
                                   clock.monotonic)
        self._apply = apply
        # one batch at a time: the call runs in this thread, so what arrives meanwhile waits
        # for the next batch, whatever ``max_in_flight_per_shard`` says for the gateways
        self.batcher = ShardBatcher(shard, self._send, max_batch_commands=config.max_batch_commands,
                                    max_in_flight=1, max_queued=config.max_queued_commands,
                                    linger_s=config.linger_s)

    async def _send(self, payload: bytes, traceparents: Sequence[str] = ()) -> bytes:
        # origin "": the book publishes this batch to every reader and gateway
        try:
            return self._apply(payload, "", traceparents)
        except Exception as error:
            raise ShardUnavailableError(self.shard, f"{type(error).__name__}: {error}") from error

    def _check_shard(self, symbol: str, where: str = "") -> None:
        shard = self.symbol_shard[symbol]  # the converter has checked the symbol exists
        if shard != self.shard:
            raise InvalidFieldError(
                f"{where}symbol", f"{symbol!r} is traded on shard {shard}, and this is shard "
                f"{self.shard}'s front end: send it to shard {shard}'s or to a gateway")

    def take_rate(self, account: str, cost: int = 1) -> None:
        """Spend the account's request budget at this front end."""
        self.limiter.take(account, cost)

    def check_tradable(self, command: NewOrder | ReplaceOrder, where: str = "") -> None:
        """Refuse an order of another shard (halts and kill switches: the shard decides)."""
        self._check_shard(command.symbol, where)

    def check_batch_tradable(self, accounts: Sequence[str], symbols: Sequence[str],
                             shards: Sequence[int]) -> None:
        """Refuse a batch with an order of another shard (by index)."""
        for index, shard in enumerate(shards):
            if shard != self.shard:
                self._check_shard(symbols[index], f"orders[{index}].")

    def check_order_shard(self, symbol: str, order_id: int) -> int:
        """Refuse another shard's symbol; raise `OrderNotFoundError` for another's order id."""
        self._check_shard(symbol)
        if order_id >> ORDER_ID_SHARD_BITS != self.shard:
            raise OrderNotFoundError(f"order {order_id} is not an order of {symbol!r}")
        return self.shard

    async def route_to_shard(self, command: Command) -> tuple[int, list[Event]]:
        """Apply one command (with whatever else waits); return the shard and its events."""
        (events,) = await self.batcher.enqueue([command])
        return self.shard, events

    async def route_many(self, commands: Sequence[Command | WireRow], shards: Sequence[int]
                         ) -> list[tuple[int, list[Event]]]:
        """Apply commands of this shard in order; return each one's shard and events."""
        replies = await self.batcher.enqueue(commands)
        return [(self.shard, events) for events in replies]


class DirectTradingService(TradingService):
    """`TradingService` over a `DirectCore`: the order methods; every other one answers
    UNIMPLEMENTED (see the module docstring)."""


def _elsewhere(name: str, streaming: bool) -> Any:
    details = (f"{name} is served by the gateways; a shard's front end serves only "
               f"{', '.join(SERVED)}")

    if streaming:
        async def stream(self: Any, request: Any, context: Any) -> AsyncIterator[Any]:
            context.set_code(grpc.StatusCode.UNIMPLEMENTED)
            context.set_details(details)
            return
            yield  # an async generator, as gRPC expects of a streaming method

        stream.__name__ = name
        return stream

    async def unary(self: Any, request: Any, context: Any) -> None:
        context.set_code(grpc.StatusCode.UNIMPLEMENTED)
        context.set_details(details)

    unary.__name__ = name
    return unary


def _close_off_the_rest() -> None:
    from protocols.generated import trading_pb2 as pb

    for method in pb.DESCRIPTOR.services_by_name["TradingService"].methods:
        if method.name not in SERVED:
            setattr(DirectTradingService, method.name,
                    _elsewhere(method.name, method.server_streaming))


_close_off_the_rest()


class DirectFrontEnd:
    """A shard's front end: a ``grpc.aio`` server on its own thread and event loop."""

    def __init__(self, shard: int, config: GatewayConfig, cluster: ClusterConfig,
                 instruments: Sequence[Instrument], pins: dict[str, int], apply: Apply,
                 *, bind_retry_s: float = 10.0) -> None:
        self.shard = shard
        self.config = config
        self.bind_retry_s = bind_retry_s
        """How long a fixed port that is taken is tried again: a book actor restarted by a kill
        may start while its predecessor's process still holds the port (Ray's kill is
        asynchronous)."""
        self.name = f"shard-{shard}-front-end"
        shard_map = ShardMap(cluster.shards, pins)
        symbol_shard = {i.symbol: shard_map.shard_of(i.symbol) for i in instruments}
        self.core = DirectCore(shard, self.name, config, symbol_shard, apply)
        self.service = DirectTradingService(
            self.core, TokenRegistry(config.tokens),  # type: ignore[arg-type]
            Converter(list(instruments), symbol_shard), config)
        self.port = 0
        self.failure: str | None = None
        self._loop = asyncio.new_event_loop()
        self._server: grpc.aio.Server | None = None
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    @property
    def address(self) -> str:
        """``host:port`` while it serves, ``failed: <why>`` if it could not start."""
        if self.failure is not None:
            return f"failed: {self.failure}"
        return f"{self.config.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        """Bind and serve; return once it serves or failed (see ``failure``)."""
        self._thread.start()
        if not self._ready.wait(timeout_s):
            self.failure = f"not serving after {timeout_s:.0f} s"
        if self.failure is None:
            log.info("shard %d front end serving on %s (%s)", self.shard, self.address,
                     "TLS" if self.config.tls else "plaintext")
        else:
            log.error("shard %d front end did not start: %s; orders reach the shard through "
                      "the gateways only", self.shard, self.failure)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except Exception as error:  # recorded for the status; the thread ends
            self.failure = f"{type(error).__name__}: {error}"
            log.exception("shard %d front end stopped", self.shard)
        finally:
            self._ready.set()
            self._loop.close()

    async def _serve(self) -> None:
        self._stopped = asyncio.Event()
        server = grpc.aio.server(
            options=[*channel_options(self.config.max_message_bytes), ("grpc.so_reuseport", 0)],
            maximum_concurrent_rpcs=self.config.max_concurrent_rpcs,
        )
        add_to_server(self.service, TRADING_SERVICE, server)
        checks = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(checks, server)
        port = self.config.port + self.shard if self.config.port else 0
        credentials = server_credentials(self.config)
        address = f"{self.config.host}:{port}"
        deadline = time.monotonic() + self.bind_retry_s
        while True:
            try:
                bound = (server.add_insecure_port(address) if credentials is None
                         else server.add_secure_port(address, credentials))
            except RuntimeError:
                bound = 0
            if bound:
                break
            if not port or time.monotonic() >= deadline:
                raise bind_error(self.config.host, port)
            await asyncio.sleep(0.25)
        await server.start()
        for service in ("", TRADING_SERVICE):
            await checks.set(service, health_pb2.HealthCheckResponse.SERVING)
        self._server, self.port = server, int(bound)
        self._ready.set()
        await self._stopped.wait()
        await server.stop(self.config.grace_s)
        await self.core.batcher.close()

    def stop(self) -> None:
        """Stop serving (calls in progress get ``grace_s`` to finish)."""
        stopped = self._stopped
        if stopped is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(stopped.set)
        self._thread.join(timeout=self.config.grace_s + 5)


class DirectFrontEndFactory:
    """Start a shard's `DirectFrontEnd` in its book actor's process (picklable): the book
    actor's ``front_end_factory``."""

    def __init__(self, config: GatewayConfig, cluster: ClusterConfig,
                 instruments: Sequence[Instrument], pins: dict[str, int]) -> None:
        self.config = config
        self.cluster = cluster
        self.instruments = list(instruments)
        self.pins = dict(pins)

    def __call__(self, book: Any) -> DirectFrontEnd:
        front_end = DirectFrontEnd(book.shard_id, self.config, self.cluster, self.instruments,
                                   self.pins, book.apply_batch_with_ends)
        front_end.start()
        return front_end
