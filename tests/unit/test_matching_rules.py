"""Golden scenarios: one matching rule per test, stated in its docstring.

The instrument has tick size 5 and lot size 10. Order ids count from 1 in arrival order.
"""

from __future__ import annotations

import pytest

from actors.core.engine import MatchingEngine
from protocols.messages import (
    INT64_MAX,
    CancelOrder,
    CancelReason,
    Instrument,
    KillSwitchSet,
    LevelChanged,
    MassCancel,
    NewOrder,
    OrderRejected,
    OrderType,
    RejectCode,
    RiskLimitsConfig,
    RiskLimitsSet,
    SelfTradePrevention,
    SetKillSwitch,
    SetRiskLimits,
    SetSymbolHalt,
    Side,
    SymbolHaltSet,
    TimeInForce,
)
from tests.unit.matching_dsl import (
    INSTRUMENT,
    SYMBOL,
    book,
    buy,
    cancel,
    new_engine,
    order,
    replace,
    run,
    sell,
)

GTC, IOC, FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK
STP = SelfTradePrevention


# ------------------------------------------------------------------ priority and price


def test_better_price_trades_first() -> None:
    """An aggressive order meets the best opposite price first, whatever the arrival order."""
    engine = new_engine()
    run(engine, sell(10, 105), sell(10, 100))
    assert run(engine, buy(10, 105, account="B")) == [
        ("accepted", 3),
        ("trade", 100, 10, 2, 3),
    ]


def test_earlier_order_at_a_price_trades_first() -> None:
    """Within a price level, orders trade in arrival order."""
    engine = new_engine()
    run(engine, sell(10, 100), sell(10, 100))
    assert run(engine, buy(10, 100, account="B")) == [
        ("accepted", 3),
        ("trade", 100, 10, 1, 3),
    ]
    assert book(engine)["SELL"] == [(2, 100, 10)]


def test_trade_happens_at_the_resting_price() -> None:
    """A trade executes at the resting (maker) order's price, not the aggressor's limit."""
    engine = new_engine()
    run(engine, buy(10, 100))
    assert run(engine, sell(10, 90, account="B")) == [("accepted", 2), ("trade", 100, 10, 1, 2)]


def test_sweep_walks_levels_in_price_order_and_each_level_in_arrival_order() -> None:
    """An aggressive order sweeps levels best first and each level oldest first."""
    engine = new_engine()
    run(engine, sell(10, 110), sell(20, 100), sell(10, 105), sell(10, 100))
    assert run(engine, buy(50, 110, account="B")) == [
        ("accepted", 5),
        ("trade", 100, 20, 2, 5),
        ("trade", 100, 10, 4, 5),
        ("trade", 105, 10, 3, 5),
        ("trade", 110, 10, 1, 5),
    ]
    assert book(engine) == {"BUY": [], "SELL": []}


def test_limit_order_stops_at_its_limit_and_rests_the_remainder() -> None:
    """A GTC limit order takes what its price allows and rests the rest at its price."""
    engine = new_engine()
    run(engine, sell(10, 100), sell(10, 110))
    assert run(engine, buy(30, 105, account="B")) == [("accepted", 3), ("trade", 100, 10, 1, 3)]
    assert book(engine) == {"BUY": [(3, 105, 20)], "SELL": [(2, 110, 10)]}


def test_partial_fill_keeps_the_maker_at_the_front() -> None:
    """A partially filled resting order keeps its place and its remaining quantity."""
    engine = new_engine()
    run(engine, sell(30, 100), sell(10, 100))
    run(engine, buy(10, 100, account="B"))
    assert book(engine)["SELL"] == [(1, 100, 20), (2, 100, 10)]


# ------------------------------------------------------------------ order types


def test_market_order_sweeps_and_cancels_its_remainder() -> None:
    """A market order takes any price; what the book cannot fill is cancelled."""
    engine = new_engine()
    run(engine, sell(10, 100), sell(10, 500))
    assert run(engine, buy(30, market=True, account="B")) == [
        ("accepted", 3),
        ("trade", 100, 10, 1, 3),
        ("trade", 500, 10, 2, 3),
        ("cancelled", 3, 10, "MARKET_REMAINDER"),
    ]
    assert book(engine) == {"BUY": [], "SELL": []}


def test_market_order_against_an_empty_side_is_rejected() -> None:
    """A market order facing an empty opposite side is rejected and changes nothing."""
    engine = new_engine()
    run(engine, buy(10, 100))
    assert run(engine, sell(10, market=True, account="B"), buy(10, market=True)) == [
        ("accepted", 2),
        ("trade", 100, 10, 1, 2),
        ("rejected", "NO_LIQUIDITY"),
    ]
    before, next_order_id = engine.books[SYMBOL].state(), engine.next_order_id
    assert run(engine, buy(10, market=True), sell(10, market=True)) == [
        ("rejected", "NO_LIQUIDITY"),
        ("rejected", "NO_LIQUIDITY"),
    ]
    assert engine.books[SYMBOL].state() == before
    assert engine.next_order_id == next_order_id


def test_market_order_must_carry_price_zero() -> None:
    """A market order with a price is malformed: rejected as an invalid price."""
    engine = new_engine()
    assert run(engine, buy(10, 100, market=True)) == [("rejected", "INVALID_PRICE")]


def test_ioc_cancels_what_it_cannot_fill_at_once() -> None:
    """IOC takes what crosses now; its unfilled remainder is cancelled, never rests."""
    engine = new_engine()
    run(engine, sell(10, 100))
    assert run(engine, buy(30, 100, tif=IOC, account="B")) == [
        ("accepted", 2),
        ("trade", 100, 10, 1, 2),
        ("cancelled", 2, 20, "IOC_REMAINDER"),
    ]
    assert run(engine, buy(30, 100, tif=IOC)) == [
        ("accepted", 3),
        ("cancelled", 3, 30, "IOC_REMAINDER"),
    ]
    assert book(engine) == {"BUY": [], "SELL": []}


def test_fok_fills_completely_when_it_can() -> None:
    """FOK that the book can fill completely trades like IOC and leaves nothing."""
    engine = new_engine()
    run(engine, sell(10, 100), sell(20, 105))
    assert run(engine, buy(30, 105, tif=FOK, account="B")) == [
        ("accepted", 3),
        ("trade", 100, 10, 1, 3),
        ("trade", 105, 20, 2, 3),
    ]


def test_fok_that_cannot_fill_completely_leaves_no_trace() -> None:
    """FOK short of liquidity is rejected: no trade, no resting order, state unchanged."""
    engine = new_engine()
    run(engine, sell(10, 100), sell(20, 110))
    before = engine.books[SYMBOL].state()
    next_order_id = engine.next_order_id
    assert run(engine, buy(30, 105, tif=FOK, account="B")) == [("rejected", "FOK_NOT_FILLABLE")]
    assert run(engine, buy(40, tif=FOK, market=True, account="B")) == [
        ("rejected", "FOK_NOT_FILLABLE")
    ]
    assert engine.books[SYMBOL].state() == before
    assert engine.next_order_id == next_order_id


def test_fok_does_not_count_own_orders_that_self_trade_prevention_would_stop_at() -> None:
    """FOK with cancel-aggressing STP is not fillable if an own order stands in the way."""
    engine = new_engine()
    run(engine, sell(10, 100, account="A"), sell(20, 100, account="B"))
    assert run(engine, buy(20, 100, tif=FOK, stp=STP.CANCEL_AGGRESSING, account="A")) == [
        ("rejected", "FOK_NOT_FILLABLE")
    ]
    assert run(engine, buy(20, 100, tif=FOK, stp=STP.CANCEL_RESTING, account="A")) == [
        ("accepted", 3),
        ("cancelled", 1, 10, "SELF_TRADE_PREVENTION"),
        ("trade", 100, 20, 2, 3),
    ]


def test_post_only_that_would_take_is_rejected() -> None:
    """POST_ONLY is rejected if it would trade on arrival; nothing changes."""
    engine = new_engine()
    run(engine, sell(10, 100))
    assert run(engine, buy(10, 100, post_only=True, account="B")) == [
        ("rejected", "POST_ONLY_WOULD_TAKE")
    ]
    assert book(engine) == {"BUY": [], "SELL": [(1, 100, 10)]}


def test_post_only_that_does_not_cross_rests() -> None:
    """POST_ONLY below the best offer rests like any limit order and never rests crossed."""
    engine = new_engine()
    run(engine, sell(10, 100))
    assert run(engine, buy(10, 95, post_only=True, account="B")) == [("accepted", 2)]
    assert book(engine)["BUY"] == [(2, 95, 10)]


@pytest.mark.parametrize("tif", [IOC, FOK])
def test_post_only_must_be_gtc(tif: TimeInForce) -> None:
    """POST_ONLY only ever rests, so combining it with IOC or FOK is rejected."""
    engine = new_engine()
    assert run(engine, buy(10, 95, post_only=True, tif=tif)) == [
        ("rejected", "INVALID_TIME_IN_FORCE")
    ]


def test_market_order_cannot_be_post_only() -> None:
    """A market order always takes, so POST_ONLY on it is rejected."""
    engine = new_engine()
    assert run(engine, buy(10, market=True, post_only=True)) == [("rejected", "INVALID_ORDER_TYPE")]


# ------------------------------------------------------------------ cancel


def test_cancel_removes_the_open_quantity() -> None:
    """A cancel removes what is left of a resting order and reports that quantity."""
    engine = new_engine()
    run(engine, sell(30, 100))
    run(engine, buy(10, 100, account="B"))
    assert run(engine, cancel(1)) == [("cancelled", 1, 20, "USER")]
    assert book(engine) == {"BUY": [], "SELL": []}


@pytest.mark.parametrize(
    ("setup", "target", "code"),
    [
        pytest.param([], 99, "UNKNOWN_ORDER", id="never-entered"),
        pytest.param(["sell", "fill"], 1, "ORDER_NOT_OPEN", id="filled"),
        pytest.param(["sell", "cancel"], 1, "ORDER_NOT_OPEN", id="already-cancelled"),
    ],
)
def test_cancel_of_an_order_that_is_not_open_is_rejected(
    setup: list[str], target: int, code: str
) -> None:
    """Cancelling an unknown, filled or already cancelled order gives a reject event."""
    engine = new_engine()
    for step in setup:
        run(engine, {"sell": sell(10, 100), "fill": buy(10, 100, account="B"),
                     "cancel": cancel(1)}[step])
    before = engine.books[SYMBOL].state()
    assert run(engine, cancel(target)) == [("rejected", code)]
    assert engine.books[SYMBOL].state() == before


def test_cancel_of_another_accounts_order_is_rejected() -> None:
    """Only the owning account may cancel an order; another account is answered exactly as
    for an order that is not open (code and text), so a probe cannot tell a live order."""
    engine = new_engine()
    run(engine, sell(10, 100, account="A"), sell(10, 100, account="A"), cancel(2))
    foreign, closed = engine.apply([cancel(1, account="B"), cancel(2, account="B")])
    assert run(engine, cancel(1, account="B")) == [("rejected", "ORDER_NOT_OPEN")]
    assert isinstance(foreign, OrderRejected) and isinstance(closed, OrderRejected)
    assert (foreign.code, foreign.text.replace("order 1 ", "order N ")) == (
        closed.code, closed.text.replace("order 2 ", "order N "))
    assert book(engine)["SELL"] == [(1, 100, 10)]


def test_the_owner_still_hears_why_its_own_order_cannot_be_cancelled() -> None:
    """The owner's own reject keeps its meaning: not open (filled, cancelled) or unknown."""
    engine = new_engine()
    run(engine, sell(10, 100), cancel(1))
    (rejected,) = engine.apply([cancel(1)])
    assert isinstance(rejected, OrderRejected)
    assert rejected.code == RejectCode.ORDER_NOT_OPEN
    assert "filled, cancelled" in rejected.text and "'A'" in rejected.text
    assert run(engine, cancel(9)) == [("rejected", "UNKNOWN_ORDER")]


# ------------------------------------------------------------------ replace


def test_replace_down_in_quantity_at_the_same_price_keeps_priority() -> None:
    """Reducing the open quantity at the same price keeps the order's place in the queue."""
    engine = new_engine()
    run(engine, sell(30, 100), sell(10, 100))
    assert run(engine, replace(1, 100, 20)) == [("replaced", 1, 100, 20, True)]
    assert book(engine)["SELL"] == [(1, 100, 20), (2, 100, 10)]


def test_replace_to_a_new_price_goes_to_the_back_of_the_queue() -> None:
    """A price change loses time priority: the order queues last at its new price."""
    engine = new_engine()
    run(engine, sell(10, 105), sell(10, 100), sell(10, 100))
    assert run(engine, replace(1, 100, 10)) == [("replaced", 1, 100, 10, False)]
    assert book(engine)["SELL"] == [(2, 100, 10), (3, 100, 10), (1, 100, 10)]


def test_replace_up_in_quantity_goes_to_the_back_of_the_queue() -> None:
    """A quantity increase loses time priority, even at the same price."""
    engine = new_engine()
    run(engine, sell(10, 100), sell(10, 100))
    assert run(engine, replace(1, 100, 20)) == [("replaced", 1, 100, 20, False)]
    assert book(engine)["SELL"] == [(2, 100, 10), (1, 100, 20)]


def test_replace_that_crosses_trades_at_once() -> None:
    """A replace to a crossing price trades immediately; the remainder rests."""
    engine = new_engine()
    run(engine, sell(10, 100, account="B"), buy(30, 90))
    assert run(engine, replace(2, 100, 30)) == [
        ("replaced", 2, 100, 30, False),
        ("trade", 100, 10, 1, 2),
    ]
    assert book(engine) == {"BUY": [(2, 100, 20)], "SELL": []}


def test_replace_of_post_only_to_a_crossing_price_is_rejected() -> None:
    """A post-only order never takes: a replace that would cross is refused, order unchanged."""
    engine = new_engine()
    run(engine, sell(10, 100, account="B"), buy(10, 90, post_only=True))
    assert run(engine, replace(2, 100, 10)) == [("rejected", "POST_ONLY_WOULD_TAKE")]
    assert book(engine)["BUY"] == [(2, 90, 10)]


@pytest.mark.parametrize(
    ("price", "quantity", "code"),
    [
        (101, 10, "INVALID_PRICE"),
        (0, 10, "INVALID_PRICE"),
        (100, 0, "INVALID_QUANTITY"),
        (100, 15, "INVALID_QUANTITY"),
        (100, -10, "INVALID_QUANTITY"),
    ],
)
def test_replace_with_bad_values_is_rejected(price: int, quantity: int, code: str) -> None:
    """A replace with an off-tick or non-positive price or a bad quantity changes nothing."""
    engine = new_engine()
    run(engine, sell(10, 100))
    before = engine.books[SYMBOL].state()
    assert run(engine, replace(1, price, quantity)) == [("rejected", code)]
    assert engine.books[SYMBOL].state() == before


def test_replace_of_an_unknown_or_foreign_order_is_rejected() -> None:
    """Replace follows cancel's rules for unknown, closed and foreign orders (a foreign order
    is not open for the requester, whatever the replace's values)."""
    engine = new_engine()
    run(engine, sell(10, 100))
    assert run(engine, replace(7, 100, 10)) == [("rejected", "UNKNOWN_ORDER")]
    assert run(engine, replace(1, 100, 10, account="B")) == [("rejected", "ORDER_NOT_OPEN")]
    assert run(engine, replace(1, 101, 0, account="B")) == [("rejected", "ORDER_NOT_OPEN")]


# ------------------------------------------------------------------ self-trade prevention


def test_stp_none_lets_an_account_trade_with_itself() -> None:
    """Without self-trade prevention an account's orders trade with each other."""
    engine = new_engine()
    run(engine, sell(10, 100))
    assert run(engine, buy(10, 100)) == [("accepted", 2), ("trade", 100, 10, 1, 2)]


def test_stp_cancel_resting_cancels_own_orders_and_keeps_matching() -> None:
    """Cancel-resting removes the account's own resting orders it meets and trades on."""
    engine = new_engine()
    run(engine, sell(10, 100), sell(10, 100, account="B"))
    assert run(engine, buy(20, 100, stp=STP.CANCEL_RESTING)) == [
        ("accepted", 3),
        ("cancelled", 1, 10, "SELF_TRADE_PREVENTION"),
        ("trade", 100, 10, 2, 3),
    ]
    assert book(engine) == {"BUY": [(3, 100, 10)], "SELL": []}


def test_stp_cancel_aggressing_cancels_the_incoming_order() -> None:
    """Cancel-aggressing stops the incoming order at the first own order; that one stays."""
    engine = new_engine()
    run(engine, sell(10, 100, account="B"), sell(10, 100), sell(10, 100, account="B"))
    assert run(engine, buy(30, 100, stp=STP.CANCEL_AGGRESSING)) == [
        ("accepted", 4),
        ("trade", 100, 10, 1, 4),
        ("cancelled", 4, 20, "SELF_TRADE_PREVENTION"),
    ]
    assert book(engine) == {"BUY": [], "SELL": [(2, 100, 10), (3, 100, 10)]}


def test_stp_cancel_both_cancels_the_resting_and_the_incoming_order() -> None:
    """Cancel-both removes the own resting order and the incoming remainder."""
    engine = new_engine()
    run(engine, sell(10, 100), sell(10, 100, account="B"))
    assert run(engine, buy(30, 100, stp=STP.CANCEL_BOTH)) == [
        ("accepted", 3),
        ("cancelled", 1, 10, "SELF_TRADE_PREVENTION"),
        ("cancelled", 3, 30, "SELF_TRADE_PREVENTION"),
    ]
    assert book(engine) == {"BUY": [], "SELL": [(2, 100, 10)]}


# ------------------------------------------------------------------ queries and state


def test_l1_and_l2_report_best_prices_and_aggregated_depth() -> None:
    """L1 is the best bid and ask with size; L2 aggregates N levels per side, best first."""
    engine = new_engine()
    run(engine, buy(10, 95), buy(20, 95), buy(10, 90), buy(10, 85), sell(10, 100), sell(30, 110))
    orders = engine.books[SYMBOL]
    assert orders.l1() == ((95, 30), (100, 10))
    assert orders.l2(2) == ([(95, 30, 2), (90, 10, 1)], [(100, 10, 1), (110, 30, 1)])
    assert new_engine().books[SYMBOL].l1() == (None, None)


def test_state_hash_depends_on_the_book_not_on_the_path() -> None:
    """Equal books hash equal; cancelled and moved orders leave no residue in the hash."""
    one, two = new_engine(), new_engine()
    run(one, sell(10, 100), sell(10, 105), cancel(2), sell(10, 105))
    run(two, sell(10, 100), sell(10, 110), replace(2, 105, 10))
    # the same orders rest, but one engine has issued one more order id
    assert book(one)["SELL"] == [(1, 100, 10), (3, 105, 10)]
    assert book(two)["SELL"] == [(1, 100, 10), (2, 105, 10)]
    assert one.state_hash() != two.state_hash()
    three = MatchingEngine.from_state([INSTRUMENT], one.state())
    assert three.state_hash() == one.state_hash()
    three.check_invariants()


def test_check_invariants_catches_a_corrupted_level() -> None:
    """The invariant check is not vacuous: a wrong level total is reported."""
    engine = new_engine()
    run(engine, sell(10, 100))
    engine.books[SYMBOL].asks[100].total += 10
    with pytest.raises(AssertionError, match="total"):
        engine.check_invariants()


def test_quantities_and_prices_up_to_int64_max_work() -> None:
    """Prices and quantities at int64 max match exactly; a level never totals past int64."""
    big = Instrument(symbol="BIG", tick_size=1, lot_size=1)
    engine = new_engine(big)
    top = INT64_MAX
    events = run(
        engine,
        sell(top, top, symbol="BIG", account="S"),
        buy(top - 1, top, symbol="BIG"),
        sell(top, top, symbol="BIG", account="S"),
    )
    assert events == [
        ("accepted", 1),
        ("accepted", 2),
        ("trade", top, top - 1, 1, 2),
        ("rejected", "LEVEL_QUANTITY_OVERFLOW"),  # 1 left resting + top > int64 max
    ]
    assert run(engine, sell(top - 1, top, symbol="BIG", account="S")) == [("accepted", 3)]
    assert engine.books["BIG"].asks[top].total == top
    assert run(engine, sell(top + 1, top, symbol="BIG")) == [("rejected", "INVALID_QUANTITY")]
    assert run(engine, sell(1, top + 1, symbol="BIG")) == [("rejected", "INVALID_PRICE")]


# ------------------------------------------------------------------ the engine


def test_events_carry_a_gap_free_sequence_across_batches() -> None:
    """Every event of a shard gets the next sequence number, batch after batch."""
    engine = new_engine()
    first = engine.apply([sell(10, 100), buy(10, 100, account="B"), cancel(99)])
    second = engine.apply([buy(10, 95)])
    numbers = [event.seq for event in first + second]
    assert numbers == list(range(1, len(numbers) + 1))
    assert engine.next_seq == len(numbers) + 1


@pytest.mark.parametrize(
    ("command", "code"),
    [
        pytest.param(buy(0, 100), "INVALID_QUANTITY", id="zero-quantity"),
        pytest.param(buy(-10, 100), "INVALID_QUANTITY", id="negative-quantity"),
        pytest.param(buy(15, 100), "INVALID_QUANTITY", id="off-lot-quantity"),
        pytest.param(buy(10, 102), "INVALID_PRICE", id="off-tick-price"),
        pytest.param(buy(10, 0), "INVALID_PRICE", id="zero-price-limit"),
        pytest.param(buy(10, -5), "INVALID_PRICE", id="negative-price"),
        pytest.param(buy(10, 100, symbol="NOPE"), "UNKNOWN_SYMBOL", id="unknown-symbol"),
        pytest.param(cancel(1, symbol="NOPE"), "UNKNOWN_SYMBOL", id="cancel-unknown-symbol"),
        pytest.param(cancel(123456), "UNKNOWN_ORDER", id="unknown-order"),
        pytest.param(order(Side.BUY, 10, 100, tif=9), "INVALID_TIME_IN_FORCE", id="bad-tif"),  # type: ignore[arg-type]
        pytest.param(order(7, 10, 100), "INVALID_SIDE", id="bad-side"),  # type: ignore[arg-type]
    ],
)
def test_bad_commands_are_rejected_and_change_nothing(command: object, code: str) -> None:
    """A malformed command gives a reject event with its code, never an exception."""
    engine = new_engine()
    run(engine, sell(10, 105), buy(10, 95, account="B"))
    books_before = engine.books[SYMBOL].state()
    next_order_id = engine.next_order_id
    events = engine.apply([command])  # type: ignore[list-item]
    assert len(events) == 1 and isinstance(events[0], OrderRejected)
    assert events[0].code.name == code and events[0].text
    assert engine.books[SYMBOL].state() == books_before
    assert engine.next_order_id == next_order_id


def test_bad_order_type_is_rejected() -> None:
    """An order type other than LIMIT or MARKET is rejected."""
    engine = new_engine()
    bad = NewOrder(account="A", client_order_id="1", symbol=SYMBOL, side=Side.BUY, price=100,
                   quantity=10, order_type=9)  # type: ignore[arg-type]
    assert run(engine, bad) == [("rejected", "INVALID_ORDER_TYPE")]


def test_price_band_rejects_limit_prices_outside_it() -> None:
    """An instrument's price band bounds limit prices, inclusive at both ends."""
    banded = Instrument(symbol="B", tick_size=1, lot_size=1, min_price=90, max_price=110)
    engine = new_engine(banded)
    assert run(engine, buy(1, 89, symbol="B"), buy(1, 90, symbol="B"),
               sell(1, 110, symbol="B"), sell(1, 111, symbol="B")) == [
        ("rejected", "PRICE_OUT_OF_BAND"),
        ("accepted", 1),
        ("accepted", 2),
        ("rejected", "PRICE_OUT_OF_BAND"),
    ]


def test_level_changes_close_each_batch() -> None:
    """Each batch ends with one L2 delta per level whose total or order count changed."""
    engine = new_engine()
    events = run(engine, sell(10, 100), sell(20, 100), buy(10, 95), cancel(3), levels=True)
    assert events[-1:] == [("level", "SELL", 100, 30, 2)]
    events = run(engine, buy(10, 100, account="B"), buy(10, 90), levels=True)
    assert [e for e in events if e[0] == "level"] == [
        ("level", "BUY", 90, 10, 1),
        ("level", "SELL", 100, 20, 1),
    ]
    assert run(engine, cancel(2), levels=True)[-1] == ("level", "SELL", 100, 0, 0)


def test_level_changes_rebuild_the_l2_picture() -> None:
    """Applying the level changes of every batch in order reproduces the book's depth."""
    engine = new_engine()
    picture: dict[tuple[Side, int], int] = {}
    batches = [
        [sell(10, 100), sell(20, 105), buy(10, 90)],
        [buy(30, 105, account="B"), cancel(3)],
        [replace(2, 110, 10), sell(10, 95, market=False)],
    ]
    for batch in batches:
        for event in engine.apply(batch):
            if isinstance(event, LevelChanged):
                if event.quantity:
                    picture[(event.side, event.price)] = event.quantity
                else:
                    picture.pop((event.side, event.price), None)
    bids, asks = engine.books[SYMBOL].l2(100)
    expected = {(Side.BUY, p): q for p, q, _ in bids} | {(Side.SELL, p): q for p, q, _ in asks}
    assert picture == expected


def test_engine_refuses_what_is_not_a_command() -> None:
    """Passing something that is not a command is a bug in the caller: TypeError."""
    engine = new_engine()

    class Other:
        symbol = SYMBOL

    with pytest.raises(TypeError):
        engine.apply([Other()])  # type: ignore[list-item]


def test_order_ids_carry_the_shard() -> None:
    """Order ids are unique across shards: the shard id sits in the high bits."""
    engine = MatchingEngine([INSTRUMENT], shard_id=3)
    events = engine.apply([sell(10, 100)])
    assert events[0].order_id == (3 << 40) + 1  # type: ignore[union-attr]
    assert isinstance(
        engine.apply([CancelOrder(account="A", client_order_id="x", symbol=SYMBOL, order_id=1)])[0],
        OrderRejected,
    )


def test_market_gtc_behaves_like_ioc() -> None:
    """A market order never rests: with GTC its remainder is cancelled like IOC."""
    engine = new_engine()
    run(engine, sell(10, 100))
    market = NewOrder(account="B", client_order_id="m", symbol=SYMBOL, side=Side.BUY,
                      quantity=20, order_type=OrderType.MARKET, time_in_force=GTC)
    assert run(engine, market) == [
        ("accepted", 2),
        ("trade", 100, 10, 1, 2),
        ("cancelled", 2, 10, "MARKET_REMAINDER"),
    ]


def test_reject_codes_name_their_stage() -> None:
    """Reject codes are grouped by the stage that refuses: 2xx risk, 3xx matching (the gateway
    refuses with a gRPC status instead)."""
    assert RejectCode.RISK_PRICE_COLLAR.stage == "risk"
    assert RejectCode.FOK_NOT_FILLABLE.stage == "matching"


# ------------------------------------------------------------------ admin commands

OTHER = Instrument(symbol="OTH", tick_size=5, lot_size=10)


def test_mass_cancel_cancels_the_accounts_orders_in_one_symbol_or_all() -> None:
    """Mass cancel removes every resting order of the account (one symbol, or all), oldest
    first, and leaves other accounts alone."""
    engine = new_engine(INSTRUMENT, OTHER)
    run(engine, sell(10, 100), sell(10, 105, account="B"), buy(10, 90),
        buy(10, 90, symbol="OTH"))
    events = run(engine, MassCancel(account="A", client_order_id="m1", symbol=SYMBOL))
    assert events == [("cancelled", 1, 10, "MASS_CANCEL"), ("cancelled", 3, 10, "MASS_CANCEL")]
    assert run(engine, MassCancel(account="A", client_order_id="m2")) == [
        ("cancelled", 4, 10, "MASS_CANCEL")
    ]
    assert book(engine) == {"BUY": [], "SELL": [(2, 105, 10)]}


def test_kill_switch_event_comes_first_then_the_accounts_orders_are_cancelled() -> None:
    """Engaging a kill switch is an event, followed by cancels of all the account's orders."""
    engine = new_engine(INSTRUMENT, OTHER)
    run(engine, sell(10, 100), buy(10, 90, symbol="OTH"), sell(10, 105, account="B"))
    events = engine.apply([SetKillSwitch(account="A", engaged=True)])
    assert [type(event).__name__ for event in events[:3]] == [
        "KillSwitchSet", "OrderCancelled", "OrderCancelled"
    ]
    assert {event.reason for event in events[1:3]} == {CancelReason.KILL_SWITCH}  # type: ignore[union-attr]
    assert engine.apply([SetKillSwitch(account="A", engaged=False)])[0] == KillSwitchSet(
        seq=events[-1].seq + 1, ts_ns=0, account="A", engaged=False
    )


def test_halt_and_limits_are_events_and_unknown_symbols_are_rejected() -> None:
    """Halts and limit changes are journaled events; naming an unknown symbol is rejected."""
    engine = new_engine()
    events = engine.apply([
        SetSymbolHalt(symbol=SYMBOL, halted=True),
        SetSymbolHalt(symbol="NOPE", halted=True),
        SetRiskLimits(account="A", limits=RiskLimitsConfig(max_open_orders=3)),
    ])
    assert isinstance(events[0], SymbolHaltSet) and events[0].halted
    assert isinstance(events[1], OrderRejected)
    assert events[1].code == RejectCode.UNKNOWN_SYMBOL and events[1].request.name == "ADMIN"
    assert isinstance(events[2], RiskLimitsSet) and events[2].limits.max_open_orders == 3


# ------------------------------------------------------------------ idempotency


def test_a_resubmitted_request_is_answered_as_a_duplicate_naming_the_original() -> None:
    """Within the window, the same (account, client order id) again is a duplicate reject
    naming the order it created or named; nothing is applied twice."""
    engine = MatchingEngine([INSTRUMENT], client_order_id_window=3)
    new = sell(10, 100)
    events = engine.apply([new, new])
    assert [type(e).__name__ for e in events[:2]] == ["OrderAccepted", "OrderRejected"]
    assert events[1].code == RejectCode.DUPLICATE_CLIENT_ORDER_ID  # type: ignore[union-attr]
    assert events[1].order_id == 1  # type: ignore[union-attr]
    request = cancel(1)
    first, again = engine.apply([request]), engine.apply([request])
    assert first[0].reason == CancelReason.USER  # type: ignore[union-attr]
    assert again[0].code == RejectCode.DUPLICATE_CLIENT_ORDER_ID  # type: ignore[union-attr]
    refused = buy(15, 100)  # off-lot: rejected, and its id is spent all the same
    engine.apply([refused])
    assert engine.apply([refused])[0].order_id == 0  # type: ignore[union-attr]


def test_the_idempotency_window_forgets_the_oldest_and_survives_a_snapshot() -> None:
    """The window is bounded (oldest forgotten first) and part of the snapshot state."""
    engine = MatchingEngine([INSTRUMENT], client_order_id_window=2)
    orders = [sell(10, 100 + 5 * i) for i in range(3)]
    engine.apply(orders)
    restored = MatchingEngine.from_state([INSTRUMENT], engine.state(), client_order_id_window=2)
    for candidate in (engine, restored):
        replies = candidate.apply([orders[0], orders[2]])
        assert type(replies[0]).__name__ == "OrderAccepted"  # forgotten: a new order
        assert replies[1].code == RejectCode.DUPLICATE_CLIENT_ORDER_ID  # type: ignore[union-attr]
