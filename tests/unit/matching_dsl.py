"""A compact way to write matching scenarios as readable tables."""

from __future__ import annotations

import itertools
from typing import Any

from actors.core.engine import MatchingEngine
from protocols.messages import (
    CancelOrder,
    Event,
    Instrument,
    LevelChanged,
    NewOrder,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderReplaced,
    OrderType,
    ReplaceOrder,
    SelfTradePrevention,
    Side,
    TimeInForce,
    Trade,
)

SYMBOL = "XYZ"
INSTRUMENT = Instrument(symbol=SYMBOL, tick_size=5, lot_size=10, price_scale=2)
_ids = itertools.count(1)


def new_engine(*instruments: Instrument) -> MatchingEngine:
    return MatchingEngine(instruments or (INSTRUMENT,))


def order(
    side: Side,
    quantity: int,
    price: int = 0,
    *,
    account: str = "A",
    tif: TimeInForce = TimeInForce.GTC,
    market: bool = False,
    post_only: bool = False,
    stp: SelfTradePrevention = SelfTradePrevention.NONE,
    symbol: str = SYMBOL,
    ts_ns: int = 0,
) -> NewOrder:
    return NewOrder(
        account=account,
        client_order_id=f"c{next(_ids)}",
        symbol=symbol,
        side=side,
        price=price,
        quantity=quantity,
        order_type=OrderType.MARKET if market else OrderType.LIMIT,
        time_in_force=tif,
        post_only=post_only,
        self_trade_prevention=stp,
        ts_ns=ts_ns,
    )


def buy(quantity: int, price: int = 0, **options: Any) -> NewOrder:
    return order(Side.BUY, quantity, price, **options)


def sell(quantity: int, price: int = 0, **options: Any) -> NewOrder:
    return order(Side.SELL, quantity, price, **options)


def cancel(order_id: int, *, account: str = "A", symbol: str = SYMBOL) -> CancelOrder:
    return CancelOrder(
        account=account, client_order_id=f"x{next(_ids)}", symbol=symbol, order_id=order_id
    )


def replace(
    order_id: int, price: int, quantity: int, *, account: str = "A", symbol: str = SYMBOL
) -> ReplaceOrder:
    return ReplaceOrder(
        account=account,
        client_order_id=f"r{next(_ids)}",
        symbol=symbol,
        order_id=order_id,
        price=price,
        quantity=quantity,
    )


def brief(event: Event) -> tuple[Any, ...]:
    """Reduce an event to the fields a scenario table states."""
    match event:
        case OrderAccepted():
            return ("accepted", event.order_id)
        case Trade():
            return (
                "trade", event.price, event.quantity, event.maker_order_id, event.taker_order_id
            )
        case OrderCancelled():
            return ("cancelled", event.order_id, event.quantity, event.reason.name)
        case OrderRejected():
            return ("rejected", event.code.name)
        case OrderReplaced():
            return ("replaced", event.order_id, event.price, event.quantity, event.priority_kept)
        case LevelChanged():
            return ("level", event.side.name, event.price, event.quantity, event.order_count)
    raise AssertionError(f"unexpected event {event!r}")


def run(engine: MatchingEngine, *commands: Any, levels: bool = False) -> list[tuple[Any, ...]]:
    """Apply ``commands`` as one batch; return the brief events (level changes if asked)."""
    events = engine.apply(list(commands))
    engine.check_invariants()
    return [brief(event) for event in events if levels or type(event) is not LevelChanged]


def book(engine: MatchingEngine, symbol: str = SYMBOL) -> dict[str, list[tuple[int, int, int]]]:
    """Live orders per side in priority order as (order_id, price, quantity)."""
    orders = engine.books[symbol]
    return {
        side.name: [(o.order_id, o.price, o.quantity) for o in orders.live_orders(side)]
        for side in (Side.BUY, Side.SELL)
    }
