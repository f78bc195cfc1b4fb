"""Validation and conversion between the gRPC API (protobuf) and raytrade's internal messages.

This is the only module that sees both vocabularies: the gateway hands it protobuf requests
and gets internal commands back, and hands it internal events to get protobuf reports. Keeping
the two apart means the shards never depend on the public API's shape, and the public API's
rules (what a well-formed request is) live in one place that unit tests cover without a
server.

Validation is complete and precise: a request that converts is one the gateway may submit; one
that does not raises `InvalidFieldError` naming the field (``orders[3].price``) and saying
why, which the gateway returns as ``INVALID_ARGUMENT``. Conversion never raises anything else
for any protobuf a client can send.

Exceptions::

    ValueError
    └── InvalidFieldError      a request field is malformed (-> INVALID_ARGUMENT)
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from protocols.generated import trading_pb2 as pb
from protocols.messages import (
    INT64_MAX,
    CancelOrder,
    CancelReason,
    Event,
    Instrument,
    KillSwitchSet,
    LevelChanged,
    MassCancel,
    NewOrder,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderReplaced,
    OrderType,
    RejectCode,
    ReplaceOrder,
    RequestKind,
    RiskLimitsConfig,
    RiskLimitsSet,
    SelfTradePrevention,
    SetKillSwitch,
    SetRiskLimits,
    SetSymbolHalt,
    Side,
    SymbolHaltSet,
    TimeInForce,
    Trade,
)

MAX_ID_LENGTH: Final = 64
"""Longest account, client order id or request id accepted."""
MAX_SYMBOL_LENGTH: Final = 32
MAX_BOOK_DEPTH: Final = 1000
DEFAULT_BOOK_DEPTH: Final = 10
ALL_ACCOUNTS: Final = "*"
"""The account name that addresses the default limits of every account."""

_ID = re.compile(r"[!-~]+")  # printable ASCII without spaces

_SIDES: Final = {1: Side.BUY, 2: Side.SELL}
_ORDER_TYPES: Final = {1: OrderType.LIMIT, 2: OrderType.MARKET}
_TIMES_IN_FORCE: Final = {1: TimeInForce.GTC, 2: TimeInForce.IOC, 3: TimeInForce.FOK}
_SELF_TRADE: Final = {mode.value: mode for mode in SelfTradePrevention}
_LIMIT_FIELDS: Final = tuple(RiskLimitsConfig.__struct_fields__)

_OPPOSITE: Final = {Side.BUY: Side.SELL, Side.SELL: Side.BUY}

def _twins(internal: type[enum.IntEnum], wrapper: Any, prefix: str) -> dict[int, Any]:
    names = set(wrapper.keys())
    return {
        member: wrapper.Value(prefix + member.name)
        for member in internal
        if prefix + member.name in names
    }


# Internal enums to their protobuf twins, by name (a unit test holds the names and numbers
# equal). An internal value this API version does not know reads as UNSPECIFIED.
_PB_SIDE: Final[dict[int, pb.Side]] = {Side.BUY: pb.SIDE_BUY, Side.SELL: pb.SIDE_SELL}
_PB_ORDER_TYPE: Final[dict[int, pb.OrderType]] = {
    OrderType.LIMIT: pb.ORDER_TYPE_LIMIT, OrderType.MARKET: pb.ORDER_TYPE_MARKET,
}
_PB_TIME_IN_FORCE: Final[dict[int, pb.TimeInForce]] = {
    TimeInForce.GTC: pb.TIME_IN_FORCE_GTC, TimeInForce.IOC: pb.TIME_IN_FORCE_IOC,
    TimeInForce.FOK: pb.TIME_IN_FORCE_FOK,
}
_PB_REJECT_CODE: Final[dict[int, pb.RejectCode]] = _twins(RejectCode, pb.RejectCode, "REJECT_CODE_")
_PB_CANCEL_REASON: Final[dict[int, pb.CancelReason]] = _twins(
    CancelReason, pb.CancelReason, "CANCEL_REASON_"
)
_PB_REQUEST_KIND: Final[dict[int, pb.RequestKind]] = _twins(
    RequestKind, pb.RequestKind, "REQUEST_KIND_"
)


WireRow = tuple[Any, ...]
"""A command as the row MessagePack encodes for it: the struct's tag, then its fields in order.

The batch path builds these instead of `NewOrder` structs: keyword construction of a struct
costs about a microsecond per order, a tuple almost nothing, and the encoded bytes are the
same (a unit test holds them equal), so the shard decodes real `NewOrder` commands."""

_NEW_ORDER_TAG: Final = NewOrder.__struct_config__.tag
_NEW_ORDER_FIELDS: Final = NewOrder.__struct_fields__


def new_order_row(order: NewOrder) -> WireRow:
    """Return the wire row of a `NewOrder` (what `encode` writes for it)."""
    return (_NEW_ORDER_TAG, *(getattr(order, name) for name in _NEW_ORDER_FIELDS))


@dataclass(slots=True)
class OrderBatch:
    """Validated new orders, ready to send, with what routing and the checks need."""

    rows: list[WireRow]
    """Each encodes exactly as its `NewOrder`."""
    accounts: list[str]
    symbols: list[str]
    shards: list[int]


class InvalidFieldError(ValueError):
    """A request field is malformed; ``field`` names it (``orders[3].price``), ``reason`` why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def shown(value: str, limit: int = 40) -> str:
    """Return ``value`` quoted for an error message, cut short if it is long."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


def check_seq(field: str, seq: int) -> int:
    """Return ``seq`` if it can be an event sequence number (0 to 2**63 - 1)."""
    if not 0 <= seq <= INT64_MAX:
        raise InvalidFieldError(field, f"{seq} is beyond any sequence number")
    return seq


def check_id(field: str, value: str, *, required: bool = True) -> str:
    """Return ``value`` if it is a well-formed id (1 to 64 printable ASCII, no spaces)."""
    if not value:
        if required:
            raise InvalidFieldError(field, "is required")
        return value
    if len(value) > MAX_ID_LENGTH:
        raise InvalidFieldError(
            field, f"{shown(value)} is longer than {MAX_ID_LENGTH} characters"
        )
    if not _ID.fullmatch(value):
        raise InvalidFieldError(
            field, f"{shown(value)} must be printable ASCII without spaces"
        )
    return value


@dataclass(frozen=True, slots=True)
class _Spec:
    instrument: Instrument
    shard: int
    tick: int
    lot: int
    low: int
    high: int
    scale: int


class Converter:
    """Validate and convert requests for one cluster's instruments; build the replies."""

    def __init__(self, instruments: Iterable[Instrument], shard_of: Mapping[str, int]) -> None:
        self.specs: dict[str, _Spec] = {}
        for instrument in instruments:
            low = instrument.min_price if instrument.min_price is not None else 1
            high = instrument.max_price if instrument.max_price is not None else INT64_MAX
            self.specs[instrument.symbol] = _Spec(
                instrument=instrument,
                shard=shard_of[instrument.symbol],
                tick=instrument.tick_size,
                lot=instrument.lot_size,
                low=low,
                high=high,
                scale=instrument.price_scale,
            )

    # ---------------------------------------------------------------- field checks

    def spec(self, field: str, symbol: str) -> _Spec:
        """Return the instrument of a known symbol; raise `InvalidFieldError` otherwise."""
        found = self.specs.get(symbol)
        if found is not None:
            return found
        if not symbol:
            raise InvalidFieldError(field, "is required")
        if len(symbol) > MAX_SYMBOL_LENGTH:
            raise InvalidFieldError(
                field, f"{shown(symbol)} is longer than {MAX_SYMBOL_LENGTH} characters"
            )
        raise InvalidFieldError(field, f"unknown symbol {shown(symbol)}")

    def symbol(self, field: str, symbol: str, *, required: bool = True) -> str:
        """Return a known symbol (or ``""`` when not required and empty)."""
        if not symbol and not required:
            return symbol
        self.spec(field, symbol)
        return symbol

    @staticmethod
    def _quantity(field: str, quantity: int, spec: _Spec) -> int:
        if quantity <= 0:
            raise InvalidFieldError(field, f"{quantity} must be positive")
        if quantity % spec.lot:
            raise InvalidFieldError(
                field,
                f"{quantity} is not a multiple of the lot size {spec.lot} of "
                f"{spec.instrument.symbol}",
            )
        return quantity

    @staticmethod
    def _price(prefix: str, price: int, decimal: str, spec: _Spec) -> int:
        if decimal:
            if price:
                raise InvalidFieldError(
                    f"{prefix}price_decimal", "set either price or price_decimal, not both"
                )
            price = _parse_decimal(f"{prefix}price_decimal", decimal, spec)
            field = f"{prefix}price_decimal"
        else:
            field = f"{prefix}price"
        if price <= 0:
            raise InvalidFieldError(field, f"{price} must be positive for a limit price")
        if price % spec.tick:
            raise InvalidFieldError(
                field,
                f"{price} is not a multiple of the tick size {spec.tick} of "
                f"{spec.instrument.symbol}",
            )
        if price < spec.low or price > spec.high:
            raise InvalidFieldError(
                field,
                f"{price} is outside the price band [{spec.low}, {spec.high}] of "
                f"{spec.instrument.symbol}",
            )
        return price

    @staticmethod
    def _account(field: str, account: str, default_account: str | None) -> str:
        if account:
            return check_id(field, account)
        if default_account is None:
            raise InvalidFieldError(
                field, "is required: the token maps to several accounts"
            )
        return default_account

    # ---------------------------------------------------------------- commands

    def new_order(
        self,
        request: pb.NewOrderRequest,
        default_account: str | None,
        ts_ns: int,
        prefix: str = "",
    ) -> NewOrder:
        """Validate a new order and return it as a command stamped with ``ts_ns``."""
        spec = self.specs.get(request.symbol)
        if spec is None:
            spec = self.spec(f"{prefix}symbol", request.symbol)
        account = request.account
        if not account or len(account) > MAX_ID_LENGTH or not _ID.fullmatch(account):
            account = self._account(f"{prefix}account", account, default_account)
        client_order_id = request.client_order_id
        if (
            not client_order_id
            or len(client_order_id) > MAX_ID_LENGTH
            or not _ID.fullmatch(client_order_id)
        ):
            check_id(f"{prefix}client_order_id", client_order_id)
        side = _SIDES.get(request.side)
        if side is None:
            raise InvalidFieldError(f"{prefix}side", _enum_problem(request.side, "BUY or SELL"))
        order_type = _ORDER_TYPES.get(request.order_type)
        if order_type is None:
            raise InvalidFieldError(
                f"{prefix}order_type", _enum_problem(request.order_type, "LIMIT or MARKET")
            )
        raw_tif = request.time_in_force
        if raw_tif:
            time_in_force = _TIMES_IN_FORCE.get(raw_tif)
            if time_in_force is None:
                raise InvalidFieldError(
                    f"{prefix}time_in_force", _enum_problem(raw_tif, "GTC, IOC or FOK")
                )
        elif order_type is OrderType.LIMIT:
            time_in_force = TimeInForce.GTC
        else:
            time_in_force = TimeInForce.IOC
        stp = _SELF_TRADE.get(request.self_trade_prevention)
        if stp is None:
            raise InvalidFieldError(
                f"{prefix}self_trade_prevention",
                _enum_problem(request.self_trade_prevention,
                              "NONE, CANCEL_RESTING, CANCEL_AGGRESSING or CANCEL_BOTH"),
            )
        quantity = request.quantity
        if quantity <= 0 or quantity % spec.lot:
            self._quantity(f"{prefix}quantity", quantity, spec)
        post_only = request.post_only
        if order_type is OrderType.LIMIT:
            price = request.price
            if (
                request.price_decimal
                or price < spec.low
                or price > spec.high
                or price % spec.tick
            ):
                price = self._price(prefix, price, request.price_decimal, spec)
            if post_only and time_in_force is not TimeInForce.GTC:
                raise InvalidFieldError(
                    f"{prefix}post_only", "a post-only order must be GTC: it only ever rests"
                )
        else:
            if request.price or request.price_decimal:
                field = "price_decimal" if request.price_decimal else "price"
                raise InvalidFieldError(f"{prefix}{field}", "a market order carries no price")
            if post_only:
                raise InvalidFieldError(f"{prefix}post_only", "a market order cannot be post-only")
            price = 0
        return NewOrder(
            account=account,
            client_order_id=client_order_id,
            symbol=request.symbol,
            side=side,
            quantity=quantity,
            price=price,
            order_type=order_type,
            time_in_force=time_in_force,
            post_only=post_only,
            self_trade_prevention=stp,
            ts_ns=ts_ns,
        )

    def new_orders(
        self,
        requests: Sequence[pb.NewOrderRequest],
        default_account: str | None,
        ts_ns: int,
        max_orders: int,
    ) -> OrderBatch:
        """Validate a batch whole; return it ready to send, or raise for the first bad field.

        The common order (a GTC or IOC limit order with plain fields) is checked inline; any
        other goes through `new_order`, so both paths accept exactly the same orders.
        """
        if not requests:
            raise InvalidFieldError("orders", "must hold at least one order")
        if len(requests) > max_orders:
            raise InvalidFieldError(
                "orders", f"{len(requests)} orders exceed the limit of {max_orders} per call"
            )
        specs = self.specs
        rows: list[WireRow] = []
        accounts: list[str] = []
        symbols: list[str] = []
        shards: list[int] = []
        tag = _NEW_ORDER_TAG
        limit = MAX_ID_LENGTH
        for index, request in enumerate(requests):
            symbol = request.symbol
            account = request.account or default_account or ""
            client_order_id = request.client_order_id
            side = request.side
            tif = request.time_in_force
            quantity = request.quantity
            price = request.price
            spec = specs.get(symbol)
            if (
                spec is not None
                and 0 < len(account) <= limit and account.isascii() and account.isprintable()
                and " " not in account
                and 0 < len(client_order_id) <= limit and client_order_id.isascii()
                and client_order_id.isprintable() and " " not in client_order_id
                and (side == 1 or side == 2)
                and request.order_type == 1
                and 0 <= tif <= 2
                and quantity > 0 and not quantity % spec.lot
                and spec.low <= price <= spec.high and not price % spec.tick
                and not request.post_only
                and not request.self_trade_prevention
                and not request.price_decimal
            ):
                rows.append((tag, account, client_order_id, symbol, side, quantity, price,
                             1, tif or 1, False, 0, ts_ns))
            else:
                order = self.new_order(request, default_account, ts_ns, f"orders[{index}].")
                rows.append(new_order_row(order))
                account = order.account
                spec = specs[order.symbol]
            accounts.append(account)
            symbols.append(symbol)
            shards.append(spec.shard)
        return OrderBatch(rows=rows, accounts=accounts, symbols=symbols, shards=shards)

    def cancel(
        self, request: pb.CancelOrderRequest, default_account: str | None, ts_ns: int
    ) -> CancelOrder:
        """Validate a cancel request."""
        account = self._account("account", request.account, default_account)
        check_id("client_order_id", request.client_order_id)
        symbol = self.symbol("symbol", request.symbol)
        order_id = self._order_id("order_id", request.order_id)
        return CancelOrder(account=account, client_order_id=request.client_order_id,
                           symbol=symbol, order_id=order_id, ts_ns=ts_ns)

    def replace(
        self, request: pb.ReplaceOrderRequest, default_account: str | None, ts_ns: int
    ) -> ReplaceOrder:
        """Validate a replace request."""
        account = self._account("account", request.account, default_account)
        check_id("client_order_id", request.client_order_id)
        spec = self.spec("symbol", request.symbol)
        order_id = self._order_id("order_id", request.order_id)
        price = self._price("", request.price, request.price_decimal, spec)
        quantity = self._quantity("quantity", request.quantity, spec)
        return ReplaceOrder(account=account, client_order_id=request.client_order_id,
                            symbol=request.symbol, order_id=order_id, price=price,
                            quantity=quantity, ts_ns=ts_ns)

    def mass_cancel(
        self, request: pb.MassCancelRequest, default_account: str | None, ts_ns: int
    ) -> MassCancel:
        """Validate a mass cancel (every symbol when ``symbol`` is empty)."""
        account = self._account("account", request.account, default_account)
        check_id("client_order_id", request.client_order_id)
        symbol = self.symbol("symbol", request.symbol, required=False)
        return MassCancel(account=account, client_order_id=request.client_order_id,
                          symbol=symbol, ts_ns=ts_ns)

    def halt(self, request: pb.HaltSymbolRequest, request_id: str, ts_ns: int) -> SetSymbolHalt:
        """Validate a halt or resume of a symbol."""
        symbol = self.symbol("symbol", request.symbol)
        return SetSymbolHalt(symbol=symbol, halted=request.halted,
                             client_order_id=request_id, ts_ns=ts_ns)

    @staticmethod
    def kill_switch(request: pb.SetKillSwitchRequest, request_id: str, ts_ns: int) -> SetKillSwitch:
        """Validate a kill switch change."""
        account = check_id("account", request.account)
        return SetKillSwitch(account=account, engaged=request.engaged,
                             client_order_id=request_id, ts_ns=ts_ns)

    def risk_limits(
        self, request: pb.SetRiskLimitsRequest, request_id: str, ts_ns: int
    ) -> SetRiskLimits:
        """Validate new risk limits: each set limit must be 1 to 2**63 - 1."""
        account = request.account
        if account != ALL_ACCOUNTS:
            check_id("account", account)
        symbol = self.symbol("symbol", request.symbol, required=False)
        values: dict[str, int | None] = {}
        for name in _LIMIT_FIELDS:
            if request.limits.HasField(name):
                value = getattr(request.limits, name)
                if value <= 0:
                    raise InvalidFieldError(
                        f"limits.{name}", f"{value} must be positive (leave it unset for no limit)"
                    )
                values[name] = value
            else:
                values[name] = None
        return SetRiskLimits(account=account, limits=RiskLimitsConfig(**values), symbol=symbol,
                             client_order_id=request_id, ts_ns=ts_ns)

    @staticmethod
    def _order_id(field: str, order_id: int) -> int:
        if order_id <= 0:
            raise InvalidFieldError(field, "is required")
        if order_id > INT64_MAX:
            raise InvalidFieldError(field, f"{order_id} is beyond the order id range")
        return order_id

    def order_id(self, field: str, order_id: int) -> int:
        """Return a plausible order id (positive, within 63 bits)."""
        return self._order_id(field, order_id)

    def book_depth(self, depth: int) -> int:
        """Return the depth of a book request (0 means the default of 10)."""
        if depth == 0:
            return DEFAULT_BOOK_DEPTH
        if depth > MAX_BOOK_DEPTH:
            raise InvalidFieldError("depth", f"{depth} is above the maximum of {MAX_BOOK_DEPTH}")
        return depth

    def symbols(self, field: str, symbols: Sequence[str], max_symbols: int) -> list[str]:
        """Return distinct known symbols, at least one and at most ``max_symbols``."""
        if not symbols:
            raise InvalidFieldError(field, "must name at least one symbol")
        if len(symbols) > max_symbols:
            raise InvalidFieldError(field, f"{len(symbols)} symbols exceed the limit of "
                                           f"{max_symbols}")
        for index, symbol in enumerate(symbols):
            self.symbol(f"{field}[{index}]", symbol)
        return list(dict.fromkeys(symbols))

    # ---------------------------------------------------------------- reports

    @staticmethod
    def reports(
        events: Iterable[Event], shard: int, accounts: Collection[str] | None
    ) -> list[pb.ExecutionReport]:
        """Return the execution reports of ``events`` for ``accounts`` (None: every account)."""
        out: list[pb.ExecutionReport] = []
        for event in events:
            kind = type(event)
            if kind is Trade:
                _fills(event, shard, accounts, out)  # type: ignore[arg-type]
            elif kind in _REPORTED and (accounts is None or event.account in accounts):  # type: ignore[union-attr]
                out.append(_report(event, shard))
        return out

    @staticmethod
    def submit_orders_response(
        per_order: Sequence[Sequence[Event]],
    ) -> pb.SubmitOrdersResponse:
        """Summarise each order's events in columns (see `SubmitOrdersResponse`)."""
        order_ids: list[int] = []
        filled: list[int] = []
        open_quantities: list[int] = []
        rejections: list[pb.OrderRejection] = []
        for index, events in enumerate(per_order):
            order_id = 0
            done = 0
            left = 0
            for event in events:
                kind = type(event)
                if kind is OrderAccepted:
                    order_id = event.order_id  # type: ignore[union-attr]
                    left = event.quantity  # type: ignore[union-attr]
                elif kind is Trade:
                    if event.taker_order_id == order_id:  # type: ignore[union-attr]
                        done += event.quantity  # type: ignore[union-attr]
                        left = event.taker_leaves  # type: ignore[union-attr]
                elif kind is OrderCancelled:
                    if event.order_id == order_id:  # type: ignore[union-attr]
                        left = 0
                elif kind is OrderRejected:
                    rejections.append(pb.OrderRejection(
                        index=index, code=_reject_code(event.code), text=event.text,  # type: ignore[union-attr]
                        order_id=event.order_id,  # type: ignore[union-attr]
                    ))
            order_ids.append(order_id)
            filled.append(done)
            open_quantities.append(left)
        response = pb.SubmitOrdersResponse(rejections=rejections)
        response.order_ids.extend(order_ids)
        response.filled_quantities.extend(filled)
        response.open_quantities.extend(open_quantities)
        return response

    @staticmethod
    def execution_batch(
        reports: Sequence[pb.ExecutionReport], cursor: Mapping[int, int]
    ) -> pb.ExecutionBatch:
        """Return one message of an execution stream."""
        return pb.ExecutionBatch(reports=reports, cursor=cursor)

    # ---------------------------------------------------------------- market data

    @staticmethod
    def snapshot_update(
        symbol: str,
        seq: int,
        ts_ns: int,
        bids: Sequence[tuple[int, int, int]],
        asks: Sequence[tuple[int, int, int]],
    ) -> pb.MarketDataUpdate:
        """Return a whole-book update valid at ``seq``."""
        return pb.MarketDataUpdate(
            symbol=symbol, seq=seq, previous_seq=0, ts_ns=ts_ns,
            snapshot=pb.BookSnapshot(bids=_levels(bids), asks=_levels(asks)),
        )

    @staticmethod
    def level_update(event: LevelChanged, previous_seq: int) -> pb.MarketDataUpdate:
        """Return a price level change."""
        return pb.MarketDataUpdate(
            symbol=event.symbol, seq=event.seq, previous_seq=previous_seq, ts_ns=event.ts_ns,
            level=pb.LevelUpdate(
                side=_PB_SIDE.get(event.side, pb.SIDE_UNSPECIFIED), price=event.price,
                quantity=event.quantity, order_count=event.order_count,
            ),
        )

    @staticmethod
    def trade_update(event: Trade, previous_seq: int) -> pb.MarketDataUpdate:
        """Return a public trade print (no accounts)."""
        return pb.MarketDataUpdate(
            symbol=event.symbol, seq=event.seq, previous_seq=previous_seq, ts_ns=event.ts_ns,
            trade=pb.TradePrint(
                price=event.price, quantity=event.quantity,
                aggressor_side=_PB_SIDE.get(event.aggressor_side, pb.SIDE_UNSPECIFIED),
            ),
        )

    def market_update(
        self, event: LevelChanged | Trade, previous_seq: int
    ) -> pb.MarketDataUpdate:
        """Return a level change or a trade print."""
        if type(event) is Trade:
            return self.trade_update(event, previous_seq)
        return self.level_update(event, previous_seq)  # type: ignore[arg-type]

    @staticmethod
    def market_data_batch(updates: Sequence[pb.MarketDataUpdate]) -> pb.MarketDataBatch:
        """Return one message of a market-data stream."""
        return pb.MarketDataBatch(updates=updates)

    # ---------------------------------------------------------------- reads

    @staticmethod
    def order(row: Mapping[str, Any]) -> pb.Order:
        """Return an open order from a book actor's order row."""
        return pb.Order(
            order_id=row["order_id"], account=row["account"],
            client_order_id=row["client_order_id"], symbol=row["symbol"], side=row["side"],
            price=row["price"], open_quantity=row["open_quantity"],
        )

    def open_orders(self, rows: Iterable[Mapping[str, Any]]) -> pb.ListOpenOrdersResponse:
        """Return the open orders of the rows, by order id."""
        ordered = sorted(rows, key=lambda row: int(row["order_id"]))
        return pb.ListOpenOrdersResponse(orders=[self.order(row) for row in ordered])

    @staticmethod
    def positions(rows: Iterable[Mapping[str, Any]]) -> pb.GetPositionsResponse:
        """Return positions from position actor rows (money as decimal strings)."""
        positions = [
            pb.Position(
                account=row["account"],
                symbol=row["symbol"],
                net_quantity=row["net_quantity"],
                cost=str(row["cost"]),
                realized_pnl=str(row["realized_pnl"]),
                unrealized_pnl=str(row["unrealized_pnl"]),
                mark_price=row.get("mark_price") or 0,
                traded_quantity=row["traded_quantity"],
                traded_notional=str(row["traded_notional"]),
                fees=str(row["fees"]),
            )
            for row in sorted(rows, key=lambda row: (row["symbol"], row["account"]))
        ]
        return pb.GetPositionsResponse(positions=positions)

    @staticmethod
    def book(
        symbol: str, bids: Sequence[Sequence[int]], asks: Sequence[Sequence[int]]
    ) -> pb.Book:
        """Return a book of levels ``(price, quantity, order_count)``."""
        return pb.Book(symbol=symbol, bids=_levels(bids), asks=_levels(asks))

    def instruments(self, shards: int) -> pb.ListInstrumentsResponse:
        """Return every instrument with its shard."""
        return pb.ListInstrumentsResponse(
            instruments=[
                pb.Instrument(
                    symbol=symbol,
                    tick_size=spec.tick,
                    lot_size=spec.lot,
                    price_scale=spec.scale,
                    min_price=spec.instrument.min_price or 0,
                    max_price=spec.instrument.max_price or 0,
                    shard=spec.shard,
                )
                for symbol, spec in sorted(self.specs.items())
            ],
            shards=shards,
        )

    @staticmethod
    def admin_response(events: Iterable[tuple[int, Event]]) -> pb.AdminResponse:
        """Summarise the events of an admin command over the shards it went to."""
        response = pb.AdminResponse(applied=True)
        cancelled = 0
        for shard, event in events:
            kind = type(event)
            if kind is OrderRejected:
                response.applied = False
                response.reject_code = _reject_code(event.code)  # type: ignore[union-attr]
                response.text = event.text  # type: ignore[union-attr]
            elif kind is OrderCancelled:
                cancelled += 1
            elif kind in _ADMIN_EVENTS:
                response.seqs[shard] = event.seq
        response.cancelled_orders = cancelled
        return response

    @staticmethod
    def status(
        gateway: str,
        shards: Sequence[Mapping[str, Any]],
        supervisors: Sequence[Mapping[str, Any]],
    ) -> pb.GetStatusResponse:
        """Return the cluster's status as the gateway gathered it."""
        return pb.GetStatusResponse(
            gateway=gateway,
            shards=[
                pb.ShardStatus(
                    shard=row["shard"],
                    up=row.get("up", False),
                    error=row.get("error", ""),
                    symbols=row.get("symbols", []),
                    next_seq=row.get("next_seq", 0),
                    resting_orders=row.get("resting_orders", 0),
                    halted_symbols=row.get("halted_symbols", []),
                    killed_accounts=row.get("killed_accounts", []),
                    gateway_next_seq=row.get("gateway_next_seq", 0),
                )
                for row in shards
            ],
            supervisors=[
                pb.SupervisorStatus(
                    name=row.get("name", ""),
                    state=row.get("state", ""),
                    children=[
                        pb.SupervisedChild(
                            name=name, up=bool(child.get("up")),
                            restarts=int(child.get("restarts", 0)),
                            last_error=str(child.get("last_error", "")),
                        )
                        for name, child in sorted(row.get("children", {}).items())
                    ],
                )
                for row in supervisors
            ],
        )


# ------------------------------------------------------------------------------ helpers

_REPORTED: Final = (OrderAccepted, OrderRejected, OrderCancelled, OrderReplaced)
_ADMIN_EVENTS: Final = (SymbolHaltSet, KillSwitchSet, RiskLimitsSet)


def event_accounts(event: Event) -> tuple[str, ...]:
    """Return the accounts an event concerns for execution reports (none for market data)."""
    kind = type(event)
    if kind is Trade:
        return (event.maker_account, event.taker_account)  # type: ignore[union-attr]
    if kind in _REPORTED:
        return (event.account,)  # type: ignore[union-attr]
    return ()


def _enum_problem(value: int, allowed: str) -> str:
    if value == 0:
        return f"is required ({allowed})"
    return f"unknown value {value} (expected {allowed})"


def _parse_decimal(field: str, text: str, spec: _Spec) -> int:
    if len(text) > 40:
        raise InvalidFieldError(field, f"{shown(text)} is longer than 40 characters")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InvalidFieldError(field, f"{shown(text)} is not a decimal number") from None
    if not value.is_finite():
        raise InvalidFieldError(field, f"{shown(text)} is not a finite number")
    scaled = value.scaleb(spec.scale)
    if scaled != scaled.to_integral_value():
        raise InvalidFieldError(
            field,
            f"{shown(text)} has more than {spec.scale} decimal places "
            f"(price_scale of {spec.instrument.symbol})",
        )
    price = int(scaled)
    if not -INT64_MAX <= price <= INT64_MAX:
        raise InvalidFieldError(field, f"{shown(text)} is beyond the 64-bit price range")
    return price


def _levels(levels: Sequence[Sequence[int]]) -> list[pb.Level]:
    return [pb.Level(price=level[0], quantity=level[1], order_count=level[2]) for level in levels]


def _report(event: Event, shard: int) -> pb.ExecutionReport:
    kind = type(event)
    if kind is OrderAccepted:
        accepted: OrderAccepted = event  # type: ignore[assignment]
        return pb.ExecutionReport(
            shard=shard, seq=accepted.seq, ts_ns=accepted.ts_ns,
            type=pb.EXECUTION_TYPE_ACCEPTED, account=accepted.account,
            symbol=accepted.symbol, order_id=accepted.order_id,
            client_order_id=accepted.client_order_id,
            side=_PB_SIDE.get(accepted.side, pb.SIDE_UNSPECIFIED),
            order_type=_PB_ORDER_TYPE.get(accepted.order_type, pb.ORDER_TYPE_UNSPECIFIED),
            time_in_force=_PB_TIME_IN_FORCE.get(
                accepted.time_in_force, pb.TIME_IN_FORCE_UNSPECIFIED
            ),
            price=accepted.price, quantity=accepted.quantity,
            leaves_quantity=accepted.quantity,
        )
    if kind is OrderRejected:
        rejected: OrderRejected = event  # type: ignore[assignment]
        return pb.ExecutionReport(
            shard=shard, seq=rejected.seq, ts_ns=rejected.ts_ns,
            type=pb.EXECUTION_TYPE_REJECTED, account=rejected.account,
            symbol=rejected.symbol, order_id=rejected.order_id,
            client_order_id=rejected.client_order_id, request_id=rejected.client_order_id,
            request_kind=_PB_REQUEST_KIND.get(
                rejected.request, pb.REQUEST_KIND_UNSPECIFIED
            ),
            reject_code=_reject_code(rejected.code),
            text=rejected.text,
        )
    if kind is OrderCancelled:
        cancelled: OrderCancelled = event  # type: ignore[assignment]
        return pb.ExecutionReport(
            shard=shard, seq=cancelled.seq, ts_ns=cancelled.ts_ns,
            type=pb.EXECUTION_TYPE_CANCELLED, account=cancelled.account,
            symbol=cancelled.symbol, order_id=cancelled.order_id,
            client_order_id=cancelled.client_order_id, request_id=cancelled.request_id,
            side=_PB_SIDE.get(cancelled.side, pb.SIDE_UNSPECIFIED), price=cancelled.price,
            quantity=cancelled.quantity,
            cancel_reason=_cancel_reason(cancelled.reason),
        )
    replaced: OrderReplaced = event  # type: ignore[assignment]
    return pb.ExecutionReport(
        shard=shard, seq=replaced.seq, ts_ns=replaced.ts_ns,
        type=pb.EXECUTION_TYPE_REPLACED, account=replaced.account, symbol=replaced.symbol,
        order_id=replaced.order_id, client_order_id=replaced.client_order_id,
        request_id=replaced.request_id, side=_PB_SIDE.get(replaced.side, pb.SIDE_UNSPECIFIED),
        price=replaced.price,
        quantity=replaced.quantity, leaves_quantity=replaced.quantity,
        previous_price=replaced.old_price, previous_quantity=replaced.old_quantity,
        priority_kept=replaced.priority_kept,
    )


def _fills(
    trade: Trade, shard: int, accounts: Collection[str] | None, out: list[pb.ExecutionReport]
) -> None:
    # maker first: it was in the book before the taker arrived
    if accounts is None or trade.maker_account in accounts:
        out.append(pb.ExecutionReport(
            shard=shard, seq=trade.seq, ts_ns=trade.ts_ns, type=pb.EXECUTION_TYPE_FILL,
            account=trade.maker_account, symbol=trade.symbol, order_id=trade.maker_order_id,
            client_order_id=trade.maker_client_order_id,
            side=_PB_SIDE[_OPPOSITE[trade.aggressor_side]], last_price=trade.price,
            last_quantity=trade.quantity, leaves_quantity=trade.maker_leaves,
            liquidity=pb.LIQUIDITY_MAKER,
        ))
    if accounts is None or trade.taker_account in accounts:
        out.append(pb.ExecutionReport(
            shard=shard, seq=trade.seq, ts_ns=trade.ts_ns, type=pb.EXECUTION_TYPE_FILL,
            account=trade.taker_account, symbol=trade.symbol, order_id=trade.taker_order_id,
            client_order_id=trade.taker_client_order_id,
            side=_PB_SIDE.get(trade.aggressor_side, pb.SIDE_UNSPECIFIED),
            last_price=trade.price, last_quantity=trade.quantity,
            leaves_quantity=trade.taker_leaves, liquidity=pb.LIQUIDITY_TAKER,
        ))


def _reject_code(code: RejectCode) -> pb.RejectCode:
    return _PB_REJECT_CODE.get(code, pb.REJECT_CODE_UNSPECIFIED)


def _cancel_reason(reason: CancelReason) -> pb.CancelReason:
    return _PB_CANCEL_REASON.get(reason, pb.CANCEL_REASON_UNSPECIFIED)
