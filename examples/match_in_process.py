"""Match a few orders with the pure engine, no Ray: the core a shard actor wraps.

    python examples/match_in_process.py
"""

from __future__ import annotations

from actors.core.engine import MatchingEngine
from protocols.messages import Instrument, NewOrder, OrderType, Side, Trade

engine = MatchingEngine([Instrument(symbol="ACME", tick_size=5, lot_size=10, price_scale=2)])

events = engine.apply(
    [
        NewOrder(account="maker", client_order_id="m1", symbol="ACME", side=Side.SELL,
                 price=10_050, quantity=100),
        NewOrder(account="maker", client_order_id="m2", symbol="ACME", side=Side.SELL,
                 price=10_100, quantity=100),
        NewOrder(account="taker", client_order_id="t1", symbol="ACME", side=Side.BUY,
                 quantity=150, order_type=OrderType.MARKET),
    ]
)
for event in events:
    print(event)

trades = [event for event in events if isinstance(event, Trade)]
print(f"\n{len(trades)} trades, best bid/ask now {engine.books['ACME'].l1()}")
