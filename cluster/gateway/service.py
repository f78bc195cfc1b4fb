"""The gRPC services: authenticate, authorize, convert, call the core, answer.

Each method is the same few steps: authenticate the bearer token, convert and validate the
request (`protocols.convert`, the only code that sees protobuf and internal messages
together), check the account against the token, spend the account's rate budget, run the
gateway's own checks, then hand internal commands to the `GatewayCore` and convert the events
back. Every failure mode is one class of `protocols.errors`, which carries its gRPC status
(``status``), so every request gets a precise status; anything else is INTERNAL with an
incident id, and its details stay in the gateway's log.

A request body that is not a protobuf of the method's request type never reaches a method:
gRPC decodes the body before it calls the handler, and a decoder that raises makes it answer
UNKNOWN with the exception's text. `add_to_server` therefore registers every method with a
decoder that cannot raise (`request_decoder`): it hands the method an `Undecodable` instead,
and the guard answers that with INVALID_ARGUMENT and a fixed message. gRPC has already
refused a body over ``max_message_bytes`` (RESOURCE_EXHAUSTED) before anything decodes it.

Ingress timestamps (``ts_ns``) and request ids come from the core's injected clock. Every
command is stamped with its audit origin (`protocols.messages.format_origin`): the token's name,
this gateway's name and the client's address as gRPC reports it (``context.peer()``), so the
journal records who sent what, through what.

Logs (`cluster.logs`): every refused request (``request_refused``: method, status, error class,
peer), every shard reject of a request sent here (``order_rejected``: account, client order
id, order id, shard, seq, code; only scanned for when INFO is on, so the order path pays
nothing otherwise) and every admin action (``admin_action``, at WARNING: who, what, and each
shard's seq) are one line each with structured fields. A normal order logs nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, TypeAlias, TypeVar

import grpc
import msgspec
from google.protobuf import message_factory

from cluster.gateway.auth import Principal, TokenRegistry
from cluster.gateway.config import GatewayConfig
from cluster.gateway.core import GatewayCore
from cluster.gateway.shards import supervisor_statuses
from cluster.gateway.streams import StreamSettings, follow_executions, follow_market_data
from cluster.logs import log_event
from protocols.convert import Converter, check_id, check_seq
from protocols.errors import (
    ERROR_KIND_KEY,
    InvalidFieldError,
    InvalidRequestError,
    RateLimitedError,
    RaytradeError,
    TooManyStreamsError,
)
from protocols.generated import trading_pb2 as pb
from protocols.generated import trading_pb2_grpc as pb_grpc
from protocols.messages import (
    Command,
    Event,
    KillSwitchSet,
    OrderCancelled,
    OrderRejected,
    RiskLimitsSet,
    SetKillSwitch,
    SetRiskLimits,
    SetSymbolHalt,
    SymbolHaltSet,
    format_origin,
)

log = logging.getLogger(__name__)

Request = TypeVar("Request")
Response = TypeVar("Response")
Context: TypeAlias = grpc.aio.ServicerContext


def _refuse(context: Context, error: BaseException, rpc: str = "") -> None:
    """Set the call's status from the error's own, or INTERNAL (details only in the log);
    log the refusal (``request_refused``) with the method ``rpc``.

    The status is set, not raised with ``context.abort``: grpc.aio keeps an abort's exception
    on the call's state, whose traceback holds the handler's frames and so the request, in a
    reference cycle. The gateway raises the collector's thresholds (`actors.tuning`), so each
    refused 100,000-order batch kept its ~12 MB of decoded request until a rare full
    collection (issue 9, item 11). With the status set and the handler returning, gRPC sends
    the status, discards the (absent) response, and the request is freed at once.
    """
    if not isinstance(error, RaytradeError) or error.status == "INTERNAL":
        incident = uuid.uuid4().hex[:12]
        context.set_code(grpc.StatusCode.INTERNAL)
        context.set_details(f"internal error (logged as {incident})")
        log.error("internal error %s", incident, exc_info=error,
                  extra={"fields": {"event": "internal_error", "incident": incident,
                                    "rpc": rpc, "peer": context.peer()}})
        return
    # the exact class travels too, so a client can catch `SymbolHaltedError`, not only its
    # status's `NotTradableError` (protocols.errors.from_status)
    trailing: list[tuple[str, str]] = [(ERROR_KIND_KEY, type(error).__name__)]
    if isinstance(error, RateLimitedError) and error.retry_after_s is not None:
        trailing.append(("retry-after-ms", str(max(1, round(error.retry_after_s * 1000)))))
    context.set_trailing_metadata(tuple(trailing))
    context.set_code(grpc.StatusCode[error.status])
    context.set_details(error.details)
    if log.isEnabledFor(logging.INFO):
        log_event(log, logging.INFO, "request_refused", "refused %s: %s %s",
                  rpc or "a request", error.status, error.details, rpc=rpc,
                  status=error.status, error=type(error).__name__, peer=context.peer())


class Undecodable:
    """What a method receives instead of a request whose body did not decode."""

    __slots__ = ("message",)

    def __init__(self, type_name: str) -> None:
        self.message: Final = f"the request body is not a valid {type_name}"
        """The whole answer: fixed per request type, nothing from the decoder."""


def request_decoder(message_class: Any) -> Callable[[bytes], Any]:
    """Return a body decoder for ``message_class`` that returns `Undecodable`, never raises."""
    undecodable = Undecodable(message_class.DESCRIPTOR.full_name)
    parse = message_class.FromString

    def decode(body: bytes) -> Any:
        try:
            return parse(body)
        except Exception:  # DecodeError, and anything else: gRPC would echo its text
            return undecodable

    return decode


def _check_decoded(request: object) -> None:
    if isinstance(request, Undecodable):
        raise InvalidRequestError(request.message)


def method_handlers(servicer: object, service_name: str) -> dict[str, grpc.RpcMethodHandler]:
    """Return the handlers of every method of ``service_name`` (``raytrade.v1.X``) served by
    ``servicer``: what the generated ``add_*_to_server`` builds, with `request_decoder`s."""
    service = pb.DESCRIPTOR.services_by_name[service_name.rpartition(".")[2]]
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for method in service.methods:
        behaviour = getattr(servicer, method.name)
        decode = request_decoder(message_factory.GetMessageClass(method.input_type))
        encode = message_factory.GetMessageClass(method.output_type).SerializeToString
        if method.client_streaming:  # the API has none; a new one needs its own guard
            raise TypeError(f"{method.full_name}: client streaming is not supported")
        make = (grpc.unary_stream_rpc_method_handler if method.server_streaming
                else grpc.unary_unary_rpc_method_handler)
        handlers[method.name] = make(
            behaviour, request_deserializer=decode, response_serializer=encode
        )
    return handlers


def add_to_server(servicer: object, service_name: str, server: grpc.aio.Server) -> None:
    """Serve ``service_name`` from ``servicer`` on ``server`` (see `method_handlers`)."""
    handlers = method_handlers(servicer, service_name)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service_name, handlers),)
    )
    # as the generated code does: the registered path skips the generic handlers' lookup
    server.add_registered_method_handlers(service_name, handlers)


def _unary(
    method: Callable[[Any, Request, Context], Awaitable[Response]],
) -> Callable[[Any, Request, Context], Awaitable[Response | None]]:
    async def guarded(self: Any, request: Request, context: Context) -> Response | None:
        try:
            _check_decoded(request)
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:  # each maps to a precise status
            _refuse(context, error, method.__name__)
        return None  # with a non-OK status set, gRPC sends no response message

    guarded.__name__ = method.__name__
    guarded.__doc__ = method.__doc__
    return guarded


def _streaming(
    method: Callable[[Any, Request, Context], AsyncIterator[Response]],
) -> Callable[[Any, Request, Context], AsyncIterator[Response]]:
    async def guarded(self: Any, request: Request, context: Context) -> AsyncIterator[Response]:
        try:
            _check_decoded(request)
            async for item in method(self, request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as error:  # each maps to a precise status
            _refuse(context, error, method.__name__)

    guarded.__name__ = method.__name__
    guarded.__doc__ = method.__doc__
    return guarded


class _Base:
    def __init__(
        self, core: GatewayCore, tokens: TokenRegistry, converter: Converter,
        config: GatewayConfig,
    ) -> None:
        self.core = core
        self.tokens = tokens
        self.converter = converter
        self.config = config

    def _now_ns(self) -> int:
        return self.core.clock.time_ns()

    def _principal(self, context: Context) -> Principal:
        return self.tokens.authenticate(context.invocation_metadata())

    def _origin(self, principal: Principal, context: Context) -> str:
        """Return the audit origin of a call: the token's name, this gateway, the client."""
        return format_origin(principal.name, self.core.name, context.peer())

    @staticmethod
    def _log_rejects(results: Iterable[tuple[int, Sequence[Event]]], origin: str) -> None:
        """Log each shard reject among ``results`` (only when INFO is on: no scan otherwise)."""
        if not log.isEnabledFor(logging.INFO):
            return
        for shard, events in results:
            for event in events:
                if type(event) is OrderRejected:
                    log_event(
                        log, logging.INFO, "order_rejected",
                        "shard %d rejected %s %r of account %s: %s (%s)", shard,
                        event.request.name, event.client_order_id, event.account,
                        event.code.name, event.text,
                        account=event.account, client_order_id=event.client_order_id,
                        order_id=event.order_id, symbol=event.symbol, shard=shard,
                        seq=event.seq, code=event.code, request=event.request,
                        origin=origin,
                    )

    def _account(self, principal: Principal, account: str) -> str:
        """Return the request's account (the token's only one if empty), checked."""
        if not account:
            only = principal.only_account
            if only is None:
                raise InvalidFieldError("account", "is required: the token maps to several "
                                                   "accounts")
            return only
        check_id("account", account)
        principal.check_account(account)
        return account


class TradingService(_Base, pb_grpc.TradingServiceServicer):
    """raytrade.v1.TradingService (see protocols/trading.proto)."""

    def __init__(
        self, core: GatewayCore, tokens: TokenRegistry, converter: Converter,
        config: GatewayConfig,
    ) -> None:
        super().__init__(core, tokens, converter, config)
        self._streams: Counter[str] = Counter()
        self.settings = StreamSettings(heartbeat_s=config.heartbeat_s,
                                       clock=core.clock.monotonic)

    # ---------------------------------------------------------------- orders

    @_unary
    async def SubmitOrder(  # noqa: N802 - gRPC method names
        self, request: pb.NewOrderRequest, context: Context
    ) -> pb.SubmitOrderResponse:
        principal = self._principal(context)
        origin = self._origin(principal, context)
        command = self.converter.new_order(request, principal.only_account, self._now_ns(),
                                           origin=origin)
        principal.check_account(command.account)
        self.core.take_rate(command.account)
        self.core.check_tradable(command)
        shard, events = await self.core.route_to_shard(command)
        self._log_rejects(((shard, events),), origin)
        return pb.SubmitOrderResponse(
            reports=self.converter.reports(events, shard, (command.account,))
        )

    @_unary
    async def SubmitOrders(  # noqa: N802
        self, request: pb.SubmitOrdersRequest, context: Context
    ) -> pb.SubmitOrdersResponse:
        principal = self._principal(context)
        origin = self._origin(principal, context)
        if request.packed_orders:
            if request.orders:
                raise InvalidFieldError("packed_orders", "set orders or packed_orders, not both")
            batch = self.converter.new_orders_packed(
                request.packed_orders, principal.only_account, self._now_ns(),
                self.config.max_batch_orders, origin=origin,
            )
        else:
            batch = self.converter.new_orders(
                request.orders, principal.only_account, self._now_ns(),
                self.config.max_batch_orders, origin=origin,
            )
        per_account = Counter(batch.accounts)
        principal.check_accounts(per_account)
        for account, count in per_account.items():
            self.core.take_rate(account, count)
        self.core.check_batch_tradable(batch.accounts, batch.symbols, batch.shards)
        results = await self.core.route_many(batch.rows, batch.shards)
        self._log_rejects(results, origin)
        return self.converter.submit_orders_response([events for _, events in results])

    @_unary
    async def CancelOrder(  # noqa: N802
        self, request: pb.CancelOrderRequest, context: Context
    ) -> pb.CancelOrderResponse:
        principal = self._principal(context)
        origin = self._origin(principal, context)
        command = self.converter.cancel(request, principal.only_account, self._now_ns(),
                                        origin=origin)
        principal.check_account(command.account)
        self.core.take_rate(command.account)
        self.core.check_order_shard(command.symbol, command.order_id)
        shard, events = await self.core.route_to_shard(command)
        self._log_rejects(((shard, events),), origin)
        return pb.CancelOrderResponse(
            reports=self.converter.reports(events, shard, (command.account,))
        )

    @_unary
    async def ReplaceOrder(  # noqa: N802
        self, request: pb.ReplaceOrderRequest, context: Context
    ) -> pb.ReplaceOrderResponse:
        principal = self._principal(context)
        origin = self._origin(principal, context)
        command = self.converter.replace(request, principal.only_account, self._now_ns(),
                                         origin=origin)
        principal.check_account(command.account)
        self.core.take_rate(command.account)
        self.core.check_order_shard(command.symbol, command.order_id)
        self.core.check_tradable(command)
        shard, events = await self.core.route_to_shard(command)
        self._log_rejects(((shard, events),), origin)
        return pb.ReplaceOrderResponse(
            reports=self.converter.reports(events, shard, (command.account,))
        )

    @_unary
    async def MassCancel(  # noqa: N802
        self, request: pb.MassCancelRequest, context: Context
    ) -> pb.MassCancelResponse:
        principal = self._principal(context)
        origin = self._origin(principal, context)
        command = self.converter.mass_cancel(request, principal.only_account, self._now_ns(),
                                             origin=origin)
        principal.check_account(command.account)
        self.core.take_rate(command.account)
        results = await self.core.route(command)
        self._log_rejects(results, origin)
        reports = []
        for shard, events in results:
            reports.extend(self.converter.reports(events, shard, (command.account,)))
        cancelled = sum(1 for report in reports if report.type == pb.EXECUTION_TYPE_CANCELLED)
        return pb.MassCancelResponse(reports=reports, cancelled_orders=cancelled)

    # ---------------------------------------------------------------- reads

    @_unary
    async def GetOrder(  # noqa: N802
        self, request: pb.GetOrderRequest, context: Context
    ) -> pb.Order:
        principal = self._principal(context)
        account = self._account(principal, request.account)
        order_id = self.converter.order_id("order_id", request.order_id)
        self.core.take_rate(account)
        return self.converter.order(await self.core.order(account, order_id))

    @_unary
    async def ListOpenOrders(  # noqa: N802
        self, request: pb.ListOpenOrdersRequest, context: Context
    ) -> pb.ListOpenOrdersResponse:
        principal = self._principal(context)
        account = self._account(principal, request.account)
        symbol = self.converter.symbol("symbol", request.symbol, required=False)
        self.core.take_rate(account)
        return self.converter.open_orders(await self.core.open_orders(account, symbol))

    @_unary
    async def GetPositions(  # noqa: N802
        self, request: pb.GetPositionsRequest, context: Context
    ) -> pb.GetPositionsResponse:
        principal = self._principal(context)
        account = self._account(principal, request.account)
        self.core.take_rate(account)
        return self.converter.positions(await self.core.positions(account))

    @_unary
    async def GetBook(  # noqa: N802
        self, request: pb.GetBookRequest, context: Context
    ) -> pb.Book:
        principal = self._principal(context)
        symbol = self.converter.symbol("symbol", request.symbol)
        depth = self.converter.book_depth(request.depth)
        self.core.take_rate(f"token:{principal.name}")
        bids, asks = await self.core.book(symbol, depth)
        return self.converter.book(symbol, bids, asks)

    @_unary
    async def ListInstruments(  # noqa: N802
        self, request: pb.ListInstrumentsRequest, context: Context
    ) -> pb.ListInstrumentsResponse:
        self._principal(context)
        return self.converter.instruments(self.core.shards)

    # ---------------------------------------------------------------- streams

    def _open_stream(self, principal: Principal) -> None:
        if self._streams[principal.token_hash] >= self.config.max_streams_per_token:
            raise TooManyStreamsError(
                f"token {principal.name!r} already has {self.config.max_streams_per_token} "
                "streams open at this gateway"
            )
        self._streams[principal.token_hash] += 1

    def _close_stream(self, principal: Principal) -> None:
        self._streams[principal.token_hash] -= 1
        if self._streams[principal.token_hash] <= 0:
            del self._streams[principal.token_hash]

    @_streaming
    async def StreamExecutions(  # noqa: N802
        self, request: pb.StreamExecutionsRequest, context: Context
    ) -> AsyncIterator[pb.ExecutionBatch]:
        principal = self._principal(context)
        accounts: frozenset[str] | None
        if request.accounts:
            for index, account in enumerate(request.accounts):
                check_id(f"accounts[{index}]", account)
            principal.check_accounts(request.accounts)
            accounts = frozenset(request.accounts)
        elif principal.accounts:
            accounts = principal.accounts
        elif principal.admin:
            accounts = None  # an admin token without accounts follows every account
        else:
            raise InvalidFieldError("accounts", "name at least one account")
        if request.cancel_on_disconnect and accounts is None:
            raise InvalidFieldError(
                "cancel_on_disconnect", "needs the accounts to cancel named in `accounts`"
            )
        after: dict[int, int] = {}
        for shard, seq in request.after_seq.items():
            if shard >= self.core.shards:
                raise InvalidFieldError(
                    f"after_seq[{shard}]", f"there are only {self.core.shards} shards"
                )
            after[shard] = check_seq(f"after_seq[{shard}]", seq)
        self._open_stream(principal)
        feeds = dict(enumerate(self.core.feeds))
        try:
            async for chunk in follow_executions(
                feeds, accounts, after, self.core.notifier, self.settings
            ):
                reports: list[pb.ExecutionReport] = []
                for shard, events in chunk.parts:
                    reports.extend(self.converter.reports(events, shard, accounts))
                yield self.converter.execution_batch(reports, chunk.cursor)
        finally:
            self._close_stream(principal)
            if request.cancel_on_disconnect and accounts:
                self.core.spawn(self._cancel_on_disconnect(
                    sorted(accounts), self._origin(principal, context)))

    async def _cancel_on_disconnect(self, accounts: list[str], origin: str) -> None:
        for account in accounts:
            request = pb.MassCancelRequest(
                account=account, client_order_id=f"disconnect-{self._now_ns()}"
            )
            command = self.converter.mass_cancel(request, None, self._now_ns(), origin=origin)
            try:
                results = await self.core.route(command)
                cancelled = sum(
                    1 for _, events in results for event in events
                    if type(event) is OrderCancelled
                )
                log_event(log, logging.INFO, "cancel_on_disconnect",
                          "cancel on disconnect: account %s, %d orders cancelled", account,
                          cancelled, account=account, cancelled=cancelled,
                          request_id=command.client_order_id, origin=origin,
                          shards=[shard for shard, _ in results])
            except Exception:
                log.exception("cancel on disconnect failed for account %s", account,
                              extra={"fields": {"event": "cancel_on_disconnect_failed",
                                                "account": account, "origin": origin}})

    @_streaming
    async def StreamMarketData(  # noqa: N802
        self, request: pb.StreamMarketDataRequest, context: Context
    ) -> AsyncIterator[pb.MarketDataBatch]:
        principal = self._principal(context)
        symbols = self.converter.symbols("symbols", request.symbols,
                                         self.config.max_stream_symbols)
        self._open_stream(principal)
        feeds = {symbol: self.core.feeds[self.core.shard_of_symbol(symbol)] for symbol in symbols}
        convert = self.converter
        try:
            async for items in follow_market_data(feeds, self.core.notifier, self.settings):
                updates = []
                for item in items:
                    if item.event is None:
                        updates.append(convert.snapshot_update(
                            item.symbol, item.seq, item.ts_ns, item.bids, item.asks))
                    else:
                        updates.append(convert.market_update(item.event, item.previous_seq))
                yield convert.market_data_batch(updates)
        finally:
            self._close_stream(principal)


class AdminService(_Base, pb_grpc.AdminServiceServicer):
    """raytrade.v1.AdminService: needs a token with the admin role."""

    def __init__(
        self, core: GatewayCore, tokens: TokenRegistry, converter: Converter,
        config: GatewayConfig, supervision_trees: Callable[[], list[str]],
    ) -> None:
        super().__init__(core, tokens, converter, config)
        self.supervision_trees = supervision_trees

    def _admin(self, context: Context) -> Principal:
        principal = self._principal(context)
        principal.check_admin()
        return principal

    def _request_id(self, principal: Principal) -> str:
        return f"admin-{principal.name}-{self._now_ns()}"[:64]

    async def _admin_command(
        self, context: Context, build: Callable[[str, int, str], Command]
    ) -> pb.AdminResponse:
        """Check the admin role, build the command (request id, ingress ts_ns, origin), route
        it, log what it did."""
        principal = self._admin(context)
        origin = self._origin(principal, context)
        command = build(self._request_id(principal), self._now_ns(), origin)
        results = await self.core.route(command)
        _log_admin(command, principal.name, origin, results)
        return self.converter.admin_response(
            (shard, event) for shard, events in results for event in events
        )

    @_unary
    async def HaltSymbol(  # noqa: N802
        self, request: pb.HaltSymbolRequest, context: Context
    ) -> pb.AdminResponse:
        return await self._admin_command(
            context, lambda request_id, ts_ns, origin: self.converter.halt(
                request, request_id, ts_ns, origin=origin)
        )

    @_unary
    async def SetKillSwitch(  # noqa: N802
        self, request: pb.SetKillSwitchRequest, context: Context
    ) -> pb.AdminResponse:
        return await self._admin_command(
            context, lambda request_id, ts_ns, origin: self.converter.kill_switch(
                request, request_id, ts_ns, origin=origin)
        )

    @_unary
    async def SetRiskLimits(  # noqa: N802
        self, request: pb.SetRiskLimitsRequest, context: Context
    ) -> pb.AdminResponse:
        return await self._admin_command(
            context, lambda request_id, ts_ns, origin: self.converter.risk_limits(
                request, request_id, ts_ns, origin=origin)
        )

    @_unary
    async def GetStatus(  # noqa: N802
        self, request: pb.GetStatusRequest, context: Context
    ) -> pb.GetStatusResponse:
        self._admin(context)
        shards = await self.core.shard_statuses()
        supervisors = await supervisor_statuses(self.core.namespace, self.supervision_trees())
        return self.converter.status(self.core.name, shards, supervisors)


_ADMIN_EVENTS: Final = (SymbolHaltSet, KillSwitchSet, RiskLimitsSet)


def _log_admin(
    command: Command, principal: str, origin: str, results: Sequence[tuple[int, Sequence[Event]]]
) -> None:
    """Log an admin action (rare, and each one changes what may trade): who asked for what,
    and per shard the seq of the change, or the reject, and the orders it cancelled."""
    applied: dict[int, int] = {}
    rejected: dict[int, str] = {}
    cancelled = 0
    for shard, events in results:
        for event in events:
            if isinstance(event, _ADMIN_EVENTS):
                applied[shard] = event.seq
            elif type(event) is OrderRejected:
                rejected[shard] = f"{event.code.name}: {event.text}"
            elif type(event) is OrderCancelled:
                cancelled += 1
    fields: dict[str, Any] = {
        "principal": principal, "origin": origin, "request_id": command.client_order_id,
        "ts_ns": command.ts_ns, "shards": sorted(applied), "seq": applied,
        "cancelled": cancelled,
    }
    if isinstance(command, SetSymbolHalt):
        action = "halt" if command.halted else "resume"
        fields.update(action=action, symbol=command.symbol)
        what = f"{action} {command.symbol}"
    elif isinstance(command, SetKillSwitch):
        action = "kill_switch_engaged" if command.engaged else "kill_switch_released"
        fields.update(action=action, account=command.account)
        what = f"kill switch {'engaged' if command.engaged else 'released'} for {command.account}"
    elif isinstance(command, SetRiskLimits):
        action = "risk_limits"
        limits = {name: value for name, value in msgspec.structs.asdict(command.limits).items()
                  if value is not None}
        fields.update(action=action, account=command.account, symbol=command.symbol,
                      limits=limits)
        what = f"risk limits of {command.account}"
        if command.symbol:
            what += f" in {command.symbol}"
    else:
        action = type(command).__name__
        fields.update(action=action)
        what = action
    if rejected:
        fields["rejected"] = rejected
    log_event(log, logging.WARNING, "admin_action", "admin %s by %s: %s (%d shards applied, "
              "%d rejected, %d orders cancelled)", action, principal, what, len(applied),
              len(rejected), cancelled, **fields)
