"""Pre-trade risk limits of one shard: the checks an order passes before it reaches a book.

(The module is long, ~860 lines, on purpose: the checks and the fold that feeds them share one
state, and splitting them would put the order path's invariants in two places.)

The limits are a fold over the shard's event log, like the books themselves, so the shard's reader
rebuilds them by replay and tests drive them without Ray. `RiskLimits` implements
`actors.core.book.PreTradeGate`: a book asks `check` before it accepts an order or a replace,
the engine asks `check_admin` before it applies an admin command, and after every command the
engine hands that command's events to `observe`. Only events change the state, so an order the
gate (or the book) rejects leaves no trace, and a replay decides exactly as the live run did.

What the state holds, all folded from events:

* the open-order index (`OrderAccepted`, `Trade`, `OrderCancelled`, `OrderReplaced`): per order
  its account, symbol, side, price and open quantity; per (account, symbol) the open buy and
  sell quantities and the open order count; per account its open order count;
* the position per (account, symbol) and the last trade price per symbol (`Trade`);
* limits, kill switches and halts (`RiskLimitsSet`, `KillSwitchSet`, `SymbolHaltSet`);
* one token bucket per account for the order rate.

**Account-wide limits are enforced per shard.** A shard sees only its own symbols, so an
account's open order count (``max_open_orders``) and its order rate (``max_orders_per_second``,
``order_burst``) are counted over the shard's symbols: an account trading in N shards may hold
N times its open orders and send N times its rate. Holding them across shards would put a
shared counter on the order path. The other limits are per (account, symbol) anyway.

Limits resolve field by field, for the order's (account, symbol); the first level that sets a
field wins:

1. the account's override for the symbol (`SetRiskLimits` with a symbol);
2. the account's limits (`SetRiskLimits` without a symbol);
3. the ``"*"`` account's override for the symbol;
4. the ``"*"`` account's limits;
5. ``default_limits`` given to the constructor.

A field that is None at every level is no limit. A `RiskLimitsSet` replaces the whole config of
its level; an all-None config removes the level. For the account-wide limits a symbol override
sets the limit that orders in that symbol are held to; the count compared with it is still the
account's count in the shard.

`check` applies, in this order (the first failure is the answer): kill switch, halt, maximum
order quantity, maximum order notional, price collar, maximum position, maximum open orders,
order rate. Arithmetic is in integers throughout:

* notional = price x quantity; a market order is valued at the reference price (the last trade
  price in the symbol, else the instrument's ``reference_price``), or not checked if neither is
  known;
* the collar refuses a limit price with ``|price - reference| * 10000 > collar_bps * reference``;
* the position check takes the worst case in the order's direction, open orders on the same
  side included: a buy is refused if ``position + open_buy + quantity > max_position``, a sell
  if ``open_sell + quantity - position > max_position`` (a replace counts its new open quantity
  in place of its old one). A position already beyond a lowered limit still lets orders
  reduce it, as long as they and their side's open orders cannot carry it past the limit on
  the other side;
* the token bucket counts billionths of a token: it holds up to ``order_burst`` (default
  ``max_orders_per_second``) tokens, refills ``max_orders_per_second`` billionths per
  nanosecond of ``ts_ns``, and an accepted order or replace takes one token. Time never runs
  backwards for a bucket: an earlier ``ts_ns`` refills nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Final

import cython
import msgspec

from protocols.messages import (
    INT64_MAX,
    Command,
    Event,
    Instrument,
    KillSwitchSet,
    LevelChanged,
    NewOrder,
    OrderAccepted,
    OrderCancelled,
    OrderReplaced,
    OrderType,
    RejectCode,
    ReplaceOrder,
    RiskLimitsConfig,
    RiskLimitsSet,
    SetRiskLimits,
    Side,
    SymbolHaltSet,
    Trade,
)

COMPILED: Final[bool] = cython.compiled
"""True when this module runs as its Cython extension, False as plain Python."""

ALL_ACCOUNTS: Final = "*"
"""The account name whose limits apply to every account that does not set its own."""

TOKEN: Final = 1_000_000_000
"""One token of the order-rate bucket, in the billionths the bucket counts."""

# Module constants: an enum member lookup costs far more than a global on the hot path.
_BUY: Final = Side.BUY
_SELL: Final = Side.SELL
_MARKET: Final = OrderType.MARKET
_KILLED: Final = RejectCode.RISK_ACCOUNT_KILLED
_HALTED: Final = RejectCode.RISK_SYMBOL_HALTED
_ORDER_QUANTITY: Final = RejectCode.RISK_MAX_ORDER_QUANTITY
_ORDER_NOTIONAL: Final = RejectCode.RISK_MAX_ORDER_NOTIONAL
_COLLAR: Final = RejectCode.RISK_PRICE_COLLAR
_POSITION: Final = RejectCode.RISK_MAX_POSITION
_OPEN_ORDERS: Final = RejectCode.RISK_MAX_OPEN_ORDERS
_RATE: Final = RejectCode.RISK_ORDER_RATE
_LIMIT_FIELDS: Final = RiskLimitsConfig.__struct_fields__
_NO_LIMITS: Final = RiskLimitsConfig()


# ------------------------------------------------------------------------------ public records


class OpenOrder(msgspec.Struct, frozen=True, kw_only=True):
    """An order the risk state counts as open: resting, or live within its own command."""

    order_id: int
    account: str
    symbol: str
    side: Side
    price: int
    """Limit price; 0 for a market order (never open after its command)."""
    quantity: int
    """Open quantity."""


class LimitsEntry(msgspec.Struct, frozen=True, kw_only=True):
    """The limits set at one level: an account (or ``"*"``), optionally for one symbol."""

    account: str
    symbol: str
    """Empty for the account-wide limits."""
    limits: RiskLimitsConfig


class PositionEntry(msgspec.Struct, frozen=True, kw_only=True):
    """A non-zero position, as the risk state counts it (from the shard's trades only)."""

    account: str
    symbol: str
    position: int
    """Signed quantity: positive long, negative short."""


class LastTradePrice(msgspec.Struct, frozen=True, kw_only=True):
    """The price of the last trade in a symbol: the reference of collars and market orders."""

    symbol: str
    price: int


class RateBucket(msgspec.Struct, frozen=True, kw_only=True):
    """An account's order-rate bucket as of its last use."""

    account: str
    tokens: int
    """Whole tokens in the bucket at ``ts_ns``."""
    token_billionths: int
    """Billionths of a token on top of ``tokens`` (0 to 999,999,999)."""
    ts_ns: int
    """Timestamp of the bucket's last use."""


class RiskState(msgspec.Struct, frozen=True, kw_only=True):
    """Canonical state of `RiskLimits`: the body of its snapshot and of its `state_hash`.

    Every list is sorted (by account, symbol or order id), so equal states encode equally.
    """

    default_limits: RiskLimitsConfig
    limits: list[LimitsEntry]
    killed_accounts: list[str]
    halted_symbols: list[str]
    last_trade_prices: list[LastTradePrice]
    positions: list[PositionEntry]
    open_orders: list[OpenOrder]
    rate_buckets: list[RateBucket]


class SymbolExposure(msgspec.Struct, frozen=True, kw_only=True):
    """An account's exposure in one symbol."""

    symbol: str
    position: int
    """Signed quantity: positive long, negative short."""
    open_buy_quantity: int
    open_sell_quantity: int
    open_orders: int


class AccountExposure(msgspec.Struct, frozen=True, kw_only=True):
    """An account's exposure in the shard: what the risk read model shows."""

    account: str
    killed: bool
    """True while the account's kill switch is engaged."""
    open_orders: int
    """Open orders over all the shard's symbols (what ``max_open_orders`` counts)."""
    symbols: list[SymbolExposure]
    """One per symbol with a position or open orders, sorted by symbol."""


# ------------------------------------------------------------------------------ internal records


@cython.final
@cython.no_gc  # holds no reference that could close a cycle
@cython.cclass
class _Exposure:
    """Position and open quantities of one (account, symbol)."""

    position = cython.declare(object, visibility="public")
    open_buy = cython.declare(object, visibility="public")
    open_sell = cython.declare(object, visibility="public")
    open_orders = cython.declare(cython.Py_ssize_t, visibility="public")

    def __init__(self) -> None:
        self.position = 0
        self.open_buy = 0
        self.open_sell = 0
        self.open_orders = 0


@cython.final
@cython.no_gc  # holds no reference that could close a cycle
@cython.cclass
class _Account:
    """Per-account counters: open orders in the shard, the rate bucket, the exposures."""

    open_orders = cython.declare(cython.Py_ssize_t, visibility="public")
    tokens = cython.declare(object, visibility="public")
    """Billionths of a token at ``tokens_ts_ns``; None: never used, so full."""
    tokens_ts_ns = cython.declare(object, visibility="public")
    exposures = cython.declare(dict, visibility="public")
    """Symbol -> `_Exposure`."""

    def __init__(self) -> None:
        self.open_orders = 0
        self.tokens = None
        self.tokens_ts_ns = 0
        self.exposures = {}


@cython.final
@cython.no_gc  # holds no reference that could close a cycle
@cython.cclass
class _Order:
    """An open order in the index; it points at the records its quantity is counted in."""

    account = cython.declare(str, visibility="public")
    symbol = cython.declare(str, visibility="public")
    buying = cython.declare(cython.bint, visibility="public")
    price = cython.declare(object, visibility="public")
    quantity = cython.declare(object, visibility="public")
    exposure = cython.declare(_Exposure, visibility="public")
    holder = cython.declare(_Account, visibility="public")

    def __init__(
        self,
        account: str,
        symbol: str,
        buying: bool,
        price: int,
        quantity: int,
        exposure: _Exposure,
        holder: _Account,
    ) -> None:
        self.account = account
        self.symbol = symbol
        self.buying = buying
        self.price = price
        self.quantity = quantity
        self.exposure = exposure
        self.holder = holder


@cython.cfunc
def _new_order(
    account: str,
    symbol: str,
    buying: cython.bint,
    price: object,
    quantity: object,
    exposure: _Exposure,
    holder: _Account,
) -> _Order:
    """Make an `_Order` without the argument parsing of a call to its class."""
    order: _Order = _Order.__new__(_Order)
    order.account = account
    order.symbol = symbol
    order.buying = buying
    order.price = price
    order.quantity = quantity
    order.exposure = exposure
    order.holder = holder
    return order


class _Limits(msgspec.Struct, frozen=True, gc=False):
    """Resolved limits of one (account, symbol), flattened for the hot path."""

    config: RiskLimitsConfig
    unlimited: bool
    max_order_quantity: int | None
    max_order_notional: int | None
    price_collar_bps: int | None
    max_position: int | None
    max_open_orders: int | None
    rate: int | None
    capacity: int
    """Bucket size in billionths of a token (0 without a rate limit)."""


def _flatten(config: RiskLimitsConfig) -> _Limits:
    rate = config.max_orders_per_second
    burst = config.order_burst if config.order_burst is not None else rate
    return _Limits(
        config,
        config == _NO_LIMITS,
        config.max_order_quantity,
        config.max_order_notional,
        config.price_collar_bps,
        config.max_position,
        config.max_open_orders,
        rate,
        (burst or 0) * TOKEN,
    )


def _refill(holder: _Account | None, limits: _Limits, rate: int, ts_ns: int) -> int:
    """Return the bucket's level at ``ts_ns``, in billionths of a token."""
    capacity = limits.capacity
    if holder is None or holder.tokens is None:
        return capacity
    level = holder.tokens
    elapsed = ts_ns - holder.tokens_ts_ns
    if elapsed > 0:
        level += elapsed * rate
    return level if level < capacity else capacity


def _take_token(holder: _Account, limits: _Limits, rate: int, ts_ns: int) -> None:
    """Refill the bucket to ``ts_ns`` and take one token; the bucket's clock never goes back."""
    holder.tokens = _refill(holder, limits, rate, ts_ns) - TOKEN
    if ts_ns > holder.tokens_ts_ns:
        holder.tokens_ts_ns = ts_ns


# ------------------------------------------------------------------------------ the gate


@cython.final
@cython.cclass
class RiskLimits:
    """Check orders against each account's limits and fold the shard's events into exposure.

    Per shard: account-wide limits count the account's orders in this shard only (see the
    module docstring). ``instruments`` are the shard's; ``default_limits`` apply to every
    account and symbol where no `SetRiskLimits` sets a field.
    """

    cython.declare(
        _reference_prices=dict, _default=object, _configs=dict, _killed=set, _halted=set,
        _last_prices=dict, _accounts=dict, _orders=dict, _resolved=dict,
    )

    def __init__(
        self, instruments: Iterable[Instrument], default_limits: RiskLimitsConfig | None = None
    ) -> None:
        # symbol -> its instrument's reference price (or None)
        self._reference_prices: dict[str, int | None] = {
            instrument.symbol: instrument.reference_price for instrument in instruments
        }
        self._default = default_limits if default_limits is not None else _NO_LIMITS
        self._configs: dict[tuple[str, str], RiskLimitsConfig] = {}
        self._killed: set[str] = set()
        self._halted: set[str] = set()
        self._last_prices: dict[str, int] = {}
        self._accounts: dict[str, _Account] = {}
        self._orders: dict[int, _Order] = {}
        # account -> symbol -> resolved limits; a memo of `_configs`, cleared on RiskLimitsSet
        self._resolved: dict[str, dict[str, _Limits]] = {}

    # ---------------------------------------------------------------- the gate protocol

    @cython.locals(per_account=dict, holder=_Account, exposure=_Exposure, order=_Order)
    def check(self, command: NewOrder | ReplaceOrder) -> tuple[RejectCode, str] | None:
        """Return why the order or replace breaks a limit, or None if it passes them all.

        Change no state (the memo of resolved limits may grow; it is not state).
        """
        account = command.account
        symbol = command.symbol
        if account in self._killed:
            return _KILLED, (
                f"account {account} is stopped by its kill switch: no new orders or replaces "
                f"until it is released"
            )
        if symbol in self._halted:
            return _HALTED, (
                f"{symbol} is halted: no new orders or replaces until it resumes "
                f"(cancels are still accepted)"
            )
        per_account = self._resolved.get(account)
        limits = per_account.get(symbol) if per_account is not None else None
        if limits is None:
            limits = self._limits_for(account, symbol)
        if limits.unlimited:
            return None

        quantity = command.quantity
        if isinstance(command, NewOrder):
            new = True
            buying: bool | None = command.side == _BUY
            market = command.order_type == _MARKET
            replaced = 0
        else:
            new = market = False
            order = self._orders.get(command.order_id)
            # the engine finds the order before it asks; without it the side is unknown
            buying = order.buying if order is not None else None
            replaced = order.quantity if order is not None else 0

        cap = limits.max_order_quantity
        if cap is not None and quantity > cap:
            return _ORDER_QUANTITY, (
                f"quantity {quantity} is above account {account}'s maximum order quantity "
                f"of {cap} in {symbol}"
            )

        price = command.price
        cap = limits.max_order_notional
        if cap is not None:
            if market:
                value = self._last_prices.get(symbol)
                if value is None:
                    value = self._reference_prices.get(symbol)
            else:
                value = price
            if value is not None and value * quantity > cap:
                return _ORDER_NOTIONAL, self._notional_text(
                    account, symbol, value, quantity, cap, market
                )

        collar = limits.price_collar_bps
        if collar is not None and not market:
            reference = self._last_prices.get(symbol)
            if reference is None:
                reference = self._reference_prices.get(symbol)
            if reference is not None and abs(price - reference) * 10_000 > collar * reference:
                return _COLLAR, self._collar_text(account, symbol, price, collar)

        holder = self._accounts.get(account)
        cap = limits.max_position
        if cap is not None and buying is not None:
            exposure = holder.exposures.get(symbol) if holder is not None else None
            if exposure is not None:
                position = exposure.position
                already = (exposure.open_buy if buying else exposure.open_sell) - replaced
            else:
                position = 0
                already = -replaced
            projected = position + already + quantity if buying else already + quantity - position
            if projected > cap:
                return _POSITION, self._position_text(
                    account, symbol, buying, quantity, projected, position, already, new, cap
                )

        cap = limits.max_open_orders
        if cap is not None and new:
            count = holder.open_orders if holder is not None else 0
            if count + 1 > cap:
                return _OPEN_ORDERS, (
                    f"account {account} already has {count} open orders in this shard, its "
                    f"maximum is {cap}: cancel one before entering another"
                )

        rate = limits.rate
        if rate is not None and holder is not None:
            tokens = holder.tokens
            # a bucket holding a whole token passes without refilling: a refill never
            # takes a bucket below one token, as every bucket holds at least one
            if tokens is not None and tokens < TOKEN:
                level = _refill(holder, limits, rate, command.ts_ns)
                if level < TOKEN:
                    return _RATE, self._rate_text(account, limits, rate, level)
        return None

    def check_admin(self, command: Command) -> tuple[RejectCode, str] | None:
        """Return why an admin command is refused, or None.

        Refuse a `SetRiskLimits` with a limit that is zero, negative or beyond the 64-bit
        range of the wire formats; None means no limit and is always valid.
        """
        if type(command) is not SetRiskLimits:
            return None
        limits = command.limits
        invalid = [
            f"{name}={value}"
            for name in _LIMIT_FIELDS
            if (value := getattr(limits, name)) is not None and not 0 < value <= INT64_MAX
        ]
        if not invalid:
            return None
        where = f" in {command.symbol}" if command.symbol else ""
        return RejectCode.RISK_INVALID_LIMITS, (
            f"invalid risk limits for account {command.account}{where}: {', '.join(invalid)}; "
            f"every limit must be a whole number from 1 to {INT64_MAX}, or unset for no limit"
        )

    @cython.locals(
        orders=dict, accounts=dict, resolved=dict, per_account=dict, holder=_Account,
        exposure=_Exposure, maker_exposure=_Exposure, taker_exposure=_Exposure, maker=_Order,
        taker=_Order, order=_Order, index=cython.Py_ssize_t, end=cython.Py_ssize_t,
        buying=cython.bint,
    )
    def observe(self, events: Sequence[Event], start: int) -> None:
        """Fold ``events[start:]``, the events of one command, into the state."""
        orders = self._orders
        accounts = self._accounts
        resolved = self._resolved  # cleared in place, never rebound
        end = len(events)
        for index in range(start, end):  # not events[start:]: no copy
            event = events[index]
            kind = type(event)
            if kind is OrderAccepted:
                # inlined: the most frequent event, and calls are dear in CPython
                accepted: OrderAccepted = event  # type: ignore[assignment]
                account = accepted.account
                symbol = accepted.symbol
                holder = accounts.get(account)
                if holder is None:
                    holder = _Account()
                    accounts[account] = holder
                exposure = holder.exposures.get(symbol)
                if exposure is None:
                    exposure = _Exposure()
                    holder.exposures[symbol] = exposure
                quantity = accepted.quantity
                buying = accepted.side == _BUY
                if buying:
                    exposure.open_buy += quantity
                else:
                    exposure.open_sell += quantity
                exposure.open_orders += 1
                holder.open_orders += 1
                orders[accepted.order_id] = _new_order(
                    account, symbol, buying, accepted.price, quantity, exposure, holder
                )
                per_account = resolved.get(account)
                limits = per_account.get(symbol) if per_account is not None else None
                if limits is None:
                    limits = self._limits_for(account, symbol)
                if limits.rate is not None:
                    _take_token(holder, limits, limits.rate, accepted.ts_ns)
            elif kind is LevelChanged:
                continue  # the most frequent event of all for a reader of the log
            elif kind is Trade:
                trade: Trade = event  # type: ignore[assignment]
                quantity = trade.quantity
                maker = orders.get(trade.maker_order_id)
                taker = orders.get(trade.taker_order_id)
                if maker is not None:
                    maker_exposure = maker.exposure
                    if maker.buying:
                        maker_exposure.open_buy -= quantity
                    else:
                        maker_exposure.open_sell -= quantity
                    maker.quantity -= quantity
                    if not maker.quantity:
                        del orders[trade.maker_order_id]
                        maker_exposure.open_orders -= 1
                        maker.holder.open_orders -= 1
                else:
                    maker_exposure = self._exposure(trade.maker_account, trade.symbol)
                if taker is not None:
                    taker_exposure = taker.exposure
                    if taker.buying:
                        taker_exposure.open_buy -= quantity
                    else:
                        taker_exposure.open_sell -= quantity
                    taker.quantity -= quantity
                    if not taker.quantity:
                        del orders[trade.taker_order_id]
                        taker_exposure.open_orders -= 1
                        taker.holder.open_orders -= 1
                else:
                    taker_exposure = self._exposure(trade.taker_account, trade.symbol)
                if trade.aggressor_side == _BUY:
                    taker_exposure.position += quantity
                    maker_exposure.position -= quantity
                else:
                    taker_exposure.position -= quantity
                    maker_exposure.position += quantity
                self._last_prices[trade.symbol] = trade.price
            elif kind is OrderCancelled:
                cancelled: OrderCancelled = event  # type: ignore[assignment]
                order = orders.pop(cancelled.order_id, None)
                if order is not None:
                    exposure = order.exposure
                    if order.buying:
                        exposure.open_buy -= order.quantity
                    else:
                        exposure.open_sell -= order.quantity
                    exposure.open_orders -= 1
                    order.holder.open_orders -= 1
            elif kind is OrderReplaced:
                self._replaced(event)  # type: ignore[arg-type]
            elif kind is RiskLimitsSet or kind is KillSwitchSet or kind is SymbolHaltSet:
                self._admin(event)  # type: ignore[arg-type]

    # ---------------------------------------------------------------- folding helpers

    def _admin(self, event: RiskLimitsSet | KillSwitchSet | SymbolHaltSet) -> None:
        if type(event) is RiskLimitsSet:
            key = (event.account, event.symbol)
            if event.limits == _NO_LIMITS:
                self._configs.pop(key, None)
            else:
                self._configs[key] = event.limits
            self._resolved.clear()
        elif type(event) is KillSwitchSet:
            if event.engaged:
                self._killed.add(event.account)
            else:
                self._killed.discard(event.account)
        elif type(event) is SymbolHaltSet:
            if event.halted:
                self._halted.add(event.symbol)
            else:
                self._halted.discard(event.symbol)

    def _replaced(self, event: OrderReplaced) -> None:
        order = self._orders.get(event.order_id)
        if order is not None:
            change = event.quantity - order.quantity
            if order.buying:
                order.exposure.open_buy += change
            else:
                order.exposure.open_sell += change
            order.quantity = event.quantity
            order.price = event.price
            holder = order.holder
        else:
            holder = self._account(event.account)
        per_account = self._resolved.get(event.account)
        limits = per_account.get(event.symbol) if per_account is not None else None
        if limits is None:
            limits = self._limits_for(event.account, event.symbol)
        if limits.rate is not None:
            _take_token(holder, limits, limits.rate, event.ts_ns)

    def _account(self, account: str) -> _Account:
        holder = self._accounts.get(account)
        if holder is None:
            holder = self._accounts[account] = _Account()
        return holder

    def _exposure(self, account: str, symbol: str) -> _Exposure:
        exposures = self._account(account).exposures
        exposure: _Exposure | None = exposures.get(symbol)
        if exposure is None:
            exposure = exposures[symbol] = _Exposure()
        return exposure

    # ---------------------------------------------------------------- limits

    def _limits_for(self, account: str, symbol: str) -> _Limits:
        """Resolve the limits of (account, symbol) and remember them until limits change."""
        limits = self._resolve(account, symbol)
        self._resolved.setdefault(account, {})[symbol] = limits
        return limits

    def _resolve(self, account: str, symbol: str) -> _Limits:
        configs = self._configs
        levels = [
            config
            for config in (
                configs.get((account, symbol)),
                configs.get((account, "")),
                configs.get((ALL_ACCOUNTS, symbol)),
                configs.get((ALL_ACCOUNTS, "")),
                self._default,
            )
            if config is not None
        ]
        values: dict[str, int] = {}
        for name in _LIMIT_FIELDS:
            for config in levels:
                value = getattr(config, name)
                if value is not None:
                    values[name] = value
                    break
        return _flatten(RiskLimitsConfig(**values))

    def _reference(self, symbol: str) -> tuple[int | None, str]:
        """Return the reference price of a symbol and where it comes from, in words."""
        price = self._last_prices.get(symbol)
        if price is not None:
            return price, "last trade price"
        return self._reference_prices.get(symbol), "instrument's reference price"

    # ---------------------------------------------------------------- reject texts

    def _notional_text(
        self, account: str, symbol: str, value: int, quantity: int, cap: int, market: bool
    ) -> str:
        if market:
            source = self._reference(symbol)[1]
            what = (
                f"market order notional {value * quantity} (quantity {quantity} at the "
                f"{source} {value})"
            )
        else:
            what = f"notional {value * quantity} (price {value} x quantity {quantity})"
        return f"{what} is above account {account}'s maximum order notional of {cap} in {symbol}"

    def _collar_text(self, account: str, symbol: str, price: int, collar: int) -> str:
        reference, source = self._reference(symbol)
        assert reference is not None
        width = collar * reference // 10_000
        return (
            f"price {price} is outside account {account}'s price collar in {symbol}: "
            f"{collar} bps around the {source} {reference} allows "
            f"{reference - width} to {reference + width}"
        )

    @staticmethod
    def _position_text(
        account: str, symbol: str, buying: bool, quantity: int, projected: int, position: int,
        already: int, new: bool, cap: int,
    ) -> str:
        verb, noun = ("buying", "buys") if buying else ("selling", "sells")
        if new:
            detail = f"open {noun} {already}, this order {quantity}"
        else:
            detail = f"other open {noun} {already}, this order's new open quantity {quantity}"
        signed = projected if buying else -projected
        return (
            f"{verb} {quantity} could take account {account}'s position in {symbol} to "
            f"{signed:+d} (position {position:+d}, {detail}), over its maximum position "
            f"of {cap} long or short"
        )

    @staticmethod
    def _rate_text(account: str, limits: _Limits, rate: int, level: int) -> str:
        wait_ns = -(-(TOKEN - level) // rate)  # rounded up, as is the display
        wait_us = -(-wait_ns // 1000)
        return (
            f"account {account} is sending orders and replaces faster than its limit of {rate} "
            f"per second (bursts up to {limits.capacity // TOKEN}); the next one is allowed in "
            f"{wait_us // 1000}.{wait_us % 1000:03d} ms"
        )

    # ---------------------------------------------------------------- queries

    def limits(self, account: str, symbol: str) -> RiskLimitsConfig:
        """Return the limits that apply to orders of ``account`` in ``symbol``, resolved."""
        per_account = self._resolved.get(account)
        limits = per_account.get(symbol) if per_account is not None else None
        if limits is None:
            limits = self._limits_for(account, symbol)
        return limits.config

    def exposure(self, account: str) -> AccountExposure:
        """Return an account's positions and open orders in the shard's symbols."""
        holder = self._accounts.get(account)
        symbols = []
        if holder is not None:
            for symbol in sorted(holder.exposures):
                exposure = holder.exposures[symbol]
                if exposure.position or exposure.open_orders:
                    symbols.append(
                        SymbolExposure(
                            symbol=symbol,
                            position=exposure.position,
                            open_buy_quantity=exposure.open_buy,
                            open_sell_quantity=exposure.open_sell,
                            open_orders=exposure.open_orders,
                        )
                    )
        return AccountExposure(
            account=account,
            killed=account in self._killed,
            open_orders=holder.open_orders if holder is not None else 0,
            symbols=symbols,
        )

    def accounts(self) -> list[str]:
        """Return the accounts with a position or an open order, sorted."""
        return sorted(
            account
            for account, holder in self._accounts.items()
            if holder.open_orders
            or any(exposure.position for exposure in holder.exposures.values())
        )

    def killed_accounts(self) -> list[str]:
        """Return the accounts whose kill switch is engaged, sorted."""
        return sorted(self._killed)

    def halted_symbols(self) -> list[str]:
        """Return the halted symbols, sorted."""
        return sorted(self._halted)

    def reference_price(self, symbol: str) -> int | None:
        """Return the price collars and market orders are measured against, if any."""
        return self._reference(symbol)[0]

    def open_orders(self) -> list[OpenOrder]:
        """Return every open order, sorted by order id."""
        return [
            OpenOrder(
                order_id=order_id,
                account=order.account,
                symbol=order.symbol,
                side=_BUY if order.buying else _SELL,
                price=order.price,
                quantity=order.quantity,
            )
            for order_id, order in sorted(self._orders.items())
        ]

    # ---------------------------------------------------------------- snapshots

    def state(self, open_orders: bool = True) -> RiskState:
        """Return the canonical state (immutable, safe to keep or encode); without
        ``open_orders``, its list of open orders is left empty (a shard's snapshot: they are
        the resting orders of its books, `actors.core.shard.shard_state`)."""
        buckets = []
        for account in sorted(self._accounts):
            holder = self._accounts[account]
            if holder.tokens is not None:
                tokens, billionths = divmod(holder.tokens, TOKEN)
                buckets.append(
                    RateBucket(
                        account=account,
                        tokens=tokens,
                        token_billionths=billionths,
                        ts_ns=holder.tokens_ts_ns,
                    )
                )
        return RiskState(
            default_limits=self._default,
            limits=[
                LimitsEntry(account=account, symbol=symbol, limits=config)
                for (account, symbol), config in sorted(self._configs.items())
            ],
            killed_accounts=sorted(self._killed),
            halted_symbols=sorted(self._halted),
            last_trade_prices=[
                LastTradePrice(symbol=symbol, price=price)
                for symbol, price in sorted(self._last_prices.items())
            ],
            positions=[
                PositionEntry(account=account, symbol=symbol, position=exposure.position)
                for account in sorted(self._accounts)
                for symbol, exposure in sorted(self._accounts[account].exposures.items())
                if exposure.position
            ],
            open_orders=self.open_orders() if open_orders else [],
            rate_buckets=buckets,
        )

    @classmethod
    def from_state(
        cls,
        instruments: Iterable[Instrument],
        state: RiskState,
        default_limits: RiskLimitsConfig | None = None,
    ) -> RiskLimits:
        """Build the risk state of a snapshot; its derived counters are recomputed.

        ``default_limits``, if given, replace the snapshot's (the configuration of the
        restarted shard wins); None keeps the snapshot's.
        """
        if default_limits is None:
            default_limits = state.default_limits
        risk: RiskLimits = cls(instruments, default_limits)
        for entry in state.limits:
            risk._configs[(entry.account, entry.symbol)] = entry.limits
        risk._killed.update(state.killed_accounts)
        risk._halted.update(state.halted_symbols)
        for last in state.last_trade_prices:
            risk._last_prices[last.symbol] = last.price
        for position in state.positions:
            risk._exposure(position.account, position.symbol).position = position.position
        risk.add_open_orders(state.open_orders)
        for bucket in state.rate_buckets:
            holder = risk._account(bucket.account)
            holder.tokens = bucket.tokens * TOKEN + bucket.token_billionths
            holder.tokens_ts_ns = bucket.ts_ns
        return risk

    def add_open_orders(self, orders: Iterable[OpenOrder]) -> None:
        """Count ``orders`` as open (restoring a snapshot: its own list, or the resting orders
        of the books this gate guards, which are the same orders; `actors.core.shard`)."""
        for order in orders:
            holder = self._account(order.account)
            exposure = self._exposure(order.account, order.symbol)
            buying = order.side == _BUY
            if buying:
                exposure.open_buy += order.quantity
            else:
                exposure.open_sell += order.quantity
            exposure.open_orders += 1
            holder.open_orders += 1
            self._orders[order.order_id] = _Order(
                order.account, order.symbol, buying, order.price, order.quantity, exposure, holder
            )

    def state_hash(self) -> str:
        """Return a hex digest that is equal for equal states, however they were reached."""
        return hashlib.blake2b(msgspec.msgpack.encode(self.state()), digest_size=16).hexdigest()

    def check_invariants(self) -> None:
        """Raise `AssertionError` if a counter disagrees with the open-order index."""
        expected: dict[tuple[str, str], list[int]] = {}
        for order_id, order in self._orders.items():
            assert order.quantity > 0, f"order {order_id} is open with quantity {order.quantity}"
            assert order.price >= 0, f"order {order_id} has price {order.price}"
            holder = self._accounts.get(order.account)
            assert holder is not None and order.holder is holder, f"order {order_id}: account"
            assert holder.exposures.get(order.symbol) is order.exposure, f"order {order_id}"
            totals = expected.setdefault((order.account, order.symbol), [0, 0, 0])
            totals[0 if order.buying else 1] += order.quantity
            totals[2] += 1
        for account, holder in self._accounts.items():
            count = 0
            for symbol, exposure in holder.exposures.items():
                buy, sell, orders = expected.get((account, symbol), [0, 0, 0])
                actual = [exposure.open_buy, exposure.open_sell, exposure.open_orders]
                assert actual == [buy, sell, orders], (
                    f"{account} {symbol}: open buy/sell/count {actual} != {[buy, sell, orders]}"
                )
                count += orders
            assert holder.open_orders == count, f"{account}: {holder.open_orders} != {count}"
        for (account, symbol), config in self._configs.items():
            assert config != _NO_LIMITS, f"empty limits kept for {account} {symbol}"
        for account, per_symbol in self._resolved.items():
            for symbol, limits in per_symbol.items():
                assert limits == self._resolve(account, symbol), (
                    f"stale resolved limits for {account} {symbol}"
                )
