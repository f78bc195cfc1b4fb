"""Property tests: random flows through the fast engine and the reference engine.

Prices sit in a narrow band so orders cross often; order ids in cancels and replaces are
drawn from a small range so they hit live, closed and unknown orders alike; a few commands
are malformed on purpose.
"""

from __future__ import annotations

from collections import defaultdict

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core.engine import MatchingEngine
from protocols.messages import (
    CancelOrder,
    Command,
    Event,
    Instrument,
    MassCancel,
    NewOrder,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderReplaced,
    OrderType,
    ReplaceOrder,
    SelfTradePrevention,
    SetKillSwitch,
    Side,
    TimeInForce,
    Trade,
    decode_commands,
    encode,
)
from tests.reference_book import ReferenceEngine

INSTRUMENTS = [
    Instrument(symbol="AAA", tick_size=5, lot_size=10),
    Instrument(symbol="BBB", tick_size=1, lot_size=1, min_price=95, max_price=105),
]
ACCOUNTS = ["A", "B", "C"]


_TICKS = [100, 99, 101, 98, 102, 97, 103, 96, 104]
_LOTS = [1, 2, 3, 1, 4, 2, 5, 1, 6, 3, 2, 1]
_STP_MODES = [SelfTradePrevention.NONE] * 5 + [
    SelfTradePrevention.CANCEL_RESTING,
    SelfTradePrevention.CANCEL_AGGRESSING,
    SelfTradePrevention.CANCEL_BOTH,
]


def command_from_bytes(data: bytes) -> Command:
    """Turn 10 random bytes into a command. Hypothesis shrinks bytes towards zero, and zero
    bytes decode to the plainest command: a GTC limit buy of one lot at 100 ticks."""
    kind, symbol_byte, account, price_byte, quantity_byte, side, shape, post, stp, target = data
    symbol = "AAA" if symbol_byte % 16 < 8 else ("BBB" if symbol_byte % 16 < 15 else "NOPE")
    tick, lot = (1, 1) if symbol == "BBB" else (5, 10)
    price_index = price_byte % 16
    if price_index < len(_TICKS):
        price = _TICKS[price_index] * tick
    else:
        price = [0, -tick, 100 * tick + 1, 93, 107, 94, 106][price_index - len(_TICKS)]
    quantity_index = quantity_byte % 16
    if quantity_index < len(_LOTS):
        quantity = _LOTS[quantity_index] * lot
    else:
        quantity = [0, -lot, 15, 2**63 - 1][quantity_index - len(_LOTS)]
    fields = {
        "account": ACCOUNTS[account % 3],
        "client_order_id": f"c{data.hex()}",
        "symbol": symbol,
        "ts_ns": kind * 1000 + target,
    }
    if kind % 32 == 31:
        return MassCancel(account=fields["account"], client_order_id=fields["client_order_id"],  # type: ignore[arg-type]
                          symbol=symbol if side % 2 else "", ts_ns=fields["ts_ns"])  # type: ignore[arg-type]
    if kind % 32 == 30:
        return SetKillSwitch(account=fields["account"], engaged=side % 2 == 0,  # type: ignore[arg-type]
                             client_order_id=fields["client_order_id"], ts_ns=fields["ts_ns"])  # type: ignore[arg-type]
    if kind % 8 == 5:
        return CancelOrder(order_id=1 + target % 40, **fields)  # type: ignore[arg-type]
    if kind % 8 == 6:
        return ReplaceOrder(order_id=1 + target % 40, price=price, quantity=quantity,
                            **fields)  # type: ignore[arg-type]
    shape %= 16
    market = shape >= 12
    time_in_force = {10: TimeInForce.IOC, 11: TimeInForce.FOK, 12: TimeInForce.IOC,
                     14: TimeInForce.FOK}.get(shape, TimeInForce.GTC)
    return NewOrder(
        side=Side.BUY if side % 2 == 0 else Side.SELL,
        price=price if not market or shape == 15 else 0,
        quantity=quantity,
        order_type=OrderType.MARKET if market else OrderType.LIMIT,
        time_in_force=time_in_force,
        post_only=post % 8 == 7,
        self_trade_prevention=_STP_MODES[stp % 8],
        **fields,  # type: ignore[arg-type]
    )


commands = st.binary(min_size=10, max_size=10).map(command_from_bytes)
flows = st.lists(st.lists(commands, min_size=1, max_size=12), min_size=1, max_size=10)


def comparable(event: Event) -> Event:
    """Reject texts are free prose; everything else must match exactly."""
    if isinstance(event, OrderRejected):
        assert event.text, "a reject must explain itself"
        return msgspec.structs.replace(event, text="")
    return event


def live_orders(engine: MatchingEngine, symbol: str, side: Side) -> list[tuple[int, str, int, int]]:
    return [
        (order.order_id, order.account, order.price, order.quantity)
        for order in engine.books[symbol].live_orders(side)
    ]


@settings(max_examples=2000)
@given(flows)
def test_fast_engine_matches_the_reference_event_for_event(flow: list[list[Command]]) -> None:
    """Both engines give the same events and the same books; invariants hold after every batch."""
    fast, reference = MatchingEngine(INSTRUMENTS), ReferenceEngine(INSTRUMENTS)
    for batch in flow:
        got = [comparable(event) for event in fast.apply(batch)]
        want = [comparable(event) for event in reference.apply(batch)]
        assert got == want
        fast.check_invariants()
    for instrument in INSTRUMENTS:
        for side in Side:
            assert live_orders(fast, instrument.symbol, side) == reference.live(
                instrument.symbol, side
            )


@given(flows)
def test_replaying_the_same_commands_gives_the_same_state(flow: list[list[Command]]) -> None:
    """Determinism: the same batches, replayed (through the wire codec), give equal hashes."""
    first, second = MatchingEngine(INSTRUMENTS), MatchingEngine(INSTRUMENTS)
    events_first = [first.apply(batch) for batch in flow]
    events_second = [second.apply(decode_commands(encode(batch))) for batch in flow]
    assert events_first == events_second
    assert first.state_hash() == second.state_hash()


@given(flows, st.integers(0, 10))
def test_snapshot_then_replay_continues_exactly(flow: list[list[Command]], cut: int) -> None:
    """Restoring a snapshot taken mid-flow and applying the rest gives the same events and hash."""
    cut = min(cut, len(flow))
    live = MatchingEngine(INSTRUMENTS)
    for batch in flow[:cut]:
        live.apply(batch)
    snapshot = msgspec.msgpack.encode(live.state())
    from actors.core.engine import EngineState

    restored = MatchingEngine.from_state(
        INSTRUMENTS, msgspec.msgpack.decode(snapshot, type=EngineState)
    )
    restored.check_invariants()
    for batch in flow[cut:]:
        assert restored.apply(batch) == live.apply(batch)
    assert restored.state_hash() == live.state_hash()


@given(flows)
def test_quantities_are_conserved(flow: list[list[Command]]) -> None:
    """Per order: accepted = traded + cancelled + open, replaces accounted; per trade both
    sides move by the same quantity."""
    engine = MatchingEngine(INSTRUMENTS)
    open_quantity: dict[int, int] = {}
    bought: dict[str, int] = defaultdict(int)
    sold: dict[str, int] = defaultdict(int)
    for batch in flow:
        for event in engine.apply(batch):
            if isinstance(event, OrderAccepted):
                open_quantity[event.order_id] = event.quantity
            elif isinstance(event, Trade):
                for order_id, leaves in (
                    (event.maker_order_id, event.maker_leaves),
                    (event.taker_order_id, event.taker_leaves),
                ):
                    open_quantity[order_id] -= event.quantity
                    assert open_quantity[order_id] == leaves
                assert event.quantity > 0
                buyer_is_taker = event.aggressor_side == Side.BUY
                buyer = event.taker_account if buyer_is_taker else event.maker_account
                seller = event.maker_account if buyer_is_taker else event.taker_account
                bought[buyer] += event.quantity
                sold[seller] += event.quantity
            elif isinstance(event, OrderCancelled):
                assert event.quantity == open_quantity[event.order_id] > 0
                open_quantity[event.order_id] = 0
            elif isinstance(event, OrderReplaced):
                assert event.old_quantity == open_quantity[event.order_id]
                open_quantity[event.order_id] = event.quantity
    assert sum(bought.values()) == sum(sold.values())
    resting = {
        order_id: order.quantity
        for book in engine.books.values()
        for order_id, order in book.orders.items()
    }
    assert {k: v for k, v in open_quantity.items() if v} == resting
