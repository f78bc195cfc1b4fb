"""The Python client of raytrade's gRPC gateways: typed helpers over the generated stubs.

    from cluster.clients.grpc_client import TradingClient, ClientTls

    with TradingClient("127.0.0.1:50051", token="...") as client:
        reports = client.submit_order("AAPL", "buy", 10, price=18950)
        for batch in client.stream_executions():       # resumes by itself after a drop
            ...

What it adds to the raw stubs:

* the bearer token on every call, TLS and mutual TLS from PEM files, message size limits;
* safe retries: an order, cancel or replace that meets UNAVAILABLE or DEADLINE_EXCEEDED is
  sent again with the same client order id, which the shard recognises (a resent order it
  already has is answered with DUPLICATE_CLIENT_ORDER_ID naming the original), so a retry never
  trades twice;
* an execution stream that reconnects after a dropped connection (to the next gateway in
  ``targets`` if several) and resumes from its per-shard cursor: nothing missed, nothing twice;
* a market-data stream with `LocalBook`, which applies snapshots and level updates and checks
  each update's ``previous_seq``, so a gap is detected, not silently absorbed.

A failed call raises the `protocols.errors` class of its gRPC status (`from_status`; the tree
is drawn there): the class the gateway raised, or the parent that carries its status (a
`SymbolHaltedError` arrives as `NotTradableError`), so ``except OrderNotFoundError`` reads the
same in a client and in the gateway. `LocalBook` raises `MarketDataGapError`.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import msgspec

from protocols.errors import ERROR_KIND_KEY, MarketDataGapError, RaytradeError, from_status
from protocols.generated import trading_pb2 as pb
from protocols.generated import trading_pb2_grpc as pb_grpc

DEFAULT_MAX_MESSAGE_BYTES = 8 << 20
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_ADMIN_METHODS = frozenset({"HaltSymbol", "SetKillSwitch", "SetRiskLimits", "GetStatus"})


def error_of(error: grpc.RpcError) -> RaytradeError:
    """Return the `protocols.errors` exception for a failed call (its ``code`` is the status)."""
    code: grpc.StatusCode = error.code()
    retry_after_s = None
    kind = ""
    for key, value in error.trailing_metadata() or ():
        if key == "retry-after-ms":
            retry_after_s = int(value) / 1000
        elif key == ERROR_KIND_KEY:
            kind = str(value)
    return from_status(code, error.details() or "", kind=kind, retry_after_s=retry_after_s)


@dataclass(frozen=True)
class ClientTls:
    """TLS settings: the CA that signed the gateway's certificate, and for mutual TLS the
    client's own certificate and key (PEM files)."""

    ca_file: str | os.PathLike[str]
    certificate_file: str | os.PathLike[str] | None = None
    private_key_file: str | os.PathLike[str] | None = None
    server_name: str | None = None
    """Expected name in the server certificate, if not the host of the target."""

    def credentials(self) -> grpc.ChannelCredentials:
        """Return the channel credentials."""
        return grpc.ssl_channel_credentials(
            root_certificates=Path(self.ca_file).read_bytes(),
            private_key=Path(self.private_key_file).read_bytes() if self.private_key_file else None,
            certificate_chain=(
                Path(self.certificate_file).read_bytes() if self.certificate_file else None
            ),
        )


SIDES = {"buy": pb.SIDE_BUY, "sell": pb.SIDE_SELL}
TIMES_IN_FORCE = {"gtc": pb.TIME_IN_FORCE_GTC, "ioc": pb.TIME_IN_FORCE_IOC,
                  "fok": pb.TIME_IN_FORCE_FOK}


def new_order(
    symbol: str,
    side: str | int,
    quantity: int,
    price: int = 0,
    *,
    client_order_id: str | None = None,
    account: str = "",
    time_in_force: str | int = 0,
    post_only: bool = False,
    self_trade_prevention: int = 0,
    price_decimal: str = "",
) -> pb.NewOrderRequest:
    """Build a new order: a limit order when a price is given, else a market order.

    ``side`` is ``"buy"``/``"sell"`` or a `Side` value; ``time_in_force`` ``"gtc"``, ``"ioc"``,
    ``"fok"`` or a value (unset: GTC for limit, IOC for market).
    """
    return pb.NewOrderRequest(
        account=account,
        client_order_id=client_order_id or next_client_order_id(),
        symbol=symbol,
        side=SIDES[side] if isinstance(side, str) else side,  # type: ignore[arg-type]
        order_type=pb.ORDER_TYPE_LIMIT if price or price_decimal else pb.ORDER_TYPE_MARKET,
        time_in_force=(
            TIMES_IN_FORCE[time_in_force] if isinstance(time_in_force, str) else time_in_force  # type: ignore[arg-type]
        ),
        quantity=quantity,
        price=price,
        price_decimal=price_decimal,
        post_only=post_only,
        self_trade_prevention=self_trade_prevention,  # type: ignore[arg-type]
    )


PackedOrder = tuple[str, str, str, int, int, int, int, int, str, bool, int]
"""One order of `SubmitOrdersRequest.packed_orders`: `NewOrderRequest`'s fields in order."""


def packed_order(
    symbol: str,
    side: str | int,
    quantity: int,
    price: int = 0,
    *,
    client_order_id: str | None = None,
    account: str = "",
    time_in_force: str | int = 0,
    post_only: bool = False,
    self_trade_prevention: int = 0,
    price_decimal: str = "",
) -> PackedOrder:
    """Build a new order as `new_order` does, as a row for `TradingClient.submit_packed`.

    Rows are plain tuples, so a client that sends many orders may also build them itself
    (docs/GATEWAY.md, "Packed orders"): building one costs a fraction of a protobuf message.
    """
    return (
        account,
        client_order_id or next_client_order_id(),
        symbol,
        SIDES[side] if isinstance(side, str) else side,
        pb.ORDER_TYPE_LIMIT if price or price_decimal else pb.ORDER_TYPE_MARKET,
        TIMES_IN_FORCE[time_in_force] if isinstance(time_in_force, str) else time_in_force,
        quantity,
        price,
        price_decimal,
        post_only,
        self_trade_prevention,
    )


_packer = msgspec.msgpack.Encoder()
_counter = itertools.count(1)
_prefix = f"{os.getpid():x}-{time.time_ns() // 1_000_000:x}"


def next_client_order_id() -> str:
    """Return a client order id unique to this process run (at most 64 characters)."""
    return f"{_prefix}-{next(_counter)}"


class TradingClient:
    """Talk to raytrade gateways: orders, reads, streams and (with an admin token) admin."""

    def __init__(
        self,
        targets: str | Sequence[str],
        token: str,
        *,
        tls: ClientTls | None = None,
        timeout_s: float = 5.0,
        retries: int = 3,
        retry_backoff_s: float = 0.2,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.targets = [targets] if isinstance(targets, str) else list(targets)
        if not self.targets:
            raise ValueError("give at least one gateway address")
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.tls = tls
        self.timeout_s = timeout_s
        self.retries = retries
        self.retry_backoff_s = retry_backoff_s
        self.options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        self._target_index = 0
        self._connect()

    def _connect(self) -> None:
        target = self.targets[self._target_index % len(self.targets)]
        if self.tls is None:
            self.channel = grpc.insecure_channel(target, options=self.options)
        else:
            options = list(self.options)
            if self.tls.server_name:
                options.append(("grpc.ssl_target_name_override", self.tls.server_name))
            self.channel = grpc.secure_channel(target, self.tls.credentials(), options=options)
        self.trading = pb_grpc.TradingServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.admin = pb_grpc.AdminServiceStub(self.channel)  # type: ignore[no-untyped-call]

    def _fail_over(self) -> None:
        if len(self.targets) > 1:
            self.channel.close()
            self._target_index += 1
            self._connect()

    def close(self) -> None:
        """Close the channel (open streams end)."""
        self.channel.close()

    def __enter__(self) -> TradingClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Block until the channel is connected."""
        grpc.channel_ready_future(self.channel).result(timeout=timeout_s)

    def _call(self, method: str, request: Any, *, retry: bool = False,
              timeout_s: float | None = None) -> Any:
        """Call ``TradingService``/``AdminService`` ``method``; retry what is safe to retry."""
        attempts = self.retries + 1 if retry else 1
        for attempt in range(attempts):
            stub = self.admin if method in _ADMIN_METHODS else self.trading
            try:
                return getattr(stub, method)(request, metadata=self.metadata,
                                             timeout=timeout_s or self.timeout_s)
            except grpc.RpcError as error:
                code = error.code()
                if attempt + 1 < attempts and code in RETRYABLE:
                    time.sleep(self.retry_backoff_s * (2 ** attempt))
                    if code == grpc.StatusCode.UNAVAILABLE:
                        self._fail_over()
                    continue
                raise error_of(error) from None
        raise AssertionError("not reached")

    # ---------------------------------------------------------------- orders

    def submit(self, order: pb.NewOrderRequest) -> list[pb.ExecutionReport]:
        """Send an order (retried safely); return its reports: ACCEPTED + fills, or REJECTED."""
        reply: pb.SubmitOrderResponse = self._call(
            "SubmitOrder", order, retry=True)
        return list(reply.reports)

    def submit_order(
        self, symbol: str, side: str | int, quantity: int, price: int = 0, **options: Any
    ) -> list[pb.ExecutionReport]:
        """Build (see `new_order`) and send an order."""
        return self.submit(new_order(symbol, side, quantity, price, **options))

    def submit_orders(self, orders: Sequence[pb.NewOrderRequest]) -> pb.SubmitOrdersResponse:
        """Send a batch; return its column answers (see `SubmitOrdersResponse`)."""
        reply: pb.SubmitOrdersResponse = self._call(
            "SubmitOrders", pb.SubmitOrdersRequest(orders=orders), retry=True
        )
        return reply

    def submit_packed(self, orders: Sequence[Sequence[Any]]) -> pb.SubmitOrdersResponse:
        """Send a batch of packed orders (`packed_order` rows); the same answer as
        `submit_orders` for the same orders, for much less CPU on both sides."""
        request = pb.SubmitOrdersRequest(packed_orders=_packer.encode(orders))
        reply: pb.SubmitOrdersResponse = self._call("SubmitOrders", request, retry=True)
        return reply

    def cancel_order(
        self, symbol: str, order_id: int, *, account: str = "", client_order_id: str | None = None
    ) -> list[pb.ExecutionReport]:
        """Cancel an order; return a CANCELLED or REJECTED report."""
        request = pb.CancelOrderRequest(
            account=account, client_order_id=client_order_id or next_client_order_id(),
            symbol=symbol, order_id=order_id,
        )
        reply: pb.CancelOrderResponse = self._call(
            "CancelOrder", request, retry=True)
        return list(reply.reports)

    def replace_order(
        self, symbol: str, order_id: int, price: int, quantity: int, *, account: str = "",
        client_order_id: str | None = None,
    ) -> list[pb.ExecutionReport]:
        """Change an order's price and open quantity."""
        request = pb.ReplaceOrderRequest(
            account=account, client_order_id=client_order_id or next_client_order_id(),
            symbol=symbol, order_id=order_id, price=price, quantity=quantity,
        )
        reply: pb.ReplaceOrderResponse = self._call(
            "ReplaceOrder", request, retry=True)
        return list(reply.reports)

    def mass_cancel(self, symbol: str = "", *, account: str = "") -> pb.MassCancelResponse:
        """Cancel every open order of the account (in one symbol, or all)."""
        request = pb.MassCancelRequest(account=account, symbol=symbol,
                                       client_order_id=next_client_order_id())
        reply: pb.MassCancelResponse = self._call(
            "MassCancel", request, retry=True)
        return reply

    # ---------------------------------------------------------------- reads

    def order(self, order_id: int, *, account: str = "") -> pb.Order:
        """Return an open order (raise `OrderNotFoundError`)."""
        reply: pb.Order = self._call(
            "GetOrder", pb.GetOrderRequest(account=account, order_id=order_id),
            retry=True,
        )
        return reply

    def open_orders(self, symbol: str = "", *, account: str = "") -> list[pb.Order]:
        """Return the account's open orders."""
        reply: pb.ListOpenOrdersResponse = self._call(
            "ListOpenOrders",
            pb.ListOpenOrdersRequest(account=account, symbol=symbol), retry=True,
        )
        return list(reply.orders)

    def positions(self, *, account: str = "") -> list[pb.Position]:
        """Return the account's positions and PnL."""
        reply: pb.GetPositionsResponse = self._call(
            "GetPositions", pb.GetPositionsRequest(account=account), retry=True
        )
        return list(reply.positions)

    def book(self, symbol: str, depth: int = 10) -> pb.Book:
        """Return a symbol's book, ``depth`` levels a side."""
        reply: pb.Book = self._call(
            "GetBook", pb.GetBookRequest(symbol=symbol, depth=depth), retry=True
        )
        return reply

    def instruments(self) -> pb.ListInstrumentsResponse:
        """Return the instruments (tick, lot, price scale, shard)."""
        reply: pb.ListInstrumentsResponse = self._call(
            "ListInstruments", pb.ListInstrumentsRequest(), retry=True
        )
        return reply

    # ---------------------------------------------------------------- streams

    def stream_executions(
        self,
        accounts: Sequence[str] = (),
        *,
        after_seq: Mapping[int, int] | None = None,
        cancel_on_disconnect: bool = False,
        resume: bool = True,
        max_reconnects: int = 20,
    ) -> ExecutionStream:
        """Follow the accounts' execution reports (see `ExecutionStream`)."""
        return ExecutionStream(self, list(accounts), dict(after_seq or {}), cancel_on_disconnect,
                               resume, max_reconnects)

    def stream_market_data(self, symbols: Sequence[str]) -> Iterator[pb.MarketDataBatch]:
        """Yield market-data batches: snapshots first, then updates (see `LocalBook`)."""
        call = self.trading.StreamMarketData(
            pb.StreamMarketDataRequest(symbols=symbols), metadata=self.metadata
        )
        try:
            yield from call
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                raise error_of(error) from None
        finally:
            call.cancel()

    # ---------------------------------------------------------------- admin

    def halt(self, symbol: str, halted: bool = True) -> pb.AdminResponse:
        """Halt a symbol (``halted=False`` resumes it)."""
        reply: pb.AdminResponse = self._call(
            "HaltSymbol", pb.HaltSymbolRequest(symbol=symbol, halted=halted)
        )
        return reply

    def kill_switch(self, account: str, engaged: bool = True) -> pb.AdminResponse:
        """Engage (or release) an account's kill switch."""
        reply: pb.AdminResponse = self._call(
            "SetKillSwitch", pb.SetKillSwitchRequest(account=account, engaged=engaged)
        )
        return reply

    def set_risk_limits(
        self, account: str, symbol: str = "", **limits: int
    ) -> pb.AdminResponse:
        """Set an account's limits (``"*"``: every account's default), or a symbol override."""
        reply: pb.AdminResponse = self._call(
            "SetRiskLimits",
            pb.SetRiskLimitsRequest(account=account, symbol=symbol,
                                    limits=pb.RiskLimits(**limits)),
        )
        return reply

    def status(self) -> pb.GetStatusResponse:
        """Return the shards', supervisors' and this gateway's status."""
        reply: pb.GetStatusResponse = self._call(
            "GetStatus", pb.GetStatusRequest(),
                                                 timeout_s=max(self.timeout_s, 10.0))
        return reply


class ExecutionStream:
    """Iterate over `ExecutionBatch` messages; reconnect and resume by cursor after a drop.

    `cursor` is the per-shard cursor of the last batch handed out: persist it after
    processing a batch and pass it as ``after_seq`` to resume later from exactly there.
    """

    def __init__(
        self,
        client: TradingClient,
        accounts: list[str],
        after_seq: dict[int, int],
        cancel_on_disconnect: bool,
        resume: bool,
        max_reconnects: int,
    ) -> None:
        self.client = client
        self.accounts = accounts
        self.cursor = after_seq
        self.cancel_on_disconnect = cancel_on_disconnect
        self.resume = resume
        self.max_reconnects = max_reconnects
        self.reconnects = 0
        self._call: Any = None
        self._closed = False

    def _open(self) -> Any:
        request = pb.StreamExecutionsRequest(
            accounts=self.accounts, after_seq=self.cursor,
            cancel_on_disconnect=self.cancel_on_disconnect,
        )
        self._call = self.client.trading.StreamExecutions(request, metadata=self.client.metadata)
        return self._call

    def __iter__(self) -> Iterator[pb.ExecutionBatch]:
        failures = 0
        while not self._closed:
            call = self._open()
            try:
                for batch in call:
                    self.cursor = dict(batch.cursor)
                    failures = 0
                    yield batch
                return  # the server ended the stream
            except grpc.RpcError as error:
                code = error.code()
                if self._closed:
                    return
                retryable = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                                     grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
                if not (self.resume and retryable) or failures >= self.max_reconnects:
                    raise error_of(error) from None
                failures += 1
                self.reconnects += 1
                time.sleep(min(2.0, self.client.retry_backoff_s * failures))
                self.client._fail_over()
            finally:
                call.cancel()

    def reports(self) -> Iterator[pb.ExecutionReport]:
        """Yield the reports one by one (the cursor moves a whole batch at a time)."""
        for batch in self:
            yield from batch.reports

    def close(self) -> None:
        """End the stream (with cancel-on-disconnect, the gateway cancels the orders)."""
        self._closed = True
        if self._call is not None:
            self._call.cancel()


class LocalBook:
    """Rebuild L2 books from a market-data stream, checking that no update is missing."""

    def __init__(self) -> None:
        self.bids: dict[str, dict[int, tuple[int, int]]] = {}
        self.asks: dict[str, dict[int, tuple[int, int]]] = {}
        self.last_seq: dict[str, int] = {}
        self.trades: dict[str, list[pb.TradePrint]] = {}

    def apply(self, update: pb.MarketDataUpdate) -> None:
        """Apply one update; raise `MarketDataGapError` if it does not follow the last one."""
        symbol = update.symbol
        kind = update.WhichOneof("update")
        if kind == "snapshot":
            self.bids[symbol] = {level.price: (level.quantity, level.order_count)
                                 for level in update.snapshot.bids}
            self.asks[symbol] = {level.price: (level.quantity, level.order_count)
                                 for level in update.snapshot.asks}
            self.last_seq[symbol] = update.seq
            return
        if symbol not in self.last_seq:
            raise MarketDataGapError(f"{symbol}: an update before the snapshot")
        if update.previous_seq != self.last_seq[symbol]:
            raise MarketDataGapError(
                f"{symbol}: update {update.seq} follows {update.previous_seq}, but the last "
                f"seen was {self.last_seq[symbol]}"
            )
        self.last_seq[symbol] = update.seq
        if kind == "level":
            level = update.level
            side = self.bids if level.side == pb.SIDE_BUY else self.asks
            if level.quantity:
                side[symbol][level.price] = (level.quantity, level.order_count)
            else:
                side[symbol].pop(level.price, None)
        elif kind == "trade":
            self.trades.setdefault(symbol, []).append(update.trade)

    def levels(self, symbol: str) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """Return (bids, asks) best first as ``(price, quantity, order_count)``."""
        bids = self.bids.get(symbol, {})
        asks = self.asks.get(symbol, {})
        return (
            [(price, *bids[price]) for price in sorted(bids, reverse=True)],
            [(price, *asks[price]) for price in sorted(asks)],
        )
