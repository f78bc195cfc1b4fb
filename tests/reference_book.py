"""A small, obviously-correct matching engine to test the fast one against.

Every book is one flat list of live orders; each match sorts the opposite side by price and
priority and walks it. Nothing is cached, nothing is clever. It follows the same rules, ids,
sequence numbers, reject codes and event order as `actors.core.engine.MatchingEngine`; the
reject texts are its own (tests compare everything but the text).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from actors.core.engine import ORDER_ID_SHARD_BITS
from protocols.messages import (
    INT64_MAX,
    CancelOrder,
    CancelReason,
    Command,
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
    SelfTradePrevention,
    SetKillSwitch,
    Side,
    TimeInForce,
    Trade,
)


@dataclasses.dataclass
class RefOrder:
    order_id: int
    account: str
    client_order_id: str
    side: Side
    price: int
    quantity: int
    post_only: bool
    self_trade_prevention: SelfTradePrevention
    priority: int


class ReferenceEngine:
    def __init__(self, instruments: Iterable[Instrument], shard_id: int = 0) -> None:
        self.instruments = {instrument.symbol: instrument for instrument in instruments}
        self.orders: dict[str, list[RefOrder]] = {symbol: [] for symbol in self.instruments}
        self.shard_id = shard_id
        self.next_seq = 1
        self.next_order_id = (shard_id << ORDER_ID_SHARD_BITS) + 1
        self.next_priority = 0
        self.events: list[Event] = []

    # -------------------------------------------------------------- helpers

    def emit(self, event_type: type, **fields: object) -> None:
        self.events.append(event_type(seq=self.next_seq, **fields))
        self.next_seq += 1

    def reject(self, command: Command, code: RejectCode) -> None:
        if isinstance(command, NewOrder):
            kind, order_id = RequestKind.NEW_ORDER, 0
        elif isinstance(command, CancelOrder):
            kind, order_id = RequestKind.CANCEL, command.order_id
        elif isinstance(command, ReplaceOrder):
            kind, order_id = RequestKind.REPLACE, command.order_id
        else:
            kind, order_id = RequestKind.ADMIN, 0
        self.emit(
            OrderRejected,
            ts_ns=command.ts_ns,
            symbol=getattr(command, "symbol", ""),
            account=command.account,
            client_order_id=command.client_order_id,
            request=kind,
            code=code,
            text=code.name,
            order_id=order_id,
        )

    def depth(self, symbol: str) -> dict[tuple[Side, int], tuple[int, int]]:
        levels: dict[tuple[Side, int], tuple[int, int]] = {}
        for order in self.orders[symbol]:
            total, count = levels.get((order.side, order.price), (0, 0))
            levels[(order.side, order.price)] = (total + order.quantity, count + 1)
        return levels

    def queue(self, symbol: str, side: Side) -> list[RefOrder]:
        """Orders of one side, best first: price priority, then time priority."""
        orders = [order for order in self.orders[symbol] if order.side == side]
        if side == Side.BUY:
            return sorted(orders, key=lambda order: (-order.price, order.priority))
        return sorted(orders, key=lambda order: (order.price, order.priority))

    def crosses(self, side: Side, limit: int | None, price: int) -> bool:
        if limit is None:
            return True
        return price <= limit if side == Side.BUY else price >= limit

    def find(self, symbol: str, order_id: int) -> RefOrder | None:
        for order in self.orders[symbol]:
            if order.order_id == order_id:
                return order
        return None

    def cancelled(
        self, order: RefOrder, quantity: int, reason: CancelReason, ts_ns: int, request_id: str,
        symbol: str,
    ) -> None:
        self.emit(
            OrderCancelled,
            ts_ns=ts_ns,
            symbol=symbol,
            order_id=order.order_id,
            account=order.account,
            client_order_id=order.client_order_id,
            side=order.side,
            price=order.price,
            quantity=quantity,
            reason=reason,
            request_id=request_id,
        )

    # -------------------------------------------------------------- rules

    def check_quantity(self, instrument: Instrument, quantity: int) -> bool:
        return 0 < quantity <= INT64_MAX and quantity % instrument.lot_size == 0

    def price_problem(self, instrument: Instrument, price: int) -> RejectCode | None:
        if not (0 < price <= INT64_MAX) or price % instrument.tick_size:
            return RejectCode.INVALID_PRICE
        if instrument.min_price is not None and price < instrument.min_price:
            return RejectCode.PRICE_OUT_OF_BAND
        if instrument.max_price is not None and price > instrument.max_price:
            return RejectCode.PRICE_OUT_OF_BAND
        return None

    def new_order_problem(self, order: NewOrder, instrument: Instrument) -> RejectCode | None:
        market = order.order_type == OrderType.MARKET
        if order.side not in (Side.BUY, Side.SELL):
            return RejectCode.INVALID_SIDE
        if order.order_type not in (OrderType.LIMIT, OrderType.MARKET):
            return RejectCode.INVALID_ORDER_TYPE
        if order.time_in_force not in (TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK):
            return RejectCode.INVALID_TIME_IN_FORCE
        if not self.check_quantity(instrument, order.quantity):
            return RejectCode.INVALID_QUANTITY
        if market:
            if order.post_only:
                return RejectCode.INVALID_ORDER_TYPE
            if order.price != 0:
                return RejectCode.INVALID_PRICE
            return None
        if order.post_only and order.time_in_force != TimeInForce.GTC:
            return RejectCode.INVALID_TIME_IN_FORCE
        return self.price_problem(instrument, order.price)

    def fillable(self, order: NewOrder, limit: int | None) -> bool:
        needed = order.quantity
        stp = order.self_trade_prevention
        opposite = Side.SELL if order.side == Side.BUY else Side.BUY
        for resting in self.queue(order.symbol, opposite):
            if not self.crosses(order.side, limit, resting.price):
                return False
            if stp != SelfTradePrevention.NONE and resting.account == order.account:
                if stp == SelfTradePrevention.CANCEL_RESTING:
                    continue
                return False
            needed -= resting.quantity
            if needed <= 0:
                return True
        return False

    def match(
        self, aggressor: RefOrder, limit: int | None, symbol: str, ts_ns: int
    ) -> bool:
        """Return True if self-trade prevention cancelled the aggressor."""
        opposite = Side.SELL if aggressor.side == Side.BUY else Side.BUY
        stp = aggressor.self_trade_prevention
        for resting in self.queue(symbol, opposite):
            if aggressor.quantity == 0 or not self.crosses(aggressor.side, limit, resting.price):
                break
            if stp != SelfTradePrevention.NONE and resting.account == aggressor.account:
                if stp in (SelfTradePrevention.CANCEL_RESTING, SelfTradePrevention.CANCEL_BOTH):
                    self.orders[symbol].remove(resting)
                    self.cancelled(
                        resting, resting.quantity, CancelReason.SELF_TRADE_PREVENTION, ts_ns, "",
                        symbol,
                    )
                if stp != SelfTradePrevention.CANCEL_RESTING:
                    self.cancelled(
                        aggressor, aggressor.quantity, CancelReason.SELF_TRADE_PREVENTION, ts_ns,
                        "", symbol,
                    )
                    aggressor.quantity = 0
                    return True
                continue
            fill = min(aggressor.quantity, resting.quantity)
            resting.quantity -= fill
            aggressor.quantity -= fill
            if resting.quantity == 0:
                self.orders[symbol].remove(resting)
            self.emit(
                Trade,
                ts_ns=ts_ns,
                symbol=symbol,
                price=resting.price,
                quantity=fill,
                aggressor_side=aggressor.side,
                maker_order_id=resting.order_id,
                maker_account=resting.account,
                maker_client_order_id=resting.client_order_id,
                maker_leaves=resting.quantity,
                taker_order_id=aggressor.order_id,
                taker_account=aggressor.account,
                taker_client_order_id=aggressor.client_order_id,
                taker_leaves=aggressor.quantity,
            )
        return False

    def rest(self, order: RefOrder, symbol: str) -> None:
        self.orders[symbol].append(order)

    def level_total(self, symbol: str, side: Side, price: int) -> int:
        return sum(
            order.quantity
            for order in self.orders[symbol]
            if order.side == side and order.price == price
        )

    def new_order(self, order: NewOrder) -> None:
        instrument = self.instruments[order.symbol]
        problem = self.new_order_problem(order, instrument)
        if problem is not None:
            self.reject(order, problem)
            return
        market = order.order_type == OrderType.MARKET
        limit = None if market else order.price
        opposite = Side.SELL if order.side == Side.BUY else Side.BUY
        best = self.queue(order.symbol, opposite)
        if market and not best:
            self.reject(order, RejectCode.NO_LIQUIDITY)
            return
        if order.post_only and best and self.crosses(order.side, limit, best[0].price):
            self.reject(order, RejectCode.POST_ONLY_WOULD_TAKE)
            return
        if order.time_in_force == TimeInForce.FOK and not self.fillable(order, limit):
            self.reject(order, RejectCode.FOK_NOT_FILLABLE)
            return
        if (
            not market
            and order.time_in_force == TimeInForce.GTC
            and self.level_total(order.symbol, order.side, order.price) > 0
            and self.level_total(order.symbol, order.side, order.price) + order.quantity
            > INT64_MAX
        ):
            self.reject(order, RejectCode.LEVEL_QUANTITY_OVERFLOW)
            return
        order_id = self.next_order_id
        self.next_order_id += 1
        self.emit(
            OrderAccepted,
            ts_ns=order.ts_ns,
            symbol=order.symbol,
            order_id=order_id,
            account=order.account,
            client_order_id=order.client_order_id,
            side=order.side,
            order_type=order.order_type,
            time_in_force=order.time_in_force,
            price=order.price,
            quantity=order.quantity,
        )
        aggressor = RefOrder(
            order_id, order.account, order.client_order_id, order.side, order.price,
            order.quantity, order.post_only, order.self_trade_prevention, self.next_priority,
        )
        self.next_priority += 1
        if self.match(aggressor, limit, order.symbol, order.ts_ns) or aggressor.quantity == 0:
            return
        if market or order.time_in_force != TimeInForce.GTC:
            reason = CancelReason.MARKET_REMAINDER if market else CancelReason.IOC_REMAINDER
            self.cancelled(aggressor, aggressor.quantity, reason, order.ts_ns, "", order.symbol)
            return
        self.rest(aggressor, order.symbol)

    def missing_code(self, order_id: int) -> RejectCode:
        base = self.shard_id << ORDER_ID_SHARD_BITS
        if base < order_id < self.next_order_id:
            return RejectCode.ORDER_NOT_OPEN
        return RejectCode.UNKNOWN_ORDER

    def cancel(self, request: CancelOrder) -> None:
        order = self.find(request.symbol, request.order_id)
        if order is None or order.account != request.account:
            # another account's order is answered as one that is not open (no oracle)
            self.reject(request, self.missing_code(request.order_id))
            return
        self.orders[request.symbol].remove(order)
        self.cancelled(
            order, order.quantity, CancelReason.USER, request.ts_ns, request.client_order_id,
            request.symbol,
        )

    def replace(self, request: ReplaceOrder) -> None:
        symbol = request.symbol
        order = self.find(symbol, request.order_id)
        if order is None or order.account != request.account:
            # another account's order is answered as one that is not open (no oracle)
            self.reject(request, self.missing_code(request.order_id))
            return
        instrument = self.instruments[symbol]
        problem = self.price_problem(instrument, request.price)
        if problem is None and not self.check_quantity(instrument, request.quantity):
            problem = RejectCode.INVALID_QUANTITY
        opposite = Side.SELL if order.side == Side.BUY else Side.BUY
        best = self.queue(symbol, opposite)
        if (
            problem is None
            and order.post_only
            and request.price != order.price
            and best
            and self.crosses(order.side, request.price, best[0].price)
        ):
            problem = RejectCode.POST_ONLY_WOULD_TAKE
        if problem is None:
            others = self.level_total(symbol, order.side, request.price)
            if request.price == order.price:
                others -= order.quantity
            if others + request.quantity > INT64_MAX and (
                others > 0 or request.price == order.price
            ):
                problem = RejectCode.LEVEL_QUANTITY_OVERFLOW
        if problem is not None:
            self.reject(request, problem)
            return
        keep = request.price == order.price and request.quantity <= order.quantity
        self.emit(
            OrderReplaced,
            ts_ns=request.ts_ns,
            symbol=symbol,
            order_id=order.order_id,
            account=order.account,
            client_order_id=order.client_order_id,
            request_id=request.client_order_id,
            side=order.side,
            old_price=order.price,
            old_quantity=order.quantity,
            price=request.price,
            quantity=request.quantity,
            priority_kept=keep,
        )
        order.quantity = request.quantity
        if keep:
            return
        self.orders[symbol].remove(order)
        order.price = request.price
        order.priority = self.next_priority
        self.next_priority += 1
        if self.match(order, order.price, symbol, request.ts_ns) or order.quantity == 0:
            return
        self.rest(order, symbol)

    def cancel_account(self, command: MassCancel | SetKillSwitch) -> None:
        if isinstance(command, SetKillSwitch):
            self.emit(
                KillSwitchSet,
                ts_ns=command.ts_ns,
                account=command.account,
                engaged=command.engaged,
                request_id=command.client_order_id,
            )
            if not command.engaged:
                return
            reason, symbols = CancelReason.KILL_SWITCH, sorted(self.instruments)
        else:
            reason = CancelReason.MASS_CANCEL
            symbols = [command.symbol] if command.symbol else sorted(self.instruments)
        for symbol in symbols:
            mine = [order for order in self.orders[symbol] if order.account == command.account]
            for order in sorted(mine, key=lambda order: order.order_id):
                self.orders[symbol].remove(order)
                self.cancelled(
                    order, order.quantity, reason, command.ts_ns, command.client_order_id, symbol
                )

    # -------------------------------------------------------------- engine API

    def apply(self, commands: Sequence[Command]) -> list[Event]:
        self.events = []
        before = {symbol: self.depth(symbol) for symbol in self.instruments}
        for command in commands:
            if getattr(command, "symbol", "") not in (*self.instruments, ""):
                self.reject(command, RejectCode.UNKNOWN_SYMBOL)
            elif isinstance(command, MassCancel | SetKillSwitch):
                self.cancel_account(command)
            elif isinstance(command, NewOrder):
                self.new_order(command)
            elif isinstance(command, CancelOrder):
                self.cancel(command)
            else:
                self.replace(command)
        if commands:
            ts_ns = commands[-1].ts_ns
            for symbol in sorted(self.instruments):
                after = self.depth(symbol)
                keys = sorted(set(before[symbol]) | set(after), key=lambda key: (key[0], key[1]))
                for side, price in keys:
                    old = before[symbol].get((side, price), (0, 0))
                    new = after.get((side, price), (0, 0))
                    if old != new:
                        self.emit(
                            LevelChanged,
                            ts_ns=ts_ns,
                            symbol=symbol,
                            side=side,
                            price=price,
                            quantity=new[0],
                            order_count=new[1],
                        )
        return self.events

    def live(self, symbol: str, side: Side) -> list[tuple[int, str, int, int]]:
        """Live orders of one side in priority order as (order_id, account, price, quantity)."""
        return [
            (order.order_id, order.account, order.price, order.quantity)
            for order in self.queue(symbol, side)
        ]
