"""Pre-trade risk limits: one rule per golden test, then property tests on random flows.

The golden tests drive `RiskLimits` as the gate of a real `MatchingEngine` wherever the rule
involves the book, and directly where it is pure logic. Each scenario is a table of
``(command, expected outcome)`` rows: ``"accepted"``, ``"replaced"``, ``"cancelled"``, an event
name for admin commands, or the name of the reject code. Order ids count from 1 in arrival
order. XYZ has a reference price of 10,000; ABC has none.

The property tests send random flows of orders, cancels, replaces and admin commands through
the gated engine and hold, after every command: a reject changes nothing; every decision of the
gate equals a naive recomputation (`NaiveRisk`) from the engine's books and the events so far;
the risk state's open orders are the books' live orders; positions conserve and match a
recount from the trades; and replays and snapshots reproduce the same hashes.
"""

from __future__ import annotations

import itertools
from collections import Counter
from fractions import Fraction

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from actors.core.engine import EngineState, MatchingEngine
from actors.core.positions import LedgerState, PositionLedger
from actors.core.risk import TOKEN, OpenOrder, RiskLimits, RiskState
from protocols.messages import (
    INT64_MAX,
    CancelOrder,
    Command,
    Event,
    Instrument,
    KillSwitchSet,
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
    SetKillSwitch,
    SetRiskLimits,
    SetSymbolHalt,
    Side,
    SymbolHaltSet,
    TimeInForce,
    Trade,
    decode_commands,
    encode,
)

XYZ = Instrument(symbol="XYZ", reference_price=10_000, maker_fee_bps=1, taker_fee_bps=3)
ABC = Instrument(symbol="ABC")
INSTRUMENTS = [XYZ, ABC]
SECOND = 1_000_000_000
_ids = itertools.count(1)


# ------------------------------------------------------------------ helpers


def order(
    side: Side,
    quantity: int,
    price: int = 0,
    *,
    account: str = "A",
    symbol: str = "XYZ",
    ts_ns: int = 0,
    tif: TimeInForce = TimeInForce.GTC,
) -> NewOrder:
    """A limit order, or a market order (IOC) when ``price`` is 0."""
    return NewOrder(
        account=account,
        client_order_id=f"c{next(_ids)}",
        symbol=symbol,
        side=side,
        price=price,
        quantity=quantity,
        order_type=OrderType.LIMIT if price else OrderType.MARKET,
        time_in_force=tif if price else TimeInForce.IOC,
        ts_ns=ts_ns,
    )


def buy(quantity: int, price: int = 0, **options: object) -> NewOrder:
    return order(Side.BUY, quantity, price, **options)  # type: ignore[arg-type]


def sell(quantity: int, price: int = 0, **options: object) -> NewOrder:
    return order(Side.SELL, quantity, price, **options)  # type: ignore[arg-type]


def replace(
    order_id: int, price: int, quantity: int, *, account: str = "A", symbol: str = "XYZ",
    ts_ns: int = 0,
) -> ReplaceOrder:
    return ReplaceOrder(
        account=account, client_order_id=f"r{next(_ids)}", symbol=symbol, order_id=order_id,
        price=price, quantity=quantity, ts_ns=ts_ns,
    )


def cancel(order_id: int, *, account: str = "A", symbol: str = "XYZ") -> CancelOrder:
    return CancelOrder(
        account=account, client_order_id=f"x{next(_ids)}", symbol=symbol, order_id=order_id
    )


def set_limits(account: str = "A", symbol: str = "", **fields: int | None) -> SetRiskLimits:
    return SetRiskLimits(account=account, symbol=symbol, limits=RiskLimitsConfig(**fields))


def kill(account: str, engaged: bool) -> SetKillSwitch:
    return SetKillSwitch(account=account, engaged=engaged)


def halt(symbol: str, halted: bool) -> SetSymbolHalt:
    return SetSymbolHalt(symbol=symbol, halted=halted)


def gated(default: RiskLimitsConfig | None = None) -> tuple[MatchingEngine, RiskLimits]:
    risk = RiskLimits(INSTRUMENTS, default)
    return MatchingEngine(INSTRUMENTS, gate=risk), risk


def outcome(events: list[Event]) -> str:
    """Name what a command did by its first event."""
    first = events[0]
    if isinstance(first, OrderRejected):
        return first.code.name
    return {
        OrderAccepted: "accepted",
        OrderReplaced: "replaced",
        OrderCancelled: "cancelled",
        RiskLimitsSet: "limits set",
        KillSwitchSet: "kill switch set",
        SymbolHaltSet: "halt set",
    }[type(first)]


def book_orders(engine: MatchingEngine) -> list[OpenOrder]:
    """The books' live orders in the shape of the risk state's open orders."""
    return sorted(
        (
            OpenOrder(
                order_id=resting.order_id, account=resting.account, symbol=symbol,
                side=resting.side, price=resting.price, quantity=resting.quantity,
            )
            for symbol, book in engine.books.items()
            for resting in book.orders.values()
        ),
        key=lambda open_order: open_order.order_id,
    )


def play(
    engine: MatchingEngine, risk: RiskLimits, table: list[tuple[Command, str]]
) -> list[list[Event]]:
    """Apply each row's command as its own batch and check its outcome and the invariants."""
    results = []
    for row, (command, expected) in enumerate(table, 1):
        events = engine.apply([command])
        got = outcome(events)
        assert got == expected, f"row {row}: {command!r} gave {got}: {events[0]!r}"
        engine.check_invariants()
        risk.check_invariants()
        assert risk.open_orders() == book_orders(engine), f"row {row}: risk lost the book"
        results.append(events)
    return results


def reject_text(engine: MatchingEngine, command: Command, code: RejectCode) -> str:
    """Apply ``command``; return the text of its reject after checking the code."""
    event = engine.apply([command])[0]
    assert isinstance(event, OrderRejected) and event.code == code, event
    return event.text


# ------------------------------------------------------------------ one limit per test


def test_max_order_quantity_admits_exactly_the_limit() -> None:
    """An order or a replace may be as large as max_order_quantity, not one unit larger."""
    engine, risk = gated(RiskLimitsConfig(max_order_quantity=100))
    play(engine, risk, [
        (buy(100, 9_990), "accepted"),
        (buy(101, 9_990), "RISK_MAX_ORDER_QUANTITY"),
        (replace(1, 9_990, 101), "RISK_MAX_ORDER_QUANTITY"),
        (replace(1, 9_990, 100), "replaced"),
        (sell(100, account="B"), "accepted"),  # a market order is held to it as well
        (sell(101, account="B"), "RISK_MAX_ORDER_QUANTITY"),
    ])
    text = reject_text(engine, buy(150, 9_990), RejectCode.RISK_MAX_ORDER_QUANTITY)
    assert text == "quantity 150 is above account A's maximum order quantity of 100 in XYZ"


def test_max_order_notional_values_market_orders_at_the_reference_price() -> None:
    """Notional is price x quantity; a market order is valued at the last trade price, else the
    instrument's reference price, and is not checked when neither exists."""
    engine, risk = gated(RiskLimitsConfig(max_order_notional=1_000_000))
    play(engine, risk, [
        (sell(100, 10_000, account="B"), "accepted"),        # exactly 1,000,000
        (sell(101, 10_000, account="B"), "RISK_MAX_ORDER_NOTIONAL"),
        (buy(101), "RISK_MAX_ORDER_NOTIONAL"),               # 101 x reference 10,000
        (buy(100), "accepted"),                              # trades at 10,000
        (sell(40, 12_500, account="B"), "accepted"),         # 500,000
        (buy(40, 12_500, account="C"), "accepted"),          # trades: last price 12,500
        (buy(81), "RISK_MAX_ORDER_NOTIONAL"),                # 81 x 12,500 = 1,012,500
        (buy(80, 100, symbol="ABC"), "accepted"),            # 8,000
    ])
    # ABC has neither a trade nor a reference price: a market order there is not valued
    assert risk.check(buy(10**12, symbol="ABC")) is None
    text = reject_text(engine, buy(100), RejectCode.RISK_MAX_ORDER_NOTIONAL)
    assert text == (
        "market order notional 1250000 (quantity 100 at the last trade price 12500) is above "
        "account A's maximum order notional of 1000000 in XYZ"
    )
    text = reject_text(engine, buy(200, 5_001), RejectCode.RISK_MAX_ORDER_NOTIONAL)
    assert text == (
        "notional 1000200 (price 5001 x quantity 200) is above account A's maximum order "
        "notional of 1000000 in XYZ"
    )


def test_price_collar_centres_on_the_last_trade_else_the_instrument_reference() -> None:
    """A limit price may be collar_bps away from the reference (last trade, else the
    instrument's reference price), inclusive; market orders and symbols without any reference
    are not collared."""
    engine, risk = gated(RiskLimitsConfig(price_collar_bps=500))
    play(engine, risk, [
        # reference 10,000: 500 bps allows 9,500 to 10,500
        (buy(1, 9_500), "accepted"),
        (buy(1, 9_499), "RISK_PRICE_COLLAR"),
        (sell(1, 10_500), "accepted"),
        (sell(1, 10_501), "RISK_PRICE_COLLAR"),
        (replace(1, 9_499, 1), "RISK_PRICE_COLLAR"),
        # a trade at 10,200 moves the reference: 500 bps of 10,200 is 510
        (sell(1, 10_200, account="B"), "accepted"),
        (buy(1, 10_200, account="C"), "accepted"),
        (buy(1, 9_690), "accepted"),
        (buy(1, 9_689), "RISK_PRICE_COLLAR"),
        (sell(1, 10_710), "accepted"),
        (sell(1, 10_711), "RISK_PRICE_COLLAR"),
        (buy(1, 1, symbol="ABC"), "accepted"),
    ])
    assert risk.check(buy(1)) is None
    text = reject_text(engine, sell(1, 11_000), RejectCode.RISK_PRICE_COLLAR)
    assert text == (
        "price 11000 is outside account A's price collar in XYZ: 500 bps around the last trade "
        "price 10200 allows 9690 to 10710"
    )


def test_max_position_counts_open_orders_on_the_orders_side() -> None:
    """A buy is refused if position + open buys + quantity exceeds max_position; a sell if open
    sells + quantity - position does. An order that can only reduce the position passes."""
    engine, risk = gated()
    play(engine, risk, [
        (set_limits("A", max_position=100), "limits set"),
        (buy(60, 9_900), "accepted"),                 # 0 + 0 + 60
        (buy(40, 9_900), "accepted"),                 # 0 + 60 + 40 = 100
        (buy(1, 9_900), "RISK_MAX_POSITION"),         # 101
        (sell(100, 10_100), "accepted"),              # 0 + 100 - 0 = 100
        (sell(1, 10_100), "RISK_MAX_POSITION"),       # 101
        (sell(100, account="B"), "accepted"),         # fills A's buys: A is long 100
        (buy(1, 9_900), "RISK_MAX_POSITION"),         # 100 + 0 + 1
        (sell(100, 10_200), "accepted"),              # 100 + 100 - 100 = 100
        (sell(1, 10_200), "RISK_MAX_POSITION"),       # 201 - 100 = 101
    ])
    assert risk.exposure("A").symbols[0].position == 100
    text = reject_text(engine, sell(30, 10_200), RejectCode.RISK_MAX_POSITION)
    assert text == (
        "selling 30 could take account A's position in XYZ to -130 (position +100, open sells "
        "200, this order 30), over its maximum position of 100 long or short"
    )


def test_a_replace_counts_its_new_open_quantity_in_place_of_the_old() -> None:
    """For a replace the position check uses the order's new open quantity instead of its
    current one: position + open buys - old + new (sells alike)."""
    engine, risk = gated()
    play(engine, risk, [
        (set_limits("A", max_position=100), "limits set"),
        (buy(60, 9_900), "accepted"),                 # 1
        (buy(30, 9_800), "accepted"),                 # 2: open buys 90
        (replace(1, 9_900, 70), "replaced"),          # 90 - 60 + 70 = 100
        (replace(1, 9_900, 71), "RISK_MAX_POSITION"), # 100 - 70 + 71 = 101
        (replace(2, 9_700, 30), "replaced"),          # 100 - 30 + 30, a price change only
        (sell(50, 10_100), "accepted"),               # 3
        (replace(3, 10_100, 100), "replaced"),        # 50 - 50 + 100 = 100
        (replace(3, 10_100, 101), "RISK_MAX_POSITION"),
    ])
    text = reject_text(engine, replace(1, 9_900, 75), RejectCode.RISK_MAX_POSITION)
    assert text == (
        "buying 75 could take account A's position in XYZ to +105 (position +0, other open buys "
        "30, this order's new open quantity 75), over its maximum position of 100 long or short"
    )


def test_max_open_orders_counts_the_accounts_orders_in_the_whole_shard() -> None:
    """A new order is refused when the account's open orders over all the shard's symbols
    plus one would exceed max_open_orders; replaces are not counted."""
    engine, risk = gated()
    play(engine, risk, [
        (set_limits("A", max_open_orders=2), "limits set"),
        (buy(1, 9_900), "accepted"),
        (buy(1, 100, symbol="ABC"), "accepted"),
        (buy(1, 9_900), "RISK_MAX_OPEN_ORDERS"),
        (buy(1, 100, symbol="ABC", tif=TimeInForce.IOC), "RISK_MAX_OPEN_ORDERS"),
        (replace(1, 9_950, 5), "replaced"),
        (buy(1, 9_900, account="B"), "accepted"),     # B has no such limit
        (cancel(1), "cancelled"),
        (buy(1, 9_900), "accepted"),
    ])
    assert risk.exposure("A").open_orders == 2
    text = reject_text(engine, sell(1, 10_500), RejectCode.RISK_MAX_OPEN_ORDERS)
    assert text == (
        "account A already has 2 open orders in this shard, its maximum is 2: cancel one "
        "before entering another"
    )


def test_order_rate_is_a_token_bucket_refilled_by_ts_ns() -> None:
    """max_orders_per_second tokens refill per second of ts_ns, up to order_burst; a new order
    or a replace takes one; an order refused for any reason takes none."""
    engine, risk = gated()
    play(engine, risk, [
        (set_limits("A", max_orders_per_second=2, order_burst=3), "limits set"),
        (buy(1, 9_900, ts_ns=0), "accepted"),
        (buy(1, 9_900, ts_ns=0), "accepted"),
        (replace(1, 9_800, 1, ts_ns=0), "replaced"),
        (buy(1, 9_900, ts_ns=0), "RISK_ORDER_RATE"),
        (buy(1, 9_900, ts_ns=SECOND // 4), "RISK_ORDER_RATE"),    # half a token
        (buy(1, 9_900, ts_ns=SECOND // 2), "accepted"),           # one token
        (buy(1, 9_900, ts_ns=SECOND // 2), "RISK_ORDER_RATE"),
        (set_limits("A", max_orders_per_second=2, order_burst=3, max_order_quantity=5),
         "limits set"),
        (buy(9, 9_900, ts_ns=SECOND), "RISK_MAX_ORDER_QUANTITY"),  # takes no token
        (buy(1, 9_900, ts_ns=SECOND), "accepted"),
        (buy(1, 9_900, ts_ns=SECOND), "RISK_ORDER_RATE"),
        (buy(1, 9_900, ts_ns=60 * SECOND), "accepted"),           # full again: 3, not 118
        (buy(1, 9_900, ts_ns=60 * SECOND), "accepted"),
        (buy(1, 9_900, ts_ns=60 * SECOND), "accepted"),
        (buy(1, 9_900, ts_ns=60 * SECOND), "RISK_ORDER_RATE"),
        (buy(1, 9_900, ts_ns=60 * SECOND, account="B"), "accepted"),  # a bucket per account
    ])
    text = reject_text(
        engine, buy(1, 9_900, ts_ns=60 * SECOND + 1), RejectCode.RISK_ORDER_RATE
    )
    assert text == (
        "account A is sending orders and replaces faster than its limit of 2 per second "
        "(bursts up to 3); the next one is allowed in 500.000 ms"
    )


def test_order_burst_defaults_to_one_seconds_worth() -> None:
    """Without order_burst the bucket holds max_orders_per_second tokens; time running
    backwards refills nothing."""
    engine, risk = gated(RiskLimitsConfig(max_orders_per_second=2))
    play(engine, risk, [
        (buy(1, 9_900, ts_ns=10 * SECOND), "accepted"),
        (buy(1, 9_900, ts_ns=10 * SECOND), "accepted"),
        (buy(1, 9_900, ts_ns=10 * SECOND), "RISK_ORDER_RATE"),
        (buy(1, 9_900, ts_ns=9 * SECOND), "RISK_ORDER_RATE"),
        (buy(1, 9_900, ts_ns=10 * SECOND + SECOND // 2), "accepted"),
        (buy(1, 9_900, ts_ns=12 * SECOND), "accepted"),             # full: 2, one left
        (buy(1, 9_900, ts_ns=11 * SECOND), "accepted"),             # takes it, clock stays
        (buy(1, 9_900, ts_ns=12 * SECOND + SECOND // 2), "accepted"),
        (buy(1, 9_900, ts_ns=12 * SECOND + SECOND // 2), "RISK_ORDER_RATE"),
    ])
    bucket = risk.state().rate_buckets[0]
    assert (bucket.account, bucket.tokens, bucket.token_billionths, bucket.ts_ns) == (
        "A", 0, 0, 12 * SECOND + SECOND // 2
    )


# ------------------------------------------------------------------ switches


def test_kill_switch_cancels_resting_orders_and_blocks_new_ones_until_released() -> None:
    """Engaging a kill switch cancels the account's resting orders (the engine does) and the
    risk state drops them; new orders are refused until the switch is released."""
    engine, risk = gated()
    play(engine, risk, [
        (buy(5, 9_900), "accepted"),
        (sell(5, 10_100, symbol="XYZ"), "accepted"),
        (buy(5, 100, symbol="ABC"), "accepted"),
        (sell(5, 10_200, account="B"), "accepted"),
        (kill("A", True), "kill switch set"),
        (buy(1, 9_900), "RISK_ACCOUNT_KILLED"),
        (buy(1, 100, symbol="ABC"), "RISK_ACCOUNT_KILLED"),
        (buy(1, 9_900, account="B"), "accepted"),
        (kill("A", False), "kill switch set"),
        (buy(1, 9_900), "accepted"),
    ])
    assert risk.killed_accounts() == []
    assert [o.account for o in risk.open_orders()] == ["B", "B", "A"]


def test_kill_switch_refuses_replaces_but_not_cancels() -> None:
    """While an account is killed its replaces are refused and its cancels go through. (The
    engine cancels a killed account's orders; here the switch reaches the gate alone, as it
    would while an order of the account is still open, to show the gate's part.)"""
    engine, risk = gated()
    play(engine, risk, [(buy(5, 9_900), "accepted")])
    risk.observe([KillSwitchSet(seq=0, ts_ns=0, account="A", engaged=True)], 0)
    assert risk.killed_accounts() == ["A"]
    play(engine, risk, [
        (replace(1, 9_900, 4), "RISK_ACCOUNT_KILLED"),
        (cancel(1), "cancelled"),
    ])
    text = reject_text(engine, buy(1, 9_900), RejectCode.RISK_ACCOUNT_KILLED)
    assert text == (
        "account A is stopped by its kill switch: no new orders or replaces until it is released"
    )


def test_halt_refuses_new_orders_and_replaces_in_the_symbol_not_cancels_until_resumed() -> None:
    """A halted symbol refuses new orders and replaces of every account but accepts cancels;
    other symbols trade on; resuming lifts the halt."""
    engine, risk = gated()
    play(engine, risk, [
        (buy(5, 9_900), "accepted"),
        (buy(5, 9_800), "accepted"),
        (halt("XYZ", True), "halt set"),
        (buy(1, 9_900, account="B"), "RISK_SYMBOL_HALTED"),
        (replace(1, 9_900, 4), "RISK_SYMBOL_HALTED"),
        (cancel(1), "cancelled"),
        (buy(1, 100, symbol="ABC"), "accepted"),
        (halt("XYZ", False), "halt set"),
        (replace(2, 9_850, 4), "replaced"),
    ])
    assert risk.halted_symbols() == []
    engine.apply([halt("XYZ", True)])
    assert risk.halted_symbols() == ["XYZ"]
    text = reject_text(engine, buy(1, 9_900), RejectCode.RISK_SYMBOL_HALTED)
    assert text == (
        "XYZ is halted: no new orders or replaces until it resumes (cancels are still accepted)"
    )


# ------------------------------------------------------------------ limit resolution


def test_limits_resolve_field_by_field_from_the_most_specific_level() -> None:
    """Per field the first level that sets it wins: the account's override for the symbol,
    the account's limits, "*"'s override for the symbol, "*"'s limits, the defaults."""
    engine, risk = gated(RiskLimitsConfig(max_order_quantity=1_000, max_open_orders=50))
    play(engine, risk, [
        (set_limits("*", max_order_quantity=500, price_collar_bps=300), "limits set"),
        (set_limits("*", "ABC", max_position=70), "limits set"),
        (set_limits("A", max_order_quantity=200, max_position=90), "limits set"),
        (set_limits("A", "XYZ", max_order_quantity=50), "limits set"),
    ])
    fields = ("max_order_quantity", "price_collar_bps", "max_position", "max_open_orders",
              "max_orders_per_second")
    #   account, symbol    quantity collar position open  rate
    table = [
        ("A", "XYZ", (50, 300, 90, 50, None)),
        ("A", "ABC", (200, 300, 90, 50, None)),
        ("B", "XYZ", (500, 300, None, 50, None)),
        ("B", "ABC", (500, 300, 70, 50, None)),
    ]
    for account, symbol, expected in table:
        limits = risk.limits(account, symbol)
        assert tuple(getattr(limits, name) for name in fields) == expected, (account, symbol)
    play(engine, risk, [
        (buy(51, 9_900), "RISK_MAX_ORDER_QUANTITY"),
        (buy(51, 100, symbol="ABC"), "accepted"),
        (buy(501, 9_900, account="B"), "RISK_MAX_ORDER_QUANTITY"),
        (buy(71, 100, symbol="ABC", account="B"), "RISK_MAX_POSITION"),
        (buy(71, 9_900, account="B"), "accepted"),
    ])


def test_new_limits_apply_to_the_next_order_and_empty_limits_remove_a_level() -> None:
    """A RiskLimitsSet replaces its level's limits at once (the resolved limits are not kept
    stale); setting a level to no limits at all removes it, so lower levels apply again."""
    engine, risk = gated(RiskLimitsConfig(max_order_quantity=100))
    play(engine, risk, [
        (buy(100, 9_900), "accepted"),
        (set_limits("A", max_order_quantity=10), "limits set"),
        (buy(11, 9_900), "RISK_MAX_ORDER_QUANTITY"),
        (set_limits("A", max_position=1_000), "limits set"),    # replaces, does not merge
        (buy(100, 9_900), "accepted"),
        (buy(101, 9_900), "RISK_MAX_ORDER_QUANTITY"),
        (set_limits("A"), "limits set"),
    ])
    assert risk.state().limits == []
    assert risk.limits("A", "XYZ") == RiskLimitsConfig(max_order_quantity=100)


def test_invalid_limits_are_refused_naming_each_field_and_change_nothing() -> None:
    """A SetRiskLimits with a zero, negative or over-64-bit limit is refused with
    RISK_INVALID_LIMITS naming the fields; None (no limit) is valid."""
    engine, risk = gated()
    before = risk.state_hash()
    play(engine, risk, [
        (set_limits("A", max_open_orders=0), "RISK_INVALID_LIMITS"),
        (set_limits("A", "XYZ", max_position=-5), "RISK_INVALID_LIMITS"),
        (set_limits("*", order_burst=INT64_MAX + 1), "RISK_INVALID_LIMITS"),
    ])
    assert risk.state_hash() == before
    text = reject_text(
        engine, set_limits("A", "XYZ", max_order_quantity=0, price_collar_bps=-1, max_position=5),
        RejectCode.RISK_INVALID_LIMITS,
    )
    assert text == (
        f"invalid risk limits for account A in XYZ: max_order_quantity=0, price_collar_bps=-1; "
        f"every limit must be a whole number from 1 to {INT64_MAX}, or unset for no limit"
    )
    play(engine, risk, [(set_limits("A", max_open_orders=1, max_position=None), "limits set")])
    assert risk.check_admin(kill("A", True)) is None


def test_check_changes_nothing() -> None:
    """check() only answers: the state is the same after any number of checks, passed or not."""
    engine, risk = gated(RiskLimitsConfig(max_order_quantity=5, max_orders_per_second=1))
    play(engine, risk, [(buy(5, 9_900), "accepted"), (sell(2, account="B"), "accepted")])
    before = risk.state_hash()
    for command in (buy(6, 9_900), buy(1, 9_900), replace(1, 9_000, 2), sell(1, account="C")):
        risk.check(command)
    assert risk.state_hash() == before


def test_queries_show_exposure_per_account_and_symbol() -> None:
    """The read model shows per account its open order count and per symbol the position and
    the open buy and sell quantities."""
    engine, risk = gated()
    play(engine, risk, [
        (buy(10, 9_900), "accepted"),
        (sell(4, 10_100), "accepted"),
        (sell(3, account="B"), "accepted"),     # A buys 3 of its 10 at 9,900 from B
        (buy(2, 100, symbol="ABC"), "accepted"),
    ])
    exposure = risk.exposure("A")
    assert (exposure.open_orders, exposure.killed) == (3, False)
    assert [
        (s.symbol, s.position, s.open_buy_quantity, s.open_sell_quantity, s.open_orders)
        for s in exposure.symbols
    ] == [("ABC", 0, 2, 0, 1), ("XYZ", 3, 7, 4, 2)]
    assert risk.accounts() == ["A", "B"]
    assert risk.exposure("B").symbols[0].position == -3
    assert risk.reference_price("XYZ") == 9_900 and risk.reference_price("ABC") is None


# ------------------------------------------------------------------ random flows

ACCOUNTS = ["A", "B", "C"]
_PRICES = [100, 99, 101, 98, 102, 100, 95, 105, 94, 106, 90, 110]
_QUANTITIES = [1, 2, 3, 1, 5, 2, 8, 1, 4, 13, 2, 10, 12, 1]
_STEPS_NS = [0, 1_000_000, 0, 10_000_000, 100_000_000, 0, SECOND, -5_000_000]
_CONFIGS = [
    RiskLimitsConfig(),
    RiskLimitsConfig(max_order_quantity=8),
    RiskLimitsConfig(max_order_notional=600),
    RiskLimitsConfig(price_collar_bps=500),
    RiskLimitsConfig(max_position=10),
    RiskLimitsConfig(max_open_orders=3),
    RiskLimitsConfig(max_orders_per_second=5, order_burst=3),
    RiskLimitsConfig(max_orders_per_second=1),
    RiskLimitsConfig(max_position=6, max_open_orders=5, max_order_quantity=5),
    RiskLimitsConfig(max_open_orders=0),
    RiskLimitsConfig(max_position=-1, max_order_quantity=4),
]
FLOW_INSTRUMENTS = [
    Instrument(symbol="XYZ", reference_price=100, maker_fee_bps=-2, taker_fee_bps=7),
    Instrument(symbol="ABC", taker_fee_bps=25),
]
FLOW_DEFAULTS = RiskLimitsConfig(
    max_order_quantity=12, max_order_notional=1_000, max_position=12, max_open_orders=4,
    price_collar_bps=1_000, max_orders_per_second=20, order_burst=6,
)


def command_from_bytes(data: bytes, ts_ns: int) -> Command:
    """Turn 10 random bytes into a command at ``ts_ns``. Zero bytes decode to the plainest
    command: a GTC limit buy of 1 at 100 in XYZ for account A."""
    kind, symbol_byte, account_byte, price, quantity, side_byte, shape, extra, target, _ = data
    symbol = "XYZ" if symbol_byte % 4 < 3 else "ABC"
    account = ACCOUNTS[account_byte % 3]
    side = Side.BUY if side_byte % 2 == 0 else Side.SELL
    client_order_id = f"c{data.hex()}"
    kind %= 32
    if kind < 16 or kind == 31:
        shape %= 16
        market = shape >= 14
        time_in_force = {11: TimeInForce.IOC, 12: TimeInForce.IOC, 13: TimeInForce.FOK}.get(
            shape, TimeInForce.GTC
        )
        return NewOrder(
            account=account, client_order_id=client_order_id, symbol=symbol, side=side,
            price=0 if market else _PRICES[price % len(_PRICES)],
            quantity=_QUANTITIES[quantity % len(_QUANTITIES)],
            order_type=OrderType.MARKET if market else OrderType.LIMIT,
            time_in_force=TimeInForce.IOC if market else time_in_force,
            post_only=shape == 10, ts_ns=ts_ns,
        )
    # mostly a live order, as its owner (see `Shard.aim`); else an id that may be closed,
    # unknown or another account's
    order_id = -1 - target if extra % 4 else 1 + target % 12
    if kind < 21:
        return CancelOrder(account=account, client_order_id=client_order_id, symbol=symbol,
                           order_id=order_id, ts_ns=ts_ns)
    if kind < 27:
        return ReplaceOrder(account=account, client_order_id=client_order_id, symbol=symbol,
                            order_id=order_id, price=_PRICES[price % len(_PRICES)],
                            quantity=_QUANTITIES[quantity % len(_QUANTITIES)], ts_ns=ts_ns)
    if kind < 29:
        return SetRiskLimits(account=(*ACCOUNTS, "*")[account_byte % 4],
                             symbol=("", "XYZ", "ABC")[symbol_byte % 3],
                             limits=_CONFIGS[extra % len(_CONFIGS)], ts_ns=ts_ns)
    if kind == 29 and extra % 2:
        return SetKillSwitch(account=account, engaged=side_byte % 3 == 0, ts_ns=ts_ns)
    if kind == 29:
        return SetSymbolHalt(symbol=symbol, halted=side_byte % 3 == 0, ts_ns=ts_ns)
    return MassCancel(account=account, client_order_id=client_order_id,
                      symbol=symbol if side_byte % 2 else "", ts_ns=ts_ns)


def flow_from_bytes(chunks: list[bytes]) -> list[Command]:
    """Turn chunks of 10 bytes into commands; the last byte steps the ingress clock."""
    ts_ns = 1_000 * SECOND
    flow = []
    for data in chunks:
        ts_ns += _STEPS_NS[data[9] % len(_STEPS_NS)]
        flow.append(command_from_bytes(data, ts_ns))
    return flow


AFTER_THE_GATE = {
    RejectCode.NO_LIQUIDITY,
    RejectCode.POST_ONLY_WOULD_TAKE,
    RejectCode.FOK_NOT_FILLABLE,
    RejectCode.LEVEL_QUANTITY_OVERFLOW,
}
"""Matching rejects the book decides after the gate let the order through."""

flows = st.lists(st.binary(min_size=10, max_size=10), min_size=1, max_size=60).map(
    flow_from_bytes
)


class NaiveRisk:
    """The gate's decisions recomputed plainly: open orders from the engine's books, positions
    and prices from the trades seen, the rate bucket as an exact fraction of tokens."""

    def __init__(self, instruments: list[Instrument], default: RiskLimitsConfig) -> None:
        self.reference = {i.symbol: i.reference_price for i in instruments}
        self.levels: dict[tuple[str, str], RiskLimitsConfig] = {("", ""): default}
        self.killed: set[str] = set()
        self.halted: set[str] = set()
        self.last: dict[str, int] = {}
        self.positions: Counter[tuple[str, str]] = Counter()
        self.buckets: dict[str, tuple[Fraction, int]] = {}

    def limit(self, account: str, symbol: str, name: str) -> int | None:
        for key in ((account, symbol), (account, ""), ("*", symbol), ("*", ""), ("", "")):
            config = self.levels.get(key)
            if config is not None and getattr(config, name) is not None:
                return int(getattr(config, name))
        return None

    def tokens(self, account: str, symbol: str, ts_ns: int) -> Fraction | None:
        rate = self.limit(account, symbol, "max_orders_per_second")
        if rate is None:
            return None
        burst = self.limit(account, symbol, "order_burst") or rate
        if account not in self.buckets:
            return Fraction(burst)
        level, last = self.buckets[account]
        return min(Fraction(burst), level + Fraction(max(0, ts_ns - last) * rate, SECOND))

    def decide(self, command: NewOrder | ReplaceOrder, engine: MatchingEngine) -> RejectCode | None:
        account, symbol = command.account, command.symbol
        if account in self.killed:
            return RejectCode.RISK_ACCOUNT_KILLED
        if symbol in self.halted:
            return RejectCode.RISK_SYMBOL_HALTED

        def limit(name: str) -> int | None:
            return self.limit(account, symbol, name)

        new = isinstance(command, NewOrder)
        market = new and command.order_type == OrderType.MARKET  # type: ignore[union-attr]
        reference = self.last.get(symbol, self.reference.get(symbol))
        maximum = limit("max_order_quantity")
        if maximum is not None and command.quantity > maximum:
            return RejectCode.RISK_MAX_ORDER_QUANTITY
        maximum = limit("max_order_notional")
        price = reference if market else command.price
        if maximum is not None and price is not None and price * command.quantity > maximum:
            return RejectCode.RISK_MAX_ORDER_NOTIONAL
        collar = limit("price_collar_bps")
        if (
            collar is not None
            and not market
            and reference is not None
            and abs(command.price - reference) * 10_000 > collar * reference
        ):
            return RejectCode.RISK_PRICE_COLLAR
        live = [
            (book_symbol, resting)
            for book_symbol, book in engine.books.items()
            for resting in book.orders.values()
            if resting.account == account
        ]
        side: Side | None
        if isinstance(command, NewOrder):
            side, old = command.side, 0
        else:
            target = engine.find_order(command.order_id)
            side = target.side if target is not None else None
            old = target.quantity if target is not None else 0
        maximum = limit("max_position")
        if maximum is not None and side is not None:
            position = self.positions[account, symbol]
            same_side = sum(
                resting.quantity
                for book_symbol, resting in live
                if book_symbol == symbol and resting.side == side
            )
            if side == Side.BUY:
                worst = position + same_side - old + command.quantity
            else:
                worst = same_side - old + command.quantity - position
            if worst > maximum:
                return RejectCode.RISK_MAX_POSITION
        maximum = limit("max_open_orders")
        if maximum is not None and new and len(live) + 1 > maximum:
            return RejectCode.RISK_MAX_OPEN_ORDERS
        tokens = self.tokens(account, symbol, command.ts_ns)
        if tokens is not None and tokens < 1:
            return RejectCode.RISK_ORDER_RATE
        return None

    def fold(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, OrderAccepted | OrderReplaced):
                tokens = self.tokens(event.account, event.symbol, event.ts_ns)
                if tokens is not None:
                    last = self.buckets.get(event.account, (Fraction(0), 0))[1]
                    self.buckets[event.account] = (tokens - 1, max(last, event.ts_ns))
            elif isinstance(event, Trade):
                buyer, seller = (
                    (event.taker_account, event.maker_account)
                    if event.aggressor_side == Side.BUY
                    else (event.maker_account, event.taker_account)
                )
                self.positions[buyer, event.symbol] += event.quantity
                self.positions[seller, event.symbol] -= event.quantity
                self.last[event.symbol] = event.price
            elif isinstance(event, RiskLimitsSet):
                self.levels[event.account, event.symbol] = event.limits
            elif isinstance(event, KillSwitchSet):
                (self.killed.add if event.engaged else self.killed.discard)(event.account)
            elif isinstance(event, SymbolHaltSet):
                (self.halted.add if event.halted else self.halted.discard)(event.symbol)


class Shard:
    """A gated engine and a position ledger fed with its events, applied command by command."""

    def __init__(
        self,
        engine: MatchingEngine | None = None,
        risk: RiskLimits | None = None,
        ledger: PositionLedger | None = None,
    ) -> None:
        self.risk = risk if risk is not None else RiskLimits(FLOW_INSTRUMENTS, FLOW_DEFAULTS)
        self.engine = engine if engine is not None else MatchingEngine(
            FLOW_INSTRUMENTS, gate=self.risk
        )
        self.ledger = ledger if ledger is not None else PositionLedger(FLOW_INSTRUMENTS)

    def aim(self, command: Command) -> Command:
        """Aim a cancel or replace with order id -n at the n-th live order (cyclically), sent
        by its owner in its symbol; leave every other command as it is."""
        if not isinstance(command, CancelOrder | ReplaceOrder) or command.order_id > 0:
            return command
        live = sorted(
            (order_id, symbol, resting.account)
            for symbol, book in self.engine.books.items()
            for order_id, resting in book.orders.items()
        )
        if not live:
            return msgspec.structs.replace(command, order_id=1)
        order_id, symbol, account = live[-command.order_id % len(live)]
        return msgspec.structs.replace(command, order_id=order_id, symbol=symbol, account=account)

    def apply(self, command: Command) -> list[Event]:
        events = self.engine.apply([command])
        self.ledger.observe(events)
        return events

    def core_hash(self) -> tuple[bytes, str, str]:
        """The engine's books and order ids (not its event counter), the risk, the ledger."""
        books = msgspec.structs.replace(self.engine.state(), next_seq=0)
        return msgspec.msgpack.encode(books), self.risk.state_hash(), self.ledger.state_hash()

    def hashes(self) -> tuple[str, str, str]:
        return self.engine.state_hash(), self.risk.state_hash(), self.ledger.state_hash()

    def snapshot(self) -> Shard:
        """Restore a copy from encoded snapshots, as a restarted shard would."""
        risk = RiskLimits.from_state(
            FLOW_INSTRUMENTS,
            msgspec.msgpack.decode(msgspec.msgpack.encode(self.risk.state()), type=RiskState),
        )
        engine = MatchingEngine.from_state(
            FLOW_INSTRUMENTS,
            msgspec.msgpack.decode(msgspec.msgpack.encode(self.engine.state()), type=EngineState),
            gate=risk,
        )
        ledger = PositionLedger.from_state(
            FLOW_INSTRUMENTS,
            msgspec.msgpack.decode(msgspec.msgpack.encode(self.ledger.state()), type=LedgerState),
        )
        return Shard(engine, risk, ledger)


@given(flows)
def test_a_reject_changes_nothing_and_the_gate_decides_as_the_naive_reference(
    flow: list[Command],
) -> None:
    """Before every order or replace the gate's answer equals the naive recomputation; the
    engine's outcome agrees with it; a reject leaves the books, the risk state and the ledger
    exactly as they were; the invariants hold after every command."""
    shard = Shard()
    naive = NaiveRisk(FLOW_INSTRUMENTS, FLOW_DEFAULTS)
    for command in flow:
        command = shard.aim(command)
        decision = None
        if isinstance(command, NewOrder | ReplaceOrder):
            answer = shard.risk.check(command)
            decision = answer[0] if answer is not None else None
            assert decision == naive.decide(command, shard.engine), command
            if answer is not None:
                assert answer[1], "a reject must explain itself"
        before = shard.core_hash()
        events = shard.apply(command)
        naive.fold(events)
        first = events[0] if events else None  # a mass cancel may cancel nothing
        if isinstance(first, OrderRejected):
            assert shard.core_hash() == before, first
            if first.code.stage == "risk" and first.request != RequestKind.ADMIN:
                assert first.code == decision
            elif first.code in AFTER_THE_GATE:
                assert decision is None
        elif isinstance(first, OrderAccepted | OrderReplaced):
            assert decision is None
        shard.engine.check_invariants()
        shard.risk.check_invariants()
        shard.ledger.check_invariants()


@given(flows)
def test_risk_open_orders_are_the_books_live_orders_and_positions_match_the_trades(
    flow: list[Command],
) -> None:
    """After every command the risk state's open orders equal the books' live orders, and the
    risk's and the ledger's positions equal a recount of the trades and sum to zero."""
    shard = Shard()
    recount: Counter[tuple[str, str]] = Counter()
    for command in flow:
        for event in shard.apply(shard.aim(command)):
            if isinstance(event, Trade):
                buyer_is_taker = event.aggressor_side == Side.BUY
                buyer = event.taker_account if buyer_is_taker else event.maker_account
                seller = event.maker_account if buyer_is_taker else event.taker_account
                recount[buyer, event.symbol] += event.quantity
                recount[seller, event.symbol] -= event.quantity
        assert shard.risk.open_orders() == book_orders(shard.engine)
        risk_positions = {(p.account, p.symbol): p.position for p in shard.risk.state().positions}
        ledger_positions = {
            (account, position.symbol): position.net_quantity
            for account in shard.ledger.accounts()
            for position in shard.ledger.positions(account)
            if position.net_quantity
        }
        expected = {key: value for key, value in recount.items() if value}
        assert risk_positions == expected
        assert ledger_positions == expected
        for instrument in FLOW_INSTRUMENTS:
            assert sum(
                value for (_, symbol), value in expected.items() if symbol == instrument.symbol
            ) == 0


@given(flows, st.integers(0, 60))
def test_replays_and_snapshots_reproduce_the_same_hashes(flow: list[Command], cut: int) -> None:
    """The same commands replayed (through the wire codec) give the same hashes; a shard
    restored from snapshots taken mid-flow continues with the same events and hashes."""
    live, replay = Shard(), Shard()
    restored: Shard | None = None
    for number, command in enumerate(flow):
        command = live.aim(command)
        if number == cut:
            restored = live.snapshot()
            assert restored.hashes() == live.hashes()
            restored.risk.check_invariants()
        events = live.apply(command)
        assert replay.apply(decode_commands(encode([command]))[0]) == events
        if restored is not None:
            assert restored.apply(command) == events
    assert replay.hashes() == live.hashes()
    if restored is not None:
        assert restored.hashes() == live.hashes()


def test_rate_bucket_survives_a_snapshot_with_its_fraction_of_a_token() -> None:
    """The snapshot keeps a bucket's whole tokens and its billionths of a token exactly."""
    engine, risk = gated(RiskLimitsConfig(max_orders_per_second=3))
    play(engine, risk, [
        (buy(1, 9_900, ts_ns=0), "accepted"),
        (buy(1, 9_900, ts_ns=0), "accepted"),
        (buy(1, 9_900, ts_ns=0), "accepted"),
        (buy(1, 9_900, ts_ns=SECOND // 7), "RISK_ORDER_RATE"),
        (buy(1, 9_900, ts_ns=SECOND // 2), "accepted"),  # 1.5 tokens, one taken
    ])
    bucket = risk.state().rate_buckets[0]
    assert (bucket.tokens, bucket.token_billionths, bucket.ts_ns) == (0, TOKEN // 2, SECOND // 2)
    restored = RiskLimits.from_state(
        INSTRUMENTS, msgspec.msgpack.decode(msgspec.msgpack.encode(risk.state()), type=RiskState)
    )
    assert restored.state_hash() == risk.state_hash()
    # the missing half token takes 166,666,666.7 ns at 3 tokens per second
    assert restored.check(buy(1, 9_900, ts_ns=SECOND // 2 + 166_666_667)) is None
    assert restored.check(buy(1, 9_900, ts_ns=SECOND // 2 + 166_666_666)) is not None
