"""The order book of one symbol: price-time priority matching, in Python that Cython compiles.

The book is a deterministic state machine: the same commands (with the same order ids and
sequence numbers handed in by the engine) always give the same events. It imports no
framework, clock, randomness or I/O.

Data layout, chosen for speed (see benchmarks/bench_matching.py):

* each side is a ``dict`` from price to a `_Level`; a level holds its live total, its live
  order count and a FIFO ``deque`` of resting orders;
* cancelled or moved orders are not searched for in their queue: they are marked dead
  (quantity 0) and skipped when they reach the front; a queue is compacted when dead
  entries outnumber live ones;
* the best price of each side is cached, and a heap of prices (lazy deletion) finds the next
  one when a level empties;
* resting orders, levels, the id counter and the book are `cython.cclass` types: C structs
  when compiled, plain classes when not (`RestingState` is a resting order's snapshot form).

Level changes for market data are recorded on first touch in a batch and emitted by
`flush_level_changes` at the end of the batch (see `protocols.messages.LevelChanged`).

Compiled and pure: the package build compiles this file with Cython in pure-Python mode
(setup.py; `actors._compiled` decides which build a process runs, ``RAYTRADE_PURE=1`` forces
the ``.py``). The ``cython`` decorators and ``cython.declare`` fields are types for the
compiler and no-ops for the interpreter; the same tests run against both builds
(tests/unit/test_compiled_core.py). Rules the compiled build adds: an int64 field (an open
quantity, a level total) raises OverflowError where Python would grow the int, so every sum
that could pass INT64_MAX is checked as ``quantity > INT64_MAX - total`` before it is made;
private ``cfunc`` methods and undeclared attributes are invisible from other modules.

The module is long (~1000 lines) on purpose: it is one state machine whose hot path (submit,
match, cancel, replace, the level bookkeeping) must sit in one module, where the calls between
its classes stay direct C calls once compiled.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from heapq import heapify, heappop, heappush
from typing import Final, Protocol

import cython
import msgspec

from protocols.messages import (
    INT64_MAX,
    CancelOrder,
    CancelReason,
    Command,
    Event,
    Instrument,
    LevelChanged,
    NewOrder,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderReplaced,
    OrderType,
    RejectCode,
    ReplaceOrder,
    RequestKind,
    SelfTradePrevention,
    Side,
    TimeInForce,
    Trade,
)

COMPILED: Final[bool] = cython.compiled
"""True when this module runs as its Cython extension, False as plain Python."""

# Enum members as module constants: ``OrderType.MARKET`` costs ~120 ns a lookup on
# Python 3.11, a module global a few ns, and the hot path makes several per order.
BUY: Final = Side.BUY
SELL: Final = Side.SELL
LIMIT: Final = OrderType.LIMIT
MARKET: Final = OrderType.MARKET
GTC: Final = TimeInForce.GTC
IOC: Final = TimeInForce.IOC
FOK: Final = TimeInForce.FOK
_STP_CANCEL_RESTING: Final = SelfTradePrevention.CANCEL_RESTING
_STP_CANCEL_BOTH: Final = SelfTradePrevention.CANCEL_BOTH
_MARKET_REMAINDER: Final = CancelReason.MARKET_REMAINDER
_IOC_REMAINDER: Final = CancelReason.IOC_REMAINDER
_SELF_TRADE: Final = CancelReason.SELF_TRADE_PREVENTION
_USER: Final = CancelReason.USER
_REQUEST_NEW: Final = RequestKind.NEW_ORDER
_COMPACT_MIN_DEAD: Final = 16


class PreTradeGate(Protocol):
    """Pre-trade risk checks the book consults after an order's form checks pass.

    The gate's state is a fold over the shard's events (it sees every batch through
    `observe`), so a replay decides exactly as the live run did.
    """

    def check(self, command: NewOrder | ReplaceOrder) -> tuple[RejectCode, str] | None:
        """Return a reject code and text, or None to let the order through. Change nothing."""
        ...

    def check_admin(self, command: Command) -> tuple[RejectCode, str] | None:
        """Return why an admin command is refused (e.g. invalid limits), or None."""
        ...

    def observe(self, events: Sequence[Event], start: int) -> None:
        """Fold ``events[start:]``, the events one command just produced, into the state."""
        ...


class RestingState(msgspec.Struct, frozen=True):
    """A resting order in a snapshot (`BookState`): the fields of `RestingOrder`, frozen."""

    order_id: int
    account: str
    client_order_id: str
    side: Side
    price: int
    quantity: int
    post_only: bool
    self_trade_prevention: SelfTradePrevention


@cython.final
@cython.no_gc  # holds no reference that could close a cycle
@cython.cclass
class RestingOrder:
    """A live order in the book. Mutable: its quantity shrinks as it trades.

    A C struct when compiled (direct field access from the matching loop); the open quantity is
    a C int64, the values that pass into events unchanged (ids, price, account) stay Python
    objects so they are not re-boxed into every event. `RestingState` is its snapshot form.
    """

    order_id = cython.declare(object, visibility="public")
    account = cython.declare(str, visibility="public")
    client_order_id = cython.declare(str, visibility="public")
    side = cython.declare(object, visibility="public")
    price = cython.declare(object, visibility="public")
    quantity = cython.declare(cython.longlong, visibility="public")
    """Open quantity; 0 marks an entry that left the book (filled, cancelled or moved)."""
    post_only = cython.declare(cython.bint, visibility="public")
    self_trade_prevention = cython.declare(object, visibility="public")

    def __init__(
        self,
        order_id: int,
        account: str,
        client_order_id: str,
        side: Side,
        price: int,
        quantity: int,
        post_only: bool,
        self_trade_prevention: SelfTradePrevention,
    ) -> None:
        self.order_id = order_id
        self.account = account
        self.client_order_id = client_order_id
        self.side = side
        self.price = price
        self.quantity = quantity
        self.post_only = post_only
        self.self_trade_prevention = self_trade_prevention

    def __repr__(self) -> str:
        return (
            f"RestingOrder(order_id={self.order_id}, account={self.account!r}, "
            f"client_order_id={self.client_order_id!r}, side={self.side!r}, "
            f"price={self.price}, quantity={self.quantity}, post_only={self.post_only!r}, "
            f"self_trade_prevention={self.self_trade_prevention!r})"
        )

    def to_state(self) -> RestingState:
        """Return this order as its snapshot struct (a copy)."""
        return RestingState(
            self.order_id,
            self.account,
            self.client_order_id,
            self.side,
            self.price,
            self.quantity,
            bool(self.post_only),
            self.self_trade_prevention,
        )


@cython.final
@cython.no_gc  # holds no reference that could close a cycle
@cython.cclass
class _Level:
    """One price level: live total and count, and the FIFO queue (dead entries included)."""

    total = cython.declare(cython.longlong, visibility="public")
    count = cython.declare(cython.longlong, visibility="public")
    queue = cython.declare(object, visibility="public")

    def __init__(self) -> None:
        self.total = 0
        self.count = 0
        self.queue = deque()  # of RestingOrder


@cython.final
@cython.no_gc  # holds no reference that could close a cycle
@cython.cclass
class OrderIds:
    """The shard's order id counter, shared by its books so the id of an accepted order is
    taken where the order is accepted."""

    next = cython.declare(object, visibility="public")

    def __init__(self, first: int = 1) -> None:
        self.next = first


class BookState(msgspec.Struct, frozen=True, kw_only=True):
    """Canonical state of one book: resting orders per side in priority order."""

    symbol: str
    bids: list[RestingState]
    """Best price first, then arrival order."""
    asks: list[RestingState]


_NEW_ORDER_FIELDS: Final = (
    "account", "client_order_id", "symbol", "side", "quantity", "price", "order_type",
    "time_in_force", "post_only", "self_trade_prevention", "ts_ns", "origin",
)
if NewOrder.__struct_fields__ != _NEW_ORDER_FIELDS:  # OrderBook.submit unpacks them in order
    raise ImportError(f"NewOrder's fields changed: {NewOrder.__struct_fields__}; update submit")
_fields: Final = msgspec.structs.astuple


@cython.cfunc
def _resting(
    order_id: object,
    account: str,
    client_order_id: str,
    side: object,
    price: object,
    quantity: cython.longlong,
    post_only: cython.bint,
    self_trade_prevention: object,
) -> RestingOrder:
    """Make a `RestingOrder` without the argument parsing of a call to its class."""
    order: RestingOrder = RestingOrder.__new__(RestingOrder)
    order.order_id = order_id
    order.account = account
    order.client_order_id = client_order_id
    order.side = side
    order.price = price
    order.quantity = quantity
    order.post_only = post_only
    order.self_trade_prevention = self_trade_prevention
    return order


@cython.cfunc
def _next_best(heap: list[int], levels: dict[int, _Level], sign: int) -> object:
    """Return the best live price of a side (``sign`` -1: bids, kept negated), or None."""
    while heap and sign * heap[0] not in levels:
        heappop(heap)
    if len(heap) > 2 * len(levels) + 64:
        # stale prices of levels that came and went: rebuild so the heap stays small
        heap[:] = [sign * price for price in levels]
        heapify(heap)
    return sign * heap[0] if heap else None


@cython.final
@cython.cclass
class OrderBook:
    """Match and rest orders for one instrument.

    The engine validates the symbol, assigns order ids and sequence numbers, and finds the
    order a cancel or replace names; the book applies the rules of one market. Each command
    method appends its events to ``out`` and returns the next free sequence number.
    """

    instrument = cython.declare(object, visibility="public")
    gate = cython.declare(object, visibility="public")
    order_ids = cython.declare(OrderIds, visibility="public")
    symbol = cython.declare(str, visibility="public")
    bids = cython.declare(dict, visibility="public")
    asks = cython.declare(dict, visibility="public")
    orders = cython.declare(dict, visibility="public")
    """Order id -> its live `RestingOrder`."""
    best_bid = cython.declare(object, visibility="public")
    best_ask = cython.declare(object, visibility="public")
    cython.declare(
        _tick=object, _lot=object, _low=object, _high=object,
        _bid_heap=list, _ask_heap=list, _bid_start=dict, _ask_start=dict, _stopped=cython.bint,
    )

    def __init__(
        self,
        instrument: Instrument,
        gate: PreTradeGate | None = None,
        order_ids: OrderIds | None = None,
    ) -> None:
        self.instrument = instrument
        self.gate = gate
        self.order_ids = order_ids if order_ids is not None else OrderIds()
        self.symbol = instrument.symbol
        # the fast path's price and quantity checks, precomputed
        self._tick = instrument.tick_size
        self._lot = instrument.lot_size
        self._low = max(1, instrument.min_price or 1)
        self._high = min(INT64_MAX, instrument.max_price or INT64_MAX)
        self.bids = {}  # price -> _Level
        self.asks = {}
        self.orders = {}
        self.best_bid = None  # the best price, or None while the side is empty
        self.best_ask = None
        self._bid_heap: list[int] = []  # negated prices
        self._ask_heap: list[int] = []
        # price -> (total, count) at the first touch in the current batch
        self._bid_start: dict[int, tuple[int, int]] = {}
        self._ask_start: dict[int, tuple[int, int]] = {}
        self._stopped = False
        """Set by `_match` when self-trade prevention cancelled the aggressor."""

    # ---------------------------------------------------------------- commands

    @cython.ccall
    @cython.locals(level=_Level, ids=OrderIds, resting=RestingOrder, buying=cython.bint)
    def submit(self, order: NewOrder, seq: cython.longlong, out: list[Event]) -> cython.longlong:
        """Apply a new order: validate, match, then rest or cancel the remainder.

        An accepted order takes the next id from ``order_ids``.
        """
        # every field in one C call: 3x cheaper than an attribute read each, compiled (the
        # audit origin is the journal's, not the book's)
        (
            account, client_order_id, _, side, quantity, price, order_type, tif, post_only,
            stp, ts_ns, _,
        ) = _fields(order)
        # Fast path: a well-formed GTC or IOC limit order that is not post-only. Identity
        # tests are exact for decoded messages; anything else takes the general path.
        if not (
            order_type is LIMIT
            and (tif is GTC or tif is IOC)
            and not post_only
            and (side is BUY or side is SELL)
            and 0 < quantity <= INT64_MAX
            and self._low <= price <= self._high
            and not quantity % self._lot
            and not price % self._tick
        ):
            return self._submit_general(order, seq, out)
        if self.gate is not None:
            problem = self.gate.check(order)
            if problem is not None:
                out.append(self._reject_new(order, problem[0], problem[1], seq))
                return seq + 1
        buying = side is BUY
        own = self.bids if buying else self.asks
        level = own.get(price)
        # written so that no int64 sum can overflow (the level total is a C int64 compiled)
        if level is not None and tif is GTC and quantity > INT64_MAX - level.total:
            return self._submit_general(order, seq, out)
        ids = self.order_ids
        order_id = ids.next
        ids.next = order_id + 1
        # positional on the hot path (see protocols.messages): the fields in their order
        out.append(
            OrderAccepted(
                seq,  # seq
                ts_ns,  # ts_ns
                self.symbol,  # symbol
                order_id,  # order_id
                account,  # account
                client_order_id,  # client_order_id
                side,  # side
                LIMIT,  # order_type
                tif,  # time_in_force
                price,  # price
                quantity,  # quantity
            )
        )
        seq += 1
        resting = _resting(order_id, account, client_order_id, side, price, quantity, False, stp)
        best = self.best_ask if buying else self.best_bid
        if best is not None and (price >= best if buying else price <= best):
            seq = self._match(resting, price, ts_ns, seq, out)
            if self._stopped or not resting.quantity:
                return seq
            if tif is IOC:
                out.append(self._cancelled(resting, _IOC_REMAINDER, ts_ns, seq, ""))
                return seq + 1
        elif tif is IOC:
            out.append(self._cancelled(resting, _IOC_REMAINDER, ts_ns, seq, ""))
            return seq + 1
        # rest, inlined (see _rest): the matching above never touches this side's levels
        starts = self._bid_start if buying else self._ask_start
        if level is None:
            if price not in starts:
                starts[price] = (0, 0)
            level = _Level()
            own[price] = level
            if buying:
                heappush(self._bid_heap, -price)
                if self.best_bid is None or price > self.best_bid:
                    self.best_bid = price
            else:
                heappush(self._ask_heap, price)
                if self.best_ask is None or price < self.best_ask:
                    self.best_ask = price
        elif price not in starts:
            starts[price] = (level.total, level.count)
        level.queue.append(resting)
        level.total += resting.quantity
        level.count += 1
        self.orders[order_id] = resting
        return seq

    @cython.cfunc
    @cython.locals(level=_Level, aggressor=RestingOrder)
    def _submit_general(
        self, order: NewOrder, seq: cython.longlong, out: list[Event]
    ) -> cython.longlong:
        """Apply any new order, checking every field (the fast path's fallback)."""
        quantity = order.quantity
        side = order.side
        price = order.price
        is_market = order.order_type == MARKET
        problem = self._check_new(order, is_market)
        if problem is None and self.gate is not None:
            problem = self.gate.check(order)
        if problem is not None:
            out.append(self._reject_new(order, problem[0], problem[1], seq))
            return seq + 1

        tif = order.time_in_force
        opposite = self.asks if side == BUY else self.bids
        best_opposite = self.best_ask if side == BUY else self.best_bid
        limit = None if is_market else price
        if best_opposite is not None and limit is not None:
            crosses = limit >= best_opposite if side == BUY else limit <= best_opposite
        else:
            crosses = best_opposite is not None
        if is_market and not opposite:
            out.append(
                self._reject_new(
                    order,
                    RejectCode.NO_LIQUIDITY,
                    f"market order: no {'sell' if side == BUY else 'buy'} orders in {self.symbol}",
                    seq,
                )
            )
            return seq + 1
        if order.post_only and crosses:
            out.append(
                self._reject_new(
                    order,
                    RejectCode.POST_ONLY_WOULD_TAKE,
                    f"post-only order at {price} would trade against the resting "
                    f"{'offer' if side == BUY else 'bid'} at {best_opposite}",
                    seq,
                )
            )
            return seq + 1
        if tif == FOK and not self._fok_fillable(order, limit):
            out.append(
                self._reject_new(
                    order,
                    RejectCode.FOK_NOT_FILLABLE,
                    f"fill-or-kill order for {quantity} cannot be filled completely now",
                    seq,
                )
            )
            return seq + 1
        if not is_market and tif == GTC:
            level = (self.bids if side == BUY else self.asks).get(price)
            if level is not None and quantity > INT64_MAX - level.total:
                out.append(
                    self._reject_new(
                        order,
                        RejectCode.LEVEL_QUANTITY_OVERFLOW,
                        f"resting total at price {price} would exceed {INT64_MAX}",
                        seq,
                    )
                )
                return seq + 1

        ts_ns = order.ts_ns
        order_id = self.order_ids.next
        self.order_ids.next = order_id + 1
        out.append(
            OrderAccepted(
                seq=seq,
                ts_ns=ts_ns,
                symbol=self.symbol,
                order_id=order_id,
                account=order.account,
                client_order_id=order.client_order_id,
                side=side,
                order_type=order.order_type,
                time_in_force=tif,
                price=price,
                quantity=quantity,
            )
        )
        seq += 1
        aggressor = _resting(
            order_id,
            order.account,
            order.client_order_id,
            side,
            price,
            quantity,
            order.post_only,
            order.self_trade_prevention,
        )
        if crosses:
            seq = self._match(aggressor, limit, ts_ns, seq, out)
            if self._stopped or aggressor.quantity == 0:
                return seq
        if is_market or tif != GTC:
            reason = _MARKET_REMAINDER if is_market else _IOC_REMAINDER
            out.append(self._cancelled(aggressor, reason, ts_ns, seq, ""))
            return seq + 1
        self._rest(aggressor)
        return seq

    @cython.ccall
    @cython.locals(resting=RestingOrder)
    def cancel(
        self, request: CancelOrder, seq: cython.longlong, out: list[Event]
    ) -> cython.longlong:
        """Cancel a resting order of the requester's account that the engine found here.

        The engine answers for orders that are missing or another account's, alike.
        """
        resting = self.orders[request.order_id]
        out.append(self._cancelled(resting, _USER, request.ts_ns, seq, request.client_order_id))
        self._remove(resting)
        return seq + 1

    @cython.ccall
    @cython.locals(
        resting=RestingOrder, moved=RestingOrder, level=_Level, already=cython.longlong,
        old_quantity=cython.longlong,
    )
    def replace(
        self, request: ReplaceOrder, seq: cython.longlong, out: list[Event]
    ) -> cython.longlong:
        """Change a resting order of the requester's account that the engine found here."""
        resting = self.orders[request.order_id]
        side = resting.side
        price = request.price
        quantity = request.quantity
        problem = self._check_price(price) or self._check_quantity(quantity)
        if problem is None and self.gate is not None:
            problem = self.gate.check(request)
        if problem is None and resting.post_only and price != resting.price:
            best = self.best_ask if side == BUY else self.best_bid
            if best is not None and (price >= best if side == BUY else price <= best):
                problem = (
                    RejectCode.POST_ONLY_WOULD_TAKE,
                    f"post-only order moved to {price} would trade against {best}",
                )
        if problem is None:
            level = (self.bids if side == BUY else self.asks).get(price)
            already = resting.quantity if price == resting.price else 0
            if level is not None and quantity > INT64_MAX - (level.total - already):
                problem = (
                    RejectCode.LEVEL_QUANTITY_OVERFLOW,
                    f"resting total at price {price} would exceed {INT64_MAX}",
                )
        if problem is not None:
            out.append(
                OrderRejected(
                    seq=seq,
                    ts_ns=request.ts_ns,
                    symbol=self.symbol,
                    account=request.account,
                    client_order_id=request.client_order_id,
                    request=RequestKind.REPLACE,
                    code=problem[0],
                    text=problem[1],
                    order_id=request.order_id,
                )
            )
            return seq + 1

        ts_ns = request.ts_ns
        old_price = resting.price
        old_quantity = resting.quantity
        keep_priority = price == old_price and quantity <= old_quantity
        out.append(
            OrderReplaced(
                seq=seq,
                ts_ns=ts_ns,
                symbol=self.symbol,
                order_id=resting.order_id,
                account=resting.account,
                client_order_id=resting.client_order_id,
                request_id=request.client_order_id,
                side=side,
                old_price=old_price,
                old_quantity=old_quantity,
                price=price,
                quantity=quantity,
                priority_kept=keep_priority,
            )
        )
        seq += 1
        if keep_priority:
            if quantity != old_quantity:
                level = (self.bids if side == BUY else self.asks)[price]
                self._touch(side, price, level)
                level.total -= old_quantity - quantity
                resting.quantity = quantity
            return seq

        self._remove(resting)
        moved = _resting(
            resting.order_id,
            resting.account,
            resting.client_order_id,
            side,
            price,
            quantity,
            resting.post_only,
            resting.self_trade_prevention,
        )
        best = self.best_ask if side == BUY else self.best_bid
        if best is not None and (price >= best if side == BUY else price <= best):
            seq = self._match(moved, price, ts_ns, seq, out)
            if self._stopped or moved.quantity == 0:
                return seq
        self._rest(moved)
        return seq

    def cancel_all(
        self, account: str, reason: CancelReason, ts_ns: int, request_id: str, seq: int,
        out: list[Event],
    ) -> int:
        """Cancel every resting order of ``account`` (kill switch, mass cancel), oldest first."""
        mine = sorted(
            (resting for resting in self.orders.values() if resting.account == account),
            key=lambda resting: resting.order_id,
        )
        for resting in mine:
            out.append(self._cancelled(resting, reason, ts_ns, seq, request_id))
            self._remove(resting)
            seq += 1
        return seq

    @property
    def dirty(self) -> bool:
        """Tell whether levels were touched since the last `flush_level_changes`."""
        return bool(self._bid_start or self._ask_start)

    @cython.ccall
    @cython.locals(level=_Level)
    def flush_level_changes(
        self, ts_ns: int, seq: cython.longlong, out: list[Event]
    ) -> cython.longlong:
        """Emit a `LevelChanged` for every level that differs from the start of the batch."""
        for side, levels, start in (
            (BUY, self.bids, self._bid_start),
            (SELL, self.asks, self._ask_start),
        ):
            if not start:
                continue
            for price in sorted(start) if len(start) > 1 else start:
                level = levels.get(price)
                if level is not None:
                    now = (level.total, level.count)
                else:
                    now = (0, 0)
                if now != start[price]:
                    out.append(LevelChanged(seq, ts_ns, self.symbol, side, price, now[0], now[1]))
                    seq += 1
            start.clear()
        return seq

    # ---------------------------------------------------------------- matching

    @cython.cfunc
    @cython.locals(
        level=_Level, maker=RestingOrder, buying=cython.bint, remaining=cython.longlong,
        maker_quantity=cython.longlong, fill=cython.longlong, levels=dict, starts=dict,
        orders=dict,
    )
    def _match(
        self,
        aggressor: RestingOrder,
        limit: int | None,
        ts_ns: int,
        seq: cython.longlong,
        out: list[Event],
    ) -> cython.longlong:
        """Trade ``aggressor`` against the opposite side while prices cross.

        Return the next sequence number; set ``_stopped`` when self-trade prevention
        cancelled the aggressor (so it must not rest).
        """
        self._stopped = False
        side = aggressor.side
        buying = side is BUY or (side is not SELL and side == BUY)  # identity first: cheap
        levels = self.asks if buying else self.bids
        starts = self._ask_start if buying else self._bid_start
        orders = self.orders
        symbol = self.symbol
        account = aggressor.account
        stp = aggressor.self_trade_prevention
        remaining = aggressor.quantity
        append = out.append
        while remaining:
            best = self.best_ask if buying else self.best_bid
            if best is None or (limit is not None and (best > limit if buying else best < limit)):
                break
            level = levels[best]
            if best not in starts:
                starts[best] = (level.total, level.count)
            queue = level.queue
            while remaining and queue:
                maker = queue[0]
                maker_quantity = maker.quantity
                if not maker_quantity:
                    queue.popleft()
                    continue
                if stp and maker.account == account:
                    if stp in (_STP_CANCEL_RESTING, _STP_CANCEL_BOTH):
                        queue.popleft()
                        del orders[maker.order_id]
                        level.total -= maker_quantity
                        level.count -= 1
                        append(self._cancelled(maker, _SELF_TRADE, ts_ns, seq, ""))
                        maker.quantity = 0
                        seq += 1
                    if stp != _STP_CANCEL_RESTING:
                        aggressor.quantity = remaining
                        append(self._cancelled(aggressor, _SELF_TRADE, ts_ns, seq, ""))
                        aggressor.quantity = 0
                        if not level.count:
                            self._drop_level(not buying, best)
                        self._stopped = True
                        return seq + 1
                    continue
                if remaining >= maker_quantity:
                    fill = maker_quantity
                    queue.popleft()
                    del orders[maker.order_id]
                    level.count -= 1
                    maker.quantity = 0
                else:
                    fill = remaining
                    maker.quantity = maker_quantity - fill
                level.total -= fill
                remaining -= fill
                append(
                    Trade(
                        seq,  # seq
                        ts_ns,  # ts_ns
                        symbol,  # symbol
                        best,  # price
                        fill,  # quantity
                        side,  # aggressor_side
                        maker.order_id,  # maker_order_id
                        maker.account,  # maker_account
                        maker.client_order_id,  # maker_client_order_id
                        maker_quantity - fill,  # maker_leaves
                        aggressor.order_id,  # taker_order_id
                        account,  # taker_account
                        aggressor.client_order_id,  # taker_client_order_id
                        remaining,  # taker_leaves
                    )
                )
                seq += 1
            if not level.count:
                self._drop_level(not buying, best)
        aggressor.quantity = remaining
        return seq

    def _fok_fillable(self, order: NewOrder, limit: int | None) -> bool:
        """Tell whether a fill-or-kill order would fill completely, self-trade rules included."""
        buying = order.side == BUY
        levels = self.asks if buying else self.bids
        stp = order.self_trade_prevention
        needed = order.quantity
        for price in sorted(levels, reverse=not buying):
            if limit is not None and (price > limit if buying else price < limit):
                return False
            for resting in levels[price].queue:
                if not resting.quantity:
                    continue
                if stp and resting.account == order.account:
                    if stp == _STP_CANCEL_RESTING:
                        continue
                    return False
                needed -= resting.quantity
                if needed <= 0:
                    return True
        return False

    # ---------------------------------------------------------------- book upkeep

    @cython.cfunc
    @cython.locals(level=_Level, levels=dict, starts=dict, buying=cython.bint)
    def _rest(self, order: RestingOrder) -> None:
        price = order.price
        buying = order.side == BUY
        if buying:
            levels, starts = self.bids, self._bid_start
        else:
            levels, starts = self.asks, self._ask_start
        level = levels.get(price)
        if level is None:
            if price not in starts:
                starts[price] = (0, 0)
            level = _Level()
            levels[price] = level
            if buying:
                heappush(self._bid_heap, -price)
                if self.best_bid is None or price > self.best_bid:
                    self.best_bid = price
            else:
                heappush(self._ask_heap, price)
                if self.best_ask is None or price < self.best_ask:
                    self.best_ask = price
        elif price not in starts:
            starts[price] = (level.total, level.count)
        level.queue.append(order)
        level.total += order.quantity
        level.count += 1
        self.orders[order.order_id] = order

    @cython.cfunc
    @cython.locals(level=_Level, bid=cython.bint, starts=dict, dead=cython.longlong,
                   entry=RestingOrder)
    def _remove(self, order: RestingOrder) -> None:
        """Take a resting order out of the book, leaving a dead entry in its queue."""
        del self.orders[order.order_id]
        price = order.price
        bid = order.side == BUY
        level = (self.bids if bid else self.asks)[price]
        starts = self._bid_start if bid else self._ask_start
        if price not in starts:
            starts[price] = (level.total, level.count)
        level.total -= order.quantity
        level.count -= 1
        order.quantity = 0
        if not level.count:
            self._drop_level(bid, price)
        else:
            dead = len(level.queue) - level.count
            if dead > _COMPACT_MIN_DEAD and dead > level.count:
                live: deque[RestingOrder] = deque()
                for entry in level.queue:
                    if entry.quantity:
                        live.append(entry)
                level.queue = live

    @cython.cfunc
    def _touch(self, side: Side, price: int, level: _Level) -> None:
        starts = self._bid_start if side == BUY else self._ask_start
        if price not in starts:
            starts[price] = (level.total, level.count)

    @cython.cfunc
    def _drop_level(self, bid: cython.bint, price: int) -> None:
        """Remove an empty level and move the cached best price if it was the best."""
        if bid:
            del self.bids[price]
            if price == self.best_bid:
                self.best_bid = _next_best(self._bid_heap, self.bids, -1)
        else:
            del self.asks[price]
            if price == self.best_ask:
                self.best_ask = _next_best(self._ask_heap, self.asks, 1)

    # ---------------------------------------------------------------- validation and events

    def _check_new(self, order: NewOrder, is_market: bool) -> tuple[RejectCode, str] | None:
        if order.side != BUY and order.side != SELL:
            return RejectCode.INVALID_SIDE, f"side {order.side!r} is neither BUY nor SELL"
        if order.order_type != LIMIT and not is_market:
            return RejectCode.INVALID_ORDER_TYPE, f"order type {order.order_type!r} is unknown"
        tif = order.time_in_force
        if tif != GTC and tif != IOC and tif != FOK:
            return RejectCode.INVALID_TIME_IN_FORCE, f"time in force {tif!r} is unknown"
        problem = self._check_quantity(order.quantity)
        if problem is not None:
            return problem
        if is_market:
            if order.post_only:
                return RejectCode.INVALID_ORDER_TYPE, "a market order cannot be post-only"
            if order.price != 0:
                return RejectCode.INVALID_PRICE, "a market order carries price 0"
            return None
        if order.post_only and tif != GTC:
            return (
                RejectCode.INVALID_TIME_IN_FORCE,
                "a post-only order must be GTC: it only ever rests",
            )
        return self._check_price(order.price)

    def _check_quantity(self, quantity: int) -> tuple[RejectCode, str] | None:
        lot = self.instrument.lot_size
        if quantity <= 0 or quantity > INT64_MAX or quantity % lot:
            return (
                RejectCode.INVALID_QUANTITY,
                f"quantity {quantity} must be a positive multiple of the lot size {lot} "
                f"and at most {INT64_MAX}",
            )
        return None

    def _check_price(self, price: int) -> tuple[RejectCode, str] | None:
        instrument = self.instrument
        tick = instrument.tick_size
        if price <= 0 or price > INT64_MAX or price % tick:
            return (
                RejectCode.INVALID_PRICE,
                f"price {price} must be a positive multiple of the tick size {tick} "
                f"and at most {INT64_MAX}",
            )
        low, high = instrument.min_price, instrument.max_price
        if (low is not None and price < low) or (high is not None and price > high):
            return (
                RejectCode.PRICE_OUT_OF_BAND,
                f"price {price} is outside the band [{low}, {high}] of {self.symbol}",
            )
        return None

    @cython.cfunc
    def _reject_new(
        self, order: NewOrder, code: RejectCode, text: str, seq: cython.longlong
    ) -> OrderRejected:
        return OrderRejected(
            seq=seq,
            ts_ns=order.ts_ns,
            symbol=self.symbol,
            account=order.account,
            client_order_id=order.client_order_id,
            request=_REQUEST_NEW,
            code=code,
            text=text,
        )

    @cython.cfunc
    def _cancelled(
        self,
        order: RestingOrder,
        reason: CancelReason,
        ts_ns: int,
        seq: cython.longlong,
        request_id: str,
    ) -> OrderCancelled:
        return OrderCancelled(
            seq,  # seq
            ts_ns,  # ts_ns
            self.symbol,  # symbol
            order.order_id,  # order_id
            order.account,  # account
            order.client_order_id,  # client_order_id
            order.side,  # side
            order.price,  # price
            order.quantity,  # quantity
            reason,  # reason
            request_id,  # request_id
        )

    # ---------------------------------------------------------------- queries

    def l1(self) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        """Return ``((bid_price, bid_quantity) | None, (ask_price, ask_quantity) | None)``."""
        bid = (self.best_bid, self.bids[self.best_bid].total) if self.best_bid is not None else None
        ask = (self.best_ask, self.asks[self.best_ask].total) if self.best_ask is not None else None
        return bid, ask

    def l2(self, depth: int) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """Return up to ``depth`` levels a side as ``(price, quantity, count)``, best first."""
        bids = [
            (price, self.bids[price].total, self.bids[price].count)
            for price in sorted(self.bids, reverse=True)[:depth]
        ]
        asks = [
            (price, self.asks[price].total, self.asks[price].count)
            for price in sorted(self.asks)[:depth]
        ]
        return bids, asks

    def live_orders(self, side: Side) -> list[RestingOrder]:
        """Return the live orders of one side, best price first, then arrival order."""
        levels = self.bids if side == BUY else self.asks
        return [
            order
            for price in sorted(levels, reverse=side == BUY)
            for order in levels[price].queue
            if order.quantity
        ]

    def state(self) -> BookState:
        """Return the canonical state: equal books give equal states, however they got there."""
        return BookState(
            symbol=self.symbol,
            bids=[order.to_state() for order in self.live_orders(BUY)],
            asks=[order.to_state() for order in self.live_orders(SELL)],
        )

    @classmethod
    def from_state(
        cls,
        instrument: Instrument,
        state: BookState,
        gate: PreTradeGate | None = None,
        order_ids: OrderIds | None = None,
    ) -> OrderBook:
        """Build a book holding exactly ``state`` (a snapshot)."""
        book: OrderBook = cls(instrument, gate, order_ids)
        for order in (*state.bids, *state.asks):
            book._rest(RestingOrder(*msgspec.structs.astuple(order)))
        book._bid_start.clear()
        book._ask_start.clear()
        return book

    def check_invariants(self) -> None:
        """Raise `AssertionError` if any internal structure disagrees with another."""
        seen: set[int] = set()
        for side, levels, heap, sign, best in (
            (BUY, self.bids, self._bid_heap, -1, self.best_bid),
            (SELL, self.asks, self._ask_heap, 1, self.best_ask),
        ):
            expected_best = (max(levels) if side == BUY else min(levels)) if levels else None
            assert best == expected_best, f"{side.name} best {best} != {expected_best}"
            heap_prices = {sign * price for price in heap}
            for price, level in levels.items():
                assert price in heap_prices, f"{side.name} level {price} missing from heap"
                live = [order for order in level.queue if order.quantity]
                assert live, f"{side.name} level {price} is empty"
                assert level.count == len(live), f"{side.name} {price}: count {level.count}"
                assert level.total == sum(o.quantity for o in live), f"{side.name} {price}: total"
                assert level.total <= INT64_MAX, f"{side.name} {price}: total overflows int64"
                for order in live:
                    assert order.side == side and order.price == price, f"misplaced {order}"
                    assert order.price % self.instrument.tick_size == 0, f"off tick {order}"
                    assert self.orders.get(order.order_id) is order, f"unindexed {order}"
                    assert order.order_id not in seen, f"order {order.order_id} rests twice"
                    seen.add(order.order_id)
        assert seen == set(self.orders), "order index holds orders that are not in the book"
        if self.best_bid is not None and self.best_ask is not None:
            assert self.best_bid < self.best_ask, (
                f"crossed book: bid {self.best_bid} >= ask {self.best_ask}"
            )
