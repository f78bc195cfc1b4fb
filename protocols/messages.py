"""The internal vocabulary of raytrade: instruments, commands, events and reject codes.

Every message is a frozen msgspec Struct. Commands and events each form a tagged union, so a
whole batch encodes or decodes in one msgspec call (`encode`, `decode_commands`,
`decode_events`); the journal, the Ray hops and the gateways all move these batches.

Numbers are integers, never floats:

* a **price** is an integer in units of ``10**-price_scale`` of the instrument's currency and
  must be a multiple of the instrument's ``tick_size`` (with ``tick_size == 1`` it is the tick
  count); a market order carries price 0;
* a **quantity** is an integer count of units and must be a multiple of ``lot_size``;
* both fit in a signed 64-bit integer, the limit of the wire formats;
* timestamps are integer nanoseconds since the Unix epoch (``ts_ns``), taken at the gateway on
  ingress and journaled with the command, so a replay decides exactly as the live run did.

Business outcomes are events, not exceptions: an order that cannot be accepted produces an
`OrderRejected` with a `RejectCode` and a text a trader understands.

Every command carries its audit origin (``origin``: principal, gateway and peer, see
`format_origin`) beside its ingress time, so the journal says who asked for what, when and
through what (`cluster.research.audit` reads an order's life back from it).

Wire compatibility: structs are encoded as arrays (``array_like``), so field order is part of
the format. Add new fields only at the end, with a default: a journal written before the field
existed still decodes (msgspec fills a missing trailing field with its default).
"""

from __future__ import annotations

import enum
from typing import Final, TypeAlias

import msgspec

INT64_MAX: Final = 2**63 - 1
"""Largest price, quantity or level total the wire formats carry."""


class Side(enum.IntEnum):
    """Which side of the book an order is on."""

    BUY = 1
    SELL = 2


class OrderType(enum.IntEnum):
    """LIMIT rests at its price; MARKET takes whatever the opposite side offers, never rests."""

    LIMIT = 1
    MARKET = 2


class TimeInForce(enum.IntEnum):
    """How long an order may live.

    GTC rests until filled or cancelled; IOC takes what it can and cancels the remainder; FOK
    fills completely at once or is rejected without a trace. Market orders never rest: with GTC
    or IOC their unfilled remainder is cancelled.
    """

    GTC = 1
    IOC = 2
    FOK = 3


class SelfTradePrevention(enum.IntEnum):
    """What happens when an aggressing order meets a resting order of the same account.

    The aggressing order's mode decides. NONE lets the two trade.
    """

    NONE = 0
    CANCEL_RESTING = 1
    CANCEL_AGGRESSING = 2
    CANCEL_BOTH = 3


class CancelReason(enum.IntEnum):
    """Why an order (or what was left of it) was cancelled."""

    USER = 1
    IOC_REMAINDER = 2
    MARKET_REMAINDER = 3
    SELF_TRADE_PREVENTION = 4
    KILL_SWITCH = 5
    MASS_CANCEL = 6
    DISCONNECT = 7


class RequestKind(enum.IntEnum):
    """Which kind of request a reject answers."""

    NEW_ORDER = 1
    CANCEL = 2
    REPLACE = 3
    ADMIN = 4


class RejectCode(enum.IntEnum):
    """Every reason a shard refuses a request, grouped by the stage that refuses it.

    2xx risk (pre-trade limits), 3xx matching (the order book's own rules and malformed
    commands). A gateway refuses a request before any shard sees it and answers with a gRPC
    status instead (`protocols.errors`), so there are no gateway codes; 1xx stays unused.
    """

    # risk
    RISK_MAX_ORDER_QUANTITY = 201
    RISK_MAX_ORDER_NOTIONAL = 202
    RISK_PRICE_COLLAR = 203
    RISK_MAX_POSITION = 204
    RISK_MAX_OPEN_ORDERS = 205
    RISK_ORDER_RATE = 206
    RISK_ACCOUNT_KILLED = 207
    RISK_SYMBOL_HALTED = 208
    RISK_INVALID_LIMITS = 209
    # matching
    UNKNOWN_SYMBOL = 301
    INVALID_QUANTITY = 302
    INVALID_PRICE = 303
    PRICE_OUT_OF_BAND = 304
    INVALID_ORDER_TYPE = 305
    INVALID_SIDE = 306
    INVALID_TIME_IN_FORCE = 307
    POST_ONLY_WOULD_TAKE = 308
    FOK_NOT_FILLABLE = 309
    NO_LIQUIDITY = 310
    UNKNOWN_ORDER = 311
    ORDER_NOT_OPEN = 312
    ORDER_NOT_OWNED = 313
    """No longer emitted: another account's order is answered as one that is not open, so no
    one learns which order ids are live (issue 9); kept so recorded reports still decode."""
    LEVEL_QUANTITY_OVERFLOW = 314
    DUPLICATE_CLIENT_ORDER_ID = 315

    @property
    def stage(self) -> str:
        """Return ``"risk"`` or ``"matching"``."""
        return {2: "risk", 3: "matching"}[self.value // 100]


class Instrument(msgspec.Struct, frozen=True, kw_only=True):
    """What can be traded and in which increments."""

    symbol: str
    """Unique name, e.g. ``"AAPL"``."""
    tick_size: int = 1
    """Smallest price increment, in price units (``10**-price_scale``)."""
    lot_size: int = 1
    """Smallest quantity increment."""
    price_scale: int = 2
    """Decimal places of the integer price: price 12345 with scale 2 is 123.45."""
    min_price: int | None = None
    """Lowest price accepted for a limit order, if set (inclusive)."""
    max_price: int | None = None
    """Highest price accepted for a limit order, if set (inclusive)."""
    reference_price: int | None = None
    """Price the risk collar centres on until the first trade, if set."""
    maker_fee_bps: int = 0
    """Fee charged to the resting side of a trade, in hundredths of a percent of notional."""
    taker_fee_bps: int = 0
    """Fee charged to the aggressing side of a trade, in hundredths of a percent of notional."""


# --------------------------------------------------------------------------------------------
# Commands: what a client (through a gateway) asks a shard to do.
# gc=False: messages hold only strings and integers, so they cannot form reference cycles;
# keeping them out of the cyclic garbage collector removes its pauses from the matching path.


class NewOrder(msgspec.Struct, frozen=True, kw_only=True, tag=True, array_like=True, gc=False):
    """Enter an order."""

    account: str
    """Account the order trades for."""
    client_order_id: str
    """The client's id for this order, unique per account."""
    symbol: str
    side: Side
    quantity: int
    """Quantity to trade, a positive multiple of the lot size."""
    price: int = 0
    """Limit price (a positive multiple of the tick size); 0 for a market order."""
    order_type: OrderType = OrderType.LIMIT
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    """Reject the order instead of letting it take liquidity; it only ever rests."""
    self_trade_prevention: SelfTradePrevention = SelfTradePrevention.NONE
    ts_ns: int = 0
    """Ingress timestamp taken by the gateway, nanoseconds since the epoch."""
    origin: str = ""
    """Who sent the command and through what, for the audit trail: ``principal|gateway|peer``
    (`format_origin`, `parse_origin`); empty when unknown (a command journaled before
    issue 12, or built in-process without one)."""


class CancelOrder(msgspec.Struct, frozen=True, kw_only=True, tag=True, array_like=True, gc=False):
    """Cancel what is left of a resting order."""

    account: str
    client_order_id: str
    """The client's id for this cancel request (echoed as ``request_id``)."""
    symbol: str
    order_id: int
    """The order to cancel, as assigned by the shard."""
    ts_ns: int = 0
    origin: str = ""
    """Who sent it and through what (see `NewOrder.origin`)."""


class ReplaceOrder(msgspec.Struct, frozen=True, kw_only=True, tag=True, array_like=True, gc=False):
    """Change a resting order's price and/or open quantity.

    A smaller quantity at the same price keeps the order's time priority; a new price or a
    larger quantity sends it to the back of the queue at its (new) price, where it trades at
    once if it crosses.
    """

    account: str
    client_order_id: str
    """The client's id for this replace request (echoed as ``request_id``)."""
    symbol: str
    order_id: int
    price: int
    """New limit price."""
    quantity: int
    """New *open* (remaining) quantity, not the original total."""
    ts_ns: int = 0
    origin: str = ""
    """Who sent it and through what (see `NewOrder.origin`)."""


class MassCancel(msgspec.Struct, frozen=True, kw_only=True, tag=True, array_like=True, gc=False):
    """Cancel every resting order of an account in one symbol, or in all of the shard's."""

    account: str
    client_order_id: str
    """The client's id for this request (echoed as ``request_id`` on each cancel)."""
    symbol: str = ""
    """Only this symbol; empty for every symbol of the shard."""
    ts_ns: int = 0
    origin: str = ""
    """Who sent it and through what (see `NewOrder.origin`)."""


class RiskLimitsConfig(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Pre-trade limits for an account (or its override for one symbol). None: no limit.

    Notional is price (integer price units) times quantity.
    """

    max_order_quantity: int | None = None
    max_order_notional: int | None = None
    price_collar_bps: int | None = None
    """Largest distance of a limit price from the reference price (last trade, else the
    instrument's configured reference), in hundredths of a percent."""
    max_position: int | None = None
    """Largest absolute position, counting open orders on the order's side."""
    max_open_orders: int | None = None
    max_orders_per_second: int | None = None
    """Sustained rate of new orders and replaces (token bucket on ingress timestamps)."""
    order_burst: int | None = None
    """Bucket size for the rate limit; defaults to one second's worth."""


class SetRiskLimits(msgspec.Struct, frozen=True, kw_only=True, tag=True, array_like=True, gc=False):
    """Set an account's limits, or its override for one symbol (admin)."""

    account: str
    """The account, or ``"*"`` for the default of every account."""
    limits: RiskLimitsConfig
    symbol: str = ""
    """Empty for the account-wide limits; a symbol for an override."""
    client_order_id: str = ""
    ts_ns: int = 0
    origin: str = ""
    """Who sent it and through what (see `NewOrder.origin`)."""


class SetKillSwitch(msgspec.Struct, frozen=True, kw_only=True, tag=True, array_like=True, gc=False):
    """Engage (block new orders, cancel resting ones) or release an account's kill switch."""

    account: str
    engaged: bool
    client_order_id: str = ""
    ts_ns: int = 0
    origin: str = ""
    """Who sent it and through what (see `NewOrder.origin`)."""


class SetSymbolHalt(msgspec.Struct, frozen=True, kw_only=True, tag=True, array_like=True, gc=False):
    """Halt (no new orders or replaces; cancels still allowed) or resume a symbol."""

    symbol: str
    halted: bool
    account: str = ""
    client_order_id: str = ""
    ts_ns: int = 0
    origin: str = ""
    """Who sent it and through what (see `NewOrder.origin`)."""


Command: TypeAlias = (
    NewOrder | CancelOrder | ReplaceOrder | MassCancel | SetRiskLimits | SetKillSwitch
    | SetSymbolHalt
)
"""Everything a shard's journal records. Admin commands are journaled like orders, so a
replay decides exactly as the live run did."""


# --------------------------------------------------------------------------------------------
# Audit origin: who sent a command, through which gateway, from where (issue 12).
#
# Each command carries it as one compact string, ``principal|gateway|peer``, because the
# order path is decoded in the shard at ~1M commands/s: measured on 100k NewOrders (2 cores),
# a string adds ~37 bytes and ~80 ns of decoding per command, a nested ``Audit`` struct the
# same bytes and ~280 ns. The parts are escaped (``%`` -> ``%25``, ``|`` -> ``%7C``), so a
# token name or peer holding a ``|`` still parses back exactly.


class Origin(msgspec.Struct, frozen=True, kw_only=True):
    """A command's audit origin, parsed (`parse_origin`)."""

    principal: str = ""
    """The name of the bearer token's entry that sent it (``"driver"`` for the Python
    driver); empty if unknown."""
    gateway: str = ""
    """The name of the gateway it came through; empty if it came through none."""
    peer: str = ""
    """The client's address as gRPC reports it (``ipv4:127.0.0.1:53412``), or the driver's
    host and process."""


def _escape(part: str) -> str:
    if "%" in part or "|" in part:
        return part.replace("%", "%25").replace("|", "%7C")
    return part


def _unescape(part: str) -> str:
    if "%" in part:
        return part.replace("%7C", "|").replace("%25", "%")
    return part


def format_origin(principal: str, gateway: str, peer: str) -> str:
    """Return the ``origin`` string of a command sent by ``principal`` through ``gateway``
    from ``peer``."""
    return f"{_escape(principal)}|{_escape(gateway)}|{_escape(peer)}"


def parse_origin(origin: str) -> Origin:
    """Return the parts of a command's ``origin``; an empty origin gives empty parts, and a
    string that is not three parts is taken as the principal alone."""
    parts = origin.split("|")
    if len(parts) != 3:
        return Origin(principal=_unescape(origin))
    return Origin(principal=_unescape(parts[0]), gateway=_unescape(parts[1]),
                  peer=_unescape(parts[2]))


# --------------------------------------------------------------------------------------------
# Events: what a shard did. ``seq`` is the shard's gap-free event sequence number.
#
# Unlike commands, events are not keyword-only: the matching core builds them positionally on
# its hot paths, because a keyword call costs ~135 ns more for a Trade on the CI machines
# (~40% of building it). Everyone else should still pass keywords.


class _Event(msgspec.Struct, frozen=True, gc=False):
    """Common base of events (no fields of its own)."""


class OrderAccepted(_Event, frozen=True, tag=True, array_like=True, gc=False):
    """An order entered the book (it may trade at once; trades follow)."""

    seq: int
    ts_ns: int
    symbol: str
    order_id: int
    account: str
    client_order_id: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: int
    quantity: int


class OrderRejected(_Event, frozen=True, tag=True, array_like=True, gc=False):
    """A request was refused; nothing changed."""

    seq: int
    ts_ns: int
    symbol: str
    account: str
    client_order_id: str
    """The refused request's client id."""
    request: RequestKind
    code: RejectCode
    text: str
    """Why, in words a trader understands."""
    order_id: int = 0
    """The order a refused cancel or replace aimed at; 0 for a new order."""


class Trade(_Event, frozen=True, tag=True, array_like=True, gc=False):
    """Two orders traded at the resting (maker) order's price."""

    seq: int
    ts_ns: int
    symbol: str
    price: int
    quantity: int
    aggressor_side: Side
    maker_order_id: int
    maker_account: str
    maker_client_order_id: str
    maker_leaves: int
    """Maker's open quantity after this trade."""
    taker_order_id: int
    taker_account: str
    taker_client_order_id: str
    taker_leaves: int
    """Taker's unfilled quantity after this trade (it may still rest or be cancelled)."""


class OrderCancelled(_Event, frozen=True, tag=True, array_like=True, gc=False):
    """An order's open quantity was removed from the book (or never entered it)."""

    seq: int
    ts_ns: int
    symbol: str
    order_id: int
    account: str
    client_order_id: str
    """The cancelled order's client id."""
    side: Side
    price: int
    quantity: int
    """Open quantity that was cancelled."""
    reason: CancelReason
    request_id: str = ""
    """Client id of the request that caused it (a cancel or mass cancel), if any."""


class OrderReplaced(_Event, frozen=True, tag=True, array_like=True, gc=False):
    """A resting order's price and/or open quantity changed."""

    seq: int
    ts_ns: int
    symbol: str
    order_id: int
    account: str
    client_order_id: str
    """The order's client id (unchanged by the replace)."""
    request_id: str
    """Client id of the replace request."""
    side: Side
    old_price: int
    old_quantity: int
    price: int
    quantity: int
    """New open quantity."""
    priority_kept: bool
    """True if the order kept its place in the queue."""


class LevelChanged(_Event, frozen=True, tag=True, array_like=True, gc=False):
    """A price level's aggregate changed during the batch (market data, L2 delta).

    Emitted at the end of each command batch, one per level whose total quantity or order
    count differs from the start of the batch, ordered by symbol, side (BUY first) and price.
    Applying them in order to the previous L2 picture gives the book after the batch.
    """

    seq: int
    ts_ns: int
    symbol: str
    side: Side
    price: int
    quantity: int
    """Total open quantity now resting at this price; 0 means the level is gone."""
    order_count: int


class RiskLimitsSet(_Event, frozen=True, tag=True, array_like=True, gc=False):
    """An account's limits (or a symbol override) changed."""

    seq: int
    ts_ns: int
    account: str
    symbol: str
    limits: RiskLimitsConfig
    request_id: str = ""


class KillSwitchSet(_Event, frozen=True, tag=True, array_like=True, gc=False):
    """An account's kill switch was engaged or released (cancels follow when engaged)."""

    seq: int
    ts_ns: int
    account: str
    engaged: bool
    request_id: str = ""


class SymbolHaltSet(_Event, frozen=True, tag=True, array_like=True, gc=False):
    """A symbol was halted or resumed."""

    seq: int
    ts_ns: int
    symbol: str
    halted: bool
    request_id: str = ""


Event: TypeAlias = (
    OrderAccepted | OrderRejected | Trade | OrderCancelled | OrderReplaced | LevelChanged
    | RiskLimitsSet | KillSwitchSet | SymbolHaltSet
)


# --------------------------------------------------------------------------------------------
# Codecs: one msgspec call per batch.

_encoder = msgspec.msgpack.Encoder()
_command_decoder = msgspec.msgpack.Decoder(list[Command])
_event_decoder = msgspec.msgpack.Decoder(list[Event])


def encode(messages: list[Command] | list[Event]) -> bytes:
    """Encode a batch of commands or events as MessagePack."""
    return _encoder.encode(messages)


def decode_commands(data: bytes) -> list[Command]:
    """Decode a batch of commands; raise `msgspec.ValidationError` on malformed input."""
    return _command_decoder.decode(data)


def decode_events(data: bytes) -> list[Event]:
    """Decode a batch of events; raise `msgspec.ValidationError` on malformed input."""
    return _event_decoder.decode(data)
