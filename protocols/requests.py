"""Validation of the gRPC API's requests: protobuf in, internal commands out.

The gateway hands this module protobuf requests and gets internal commands back; the public
API's rules (what a well-formed request is) live here, in one place that unit tests cover
without a server. Building the replies is `protocols.reports`' job; `protocols.convert` joins
the two into the gateway's `Converter`.

Validation is complete and precise: a request that converts is one the gateway may submit; one
that does not raises `InvalidFieldError` naming the field (``orders[3].price``) and saying
why, which the gateway returns as ``INVALID_ARGUMENT``. Conversion never raises anything else
for any protobuf a client can send. A decimal price (``price_decimal``) has one spelling,
parsed in bounded time by `protocols.prices.parse_price` for every request that carries one.

Exceptions (from `protocols.errors`)::

    ValueError
    └── InvalidFieldError      a request field is malformed (-> INVALID_ARGUMENT)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final

import msgspec

from protocols.errors import InvalidFieldError
from protocols.generated import trading_pb2 as pb
from protocols.messages import (
    INT64_MAX,
    CancelOrder,
    Instrument,
    MassCancel,
    NewOrder,
    OrderType,
    ReplaceOrder,
    RiskLimitsConfig,
    SelfTradePrevention,
    SetKillSwitch,
    SetRiskLimits,
    SetSymbolHalt,
    Side,
    TimeInForce,
)
from protocols.prices import parse_price

__all__ = [
    "ALL_ACCOUNTS",
    "DEFAULT_BOOK_DEPTH",
    "MAX_BOOK_DEPTH",
    "MAX_ID_LENGTH",
    "MAX_SYMBOL_LENGTH",
    "InstrumentSpec",
    "InvalidFieldError",
    "OrderBatch",
    "PackedOrder",
    "RequestValidator",
    "WireRow",
    "check_id",
    "check_seq",
    "new_order_row",
    "shown",
]

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




WireRow = tuple[Any, ...]
"""A command as the row MessagePack encodes for it: the struct's tag, then its fields in order.

The batch path builds these instead of `NewOrder` structs: keyword construction of a struct
costs about a microsecond per order, a tuple almost nothing, and the encoded bytes are the
same (a unit test holds them equal), so the shard decodes real `NewOrder` commands."""

_NEW_ORDER_TAG: Final = NewOrder.__struct_config__.tag
_NEW_ORDER_FIELDS: Final = NewOrder.__struct_fields__

_Int64 = Annotated[int, msgspec.Meta(ge=-INT64_MAX - 1, le=INT64_MAX)]
_Enum = Annotated[int, msgspec.Meta(ge=-(1 << 31), le=(1 << 31) - 1)]  # proto3 enums: int32


class PackedOrder(msgspec.Struct, array_like=True, frozen=True, gc=False,
                  forbid_unknown_fields=True):
    """One order of ``SubmitOrdersRequest.packed_orders``: the fields of `NewOrderRequest`
    in its field-number order, as a MessagePack array (trailing fields may be left out).

    Enums are the numbers of trading.proto (``side`` 1 BUY, 2 SELL; ``order_type`` 1 LIMIT,
    2 MARKET; ``time_in_force`` 0 default, 1 GTC, 2 IOC, 3 FOK; ``self_trade_prevention``
    0-3), integers are int64, so a packed order means exactly what the typed one does and
    `RequestValidator` applies the same rules to both. msgspec checks the types and ranges in
    C while it decodes; building and decoding this costs a fraction of protobuf's per-field
    objects (docs/GATEWAY.md, "Packed orders").
    """

    account: str
    client_order_id: str
    symbol: str
    side: _Enum
    order_type: _Enum
    time_in_force: _Enum = 0
    quantity: _Int64 = 0
    price: _Int64 = 0
    price_decimal: str = ""
    post_only: bool = False
    self_trade_prevention: _Enum = 0


_PACKED_FIELDS: Final = PackedOrder.__struct_fields__
_packed_decoder = msgspec.msgpack.Decoder(list[PackedOrder])
_MSGSPEC_PATH = re.compile(r"\$\[(\d+)\](?:\[(\d+)\])?")


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
class InstrumentSpec:
    """An instrument as validation sees it: its shard, tick, lot and price band."""

    instrument: Instrument
    shard: int
    tick: int
    lot: int
    low: int
    high: int
    scale: int


class RequestValidator:
    """Validate requests for one cluster's instruments and convert them to commands."""

    def __init__(self, instruments: Iterable[Instrument], shard_of: Mapping[str, int]) -> None:
        self.specs: dict[str, InstrumentSpec] = {}
        for instrument in instruments:
            low = instrument.min_price if instrument.min_price is not None else 1
            high = instrument.max_price if instrument.max_price is not None else INT64_MAX
            self.specs[instrument.symbol] = InstrumentSpec(
                instrument=instrument,
                shard=shard_of[instrument.symbol],
                tick=instrument.tick_size,
                lot=instrument.lot_size,
                low=low,
                high=high,
                scale=instrument.price_scale,
            )

    # ---------------------------------------------------------------- field checks

    def spec(self, field: str, symbol: str) -> InstrumentSpec:
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
    def _quantity(field: str, quantity: int, spec: InstrumentSpec) -> int:
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
    def _price(prefix: str, price: int, decimal: str, spec: InstrumentSpec) -> int:
        if decimal:
            if price:
                raise InvalidFieldError(
                    f"{prefix}price_decimal", "set either price or price_decimal, not both"
                )
            field = f"{prefix}price_decimal"
            price = parse_price(field, decimal, spec.scale, spec.instrument.symbol)
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
        request: pb.NewOrderRequest | PackedOrder,
        default_account: str | None,
        ts_ns: int,
        prefix: str = "",
        *,
        origin: str = "",
    ) -> NewOrder:
        """Validate a new order and return it as a command stamped with ``ts_ns`` and the
        audit ``origin`` (`protocols.messages.format_origin`)."""
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
            origin=origin,
        )

    def new_orders(
        self,
        requests: Sequence[pb.NewOrderRequest],
        default_account: str | None,
        ts_ns: int,
        max_orders: int,
        *,
        origin: str = "",
    ) -> OrderBatch:
        """Validate a batch whole; return it ready to send, or raise for the first bad field.

        Every order is stamped with ``ts_ns`` and the audit ``origin`` of the call.
        """
        return self._order_batch("orders", requests, default_account, ts_ns, max_orders,
                                 origin)

    def new_orders_packed(
        self,
        data: bytes,
        default_account: str | None,
        ts_ns: int,
        max_orders: int,
        *,
        origin: str = "",
    ) -> OrderBatch:
        """Validate ``SubmitOrdersRequest.packed_orders`` (MessagePack `PackedOrder` rows) as
        `new_orders` validates typed orders: the same rules, the same batch, errors naming
        ``packed_orders[i].field``."""
        try:
            orders = _packed_decoder.decode(data)
        except msgspec.ValidationError as error:
            raise InvalidFieldError(*_packed_problem(str(error))) from None
        except msgspec.DecodeError as error:
            raise InvalidFieldError("packed_orders", f"is not MessagePack: {error}") from None
        return self._order_batch("packed_orders", orders, default_account, ts_ns, max_orders,
                                 origin)

    def _order_batch(
        self,
        name: str,
        requests: Sequence[pb.NewOrderRequest | PackedOrder],
        default_account: str | None,
        ts_ns: int,
        max_orders: int,
        origin: str,
    ) -> OrderBatch:
        """The common order (a GTC or IOC limit order with plain fields) is checked inline;
        any other goes through `new_order`, so both paths accept exactly the same orders."""
        if not requests:
            raise InvalidFieldError(name, "must hold at least one order")
        if len(requests) > max_orders:
            raise InvalidFieldError(
                name, f"{len(requests)} orders exceed the limit of {max_orders} per call"
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
                             1, tif or 1, False, 0, ts_ns, origin))
            else:
                order = self.new_order(request, default_account, ts_ns, f"{name}[{index}].",
                                       origin=origin)
                rows.append(new_order_row(order))
                account = order.account
                spec = specs[order.symbol]
            accounts.append(account)
            symbols.append(symbol)
            shards.append(spec.shard)
        return OrderBatch(rows=rows, accounts=accounts, symbols=symbols, shards=shards)

    def cancel(
        self, request: pb.CancelOrderRequest, default_account: str | None, ts_ns: int,
        *, origin: str = "",
    ) -> CancelOrder:
        """Validate a cancel request."""
        account = self._account("account", request.account, default_account)
        check_id("client_order_id", request.client_order_id)
        symbol = self.symbol("symbol", request.symbol)
        order_id = self._order_id("order_id", request.order_id)
        return CancelOrder(account=account, client_order_id=request.client_order_id,
                           symbol=symbol, order_id=order_id, ts_ns=ts_ns, origin=origin)

    def replace(
        self, request: pb.ReplaceOrderRequest, default_account: str | None, ts_ns: int,
        *, origin: str = "",
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
                            quantity=quantity, ts_ns=ts_ns, origin=origin)

    def mass_cancel(
        self, request: pb.MassCancelRequest, default_account: str | None, ts_ns: int,
        *, origin: str = "",
    ) -> MassCancel:
        """Validate a mass cancel (every symbol when ``symbol`` is empty)."""
        account = self._account("account", request.account, default_account)
        check_id("client_order_id", request.client_order_id)
        symbol = self.symbol("symbol", request.symbol, required=False)
        return MassCancel(account=account, client_order_id=request.client_order_id,
                          symbol=symbol, ts_ns=ts_ns, origin=origin)

    def halt(self, request: pb.HaltSymbolRequest, request_id: str, ts_ns: int,
             *, origin: str = "") -> SetSymbolHalt:
        """Validate a halt or resume of a symbol."""
        symbol = self.symbol("symbol", request.symbol)
        return SetSymbolHalt(symbol=symbol, halted=request.halted,
                             client_order_id=request_id, ts_ns=ts_ns, origin=origin)

    @staticmethod
    def kill_switch(request: pb.SetKillSwitchRequest, request_id: str, ts_ns: int,
                    *, origin: str = "") -> SetKillSwitch:
        """Validate a kill switch change."""
        account = check_id("account", request.account)
        return SetKillSwitch(account=account, engaged=request.engaged,
                             client_order_id=request_id, ts_ns=ts_ns, origin=origin)

    def risk_limits(
        self, request: pb.SetRiskLimitsRequest, request_id: str, ts_ns: int,
        *, origin: str = "",
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
                             client_order_id=request_id, ts_ns=ts_ns, origin=origin)

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


# ------------------------------------------------------------------------------ helpers


def _packed_problem(message: str) -> tuple[str, str]:
    """Return (field, reason) for msgspec's error on packed orders, e.g. ``Expected `int`,
    got `str` - at `$[3][6]``` -> (``packed_orders[3].quantity``, ``expected `int`, got
    `str```)."""
    reason, _, where = message.rpartition(" - at ")
    found = _MSGSPEC_PATH.fullmatch(where.strip("`"))
    if not reason or found is None:
        return "packed_orders", message[:1].lower() + message[1:]
    index, position = found.groups()
    field = f"packed_orders[{index}]"
    if position is not None and int(position) < len(_PACKED_FIELDS):
        field += f".{_PACKED_FIELDS[int(position)]}"
    return field, reason[:1].lower() + reason[1:]


def _enum_problem(value: int, allowed: str) -> str:
    if value == 0:
        return f"is required ({allowed})"
    return f"unknown value {value} (expected {allowed})"
