"""Position ledger: one rule per golden test, then a property test against exact fractions.

Trades are written as "A buys 10 @ 100 from B": A is the buyer, B the seller; unless a test
says otherwise the buyer is the taker (aggressor). The tables state, after each trade, the
figures of the accounts the rule is about: net quantity, cost basis, realized PnL.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from fractions import Fraction

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from actors.core.positions import LedgerState, PositionLedger
from protocols.messages import (
    INT64_MAX,
    CancelReason,
    Event,
    Instrument,
    KillSwitchSet,
    OrderAccepted,
    OrderCancelled,
    OrderType,
    Side,
    TimeInForce,
    Trade,
)

XYZ = Instrument(symbol="XYZ")
FEES = Instrument(symbol="FEE", maker_fee_bps=-2, taker_fee_bps=7)
INSTRUMENTS = [XYZ, FEES]
_seq = itertools.count(1)


def trade(
    buyer: str, quantity: int, price: int, seller: str, *, symbol: str = "XYZ",
    buyer_takes: bool = True,
) -> Trade:
    """A trade of ``quantity`` at ``price``; the buyer is the taker unless told otherwise."""
    maker, taker = (seller, buyer) if buyer_takes else (buyer, seller)
    return Trade(
        seq=next(_seq), ts_ns=0, symbol=symbol, price=price, quantity=quantity,
        aggressor_side=Side.BUY if buyer_takes else Side.SELL,
        maker_order_id=1, maker_account=maker, maker_client_order_id="m", maker_leaves=0,
        taker_order_id=2, taker_account=taker, taker_client_order_id="t", taker_leaves=0,
    )


def ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def figures(ledger: PositionLedger, account: str, symbol: str = "XYZ") -> tuple[int, int, int]:
    position = ledger.position(account, symbol)
    return position.net_quantity, position.cost, position.realized_pnl


def play(
    table: list[tuple[Trade, tuple[int, int, int]]], account: str = "A"
) -> PositionLedger:
    """Fold each row's trade; check the account's (net, cost, realized) and the invariants."""
    ledger = PositionLedger(INSTRUMENTS)
    for row, (event, expected) in enumerate(table, 1):
        ledger.observe([event])
        ledger.check_invariants()
        assert figures(ledger, account, event.symbol) == expected, f"row {row}"
    return ledger


# ------------------------------------------------------------------ average cost


def test_opening_and_adding_sum_the_cost_basis() -> None:
    """Buying from flat or adding to a position adds quantity x price to the basis; the
    average entry is the exact ratio cost / net."""
    ledger = play([
        #  trade                      net   cost  realized
        (trade("A", 10, 100, "B"),   (10,  1_000, 0)),
        (trade("A", 20, 103, "B"),   (30,  3_060, 0)),
        (trade("A", 1, 101, "B"),    (31,  3_161, 0)),
    ])
    assert ledger.position("A", "XYZ").average_entry_price() == Fraction(3_161, 31)
    assert figures(ledger, "B") == (-31, -3_161, 0)
    assert ledger.position("B", "XYZ").average_entry_price() == Fraction(3_161, 31)
    assert ledger.position("C", "XYZ").average_entry_price() is None


def test_partial_closes_realize_rounded_down_and_the_residue_waits_for_the_close() -> None:
    """A partial close removes the ceiling of its share of the basis, so its realized PnL is
    rounded down (long or short); closing the rest realizes the residue, so the life of the
    position realizes exactly what its cash flows say."""
    #  trade                      A: net  cost  realized     B: net  cost  realized
    table = [
        (trade("A", 1, 100, "B"),    (1, 100, 0),               (-1, -100, 0)),
        (trade("A", 2, 101, "B"),    (3, 302, 0),               (-3, -302, 0)),
        # the share of the basis is 100 2/3: the long realizes 1 (not 1 1/3), the short
        # -2 (not -1 1/3)
        (trade("B", 1, 102, "A"),    (2, 201, 1),               (-2, -202, -2)),
        (trade("B", 1, 102, "A"),    (1, 100, 2),               (-1, -101, -3)),
        (trade("B", 1, 102, "A"),    (0, 0, 4),                 (0, 0, -4)),
    ]
    ledger = PositionLedger(INSTRUMENTS)
    for row, (event, a_figures, b_figures) in enumerate(table, 1):
        ledger.observe([event])
        ledger.check_invariants()
        assert (figures(ledger, "A"), figures(ledger, "B")) == (a_figures, b_figures), row
    # 3 bought for 302, sold for 306
    assert ledger.position("A", "XYZ").realized_pnl == 3 * 102 - 302


def test_a_full_close_realizes_the_whole_remaining_basis() -> None:
    """Closing a position to zero realizes exit value minus the entire basis, leaving none."""
    play([
        (trade("A", 1, 100, "B"),    (1, 100, 0)),
        (trade("A", 2, 101, "B"),    (3, 302, 0)),
        (trade("B", 3, 110, "A"),    (0, 0, 28)),
    ])


def test_a_flip_closes_the_old_side_and_opens_the_new_one_at_the_trade_price() -> None:
    """A trade larger than the position closes it completely and opens the remainder on the
    other side, at the trade price."""
    play([
        #  trade                      net   cost    realized
        (trade("A", 10, 100, "B"),   (10,  1_000,  0)),
        (trade("B", 25, 110, "A"),   (-15, -1_650, 100)),
        (trade("A", 5, 100, "B"),    (-10, -1_100, 150)),
        (trade("A", 20, 90, "B"),    (10,  900,    350)),
    ])


def test_unrealized_pnl_marks_every_position_at_the_symbols_last_trade() -> None:
    """Unrealized PnL is net x mark - cost, with the mark the symbol's last trade price,
    whoever traded; gross PnL sums to zero over the accounts."""
    ledger = PositionLedger(INSTRUMENTS)
    ledger.observe([trade("A", 10, 100, "B"), trade("C", 1, 105, "B")])
    ledger.observe([trade("C", 1, 1, "B", symbol="FEE")])
    #  account  net  cost    unrealized
    table = [
        ("A",    10,  1_000,  50),
        ("B",    -11, -1_105, -50),
        ("C",    1,   105,    0),
    ]
    for account, net, cost, unrealized in table:
        position = ledger.position(account, "XYZ")
        assert (position.net_quantity, position.cost, position.unrealized_pnl) == (
            net, cost, unrealized
        ), account
        assert position.mark_price == 105
    totals = ledger.symbol_totals("XYZ")
    assert (totals.realized_pnl, totals.unrealized_pnl, totals.open_interest) == (0, 0, 11)
    assert ledger.position("D", "XYZ").unrealized_pnl == 0


# ------------------------------------------------------------------ fees


def test_fees_charge_the_maker_and_the_taker_rate_rounded_up() -> None:
    """The maker pays notional x maker_fee_bps / 10000 and the taker the taker rate, each
    rounded up: a fee is never undercharged, a rebate (negative rate) rounds towards zero."""
    #  quantity price   notional  maker fee (-2 bps)  taker fee (7 bps)
    table = [
        (3,       12_345, 37_035,   -7,                 26),   # -7.407 and 25.9245
        (1,       10_000, 10_000,   -2,                 7),    # exact
        (1,       1,      1,        0,                  1),    # -0.0002 and 0.0007
    ]
    for quantity, price, notional, maker_fee, taker_fee in table:
        ledger = PositionLedger(INSTRUMENTS)
        ledger.observe([trade("T", quantity, price, "M", symbol="FEE")])
        taker, maker = ledger.position("T", "FEE"), ledger.position("M", "FEE")
        assert (taker.traded_notional, maker.traded_notional) == (notional, notional)
        assert (maker.fees, taker.fees) == (maker_fee, taker_fee), (quantity, price)


def test_fees_follow_the_role_not_the_side() -> None:
    """Whoever rests pays the maker rate and whoever aggresses the taker rate, buyer or
    seller; realized PnL is gross of fees."""
    ledger = PositionLedger(INSTRUMENTS)
    ledger.observe([
        trade("A", 1, 10_000, "B", symbol="FEE"),                     # A takes: 7
        trade("B", 1, 10_000, "A", symbol="FEE", buyer_takes=False),  # A sells, takes: 7
        trade("A", 1, 10_000, "B", symbol="FEE", buyer_takes=False),  # A buys, rests: -2
    ])
    assert ledger.position("A", "FEE").fees == 12
    assert ledger.position("B", "FEE").fees == -4 + 7
    assert ledger.symbol_totals("FEE").fees == 12 + 3


# ------------------------------------------------------------------ edges


def test_int64_sized_values_stay_exact_integers() -> None:
    """Prices and quantities at the int64 limit give exact integer notionals, bases, PnL and
    fees far beyond 64 bits; the snapshot carries them exactly."""
    price = quantity = INT64_MAX
    third = quantity // 3
    ledger = PositionLedger(INSTRUMENTS)
    ledger.observe([trade("A", quantity, price, "B", symbol="FEE")])
    ledger.observe([trade("B", third, price - 1, "A", symbol="FEE")])
    ledger.check_invariants()
    position = ledger.position("A", "FEE")
    assert position.net_quantity == quantity - third
    assert position.cost == quantity * price - third * price
    assert position.realized_pnl == -third
    assert position.traded_notional == quantity * price + third * (price - 1)
    # A took the first trade (7 bps) and rested in the second (-2 bps)
    assert position.fees == ceil_div(quantity * price * 7, 10_000) + ceil_div(
        third * (price - 1) * -2, 10_000
    )
    assert position.unrealized_pnl == (quantity - third) * (price - 1) - position.cost
    assert all(type(value) is int for value in msgspec.structs.astuple(position)[2:])
    encoded = msgspec.msgpack.encode(ledger.state())
    restored = PositionLedger.from_state(
        INSTRUMENTS, msgspec.msgpack.decode(encoded, type=LedgerState)
    )
    assert restored.state_hash() == ledger.state_hash()
    assert restored.position("A", "FEE") == position
    ledger.observe([trade("B", quantity - third, 1, "A", symbol="FEE")])
    ledger.check_invariants()
    assert ledger.position("A", "FEE").realized_pnl == (
        third * (price - 1) + (quantity - third) * 1 - quantity * price
    )


def test_a_self_trade_pays_fees_and_counts_volume_but_moves_nothing() -> None:
    """When one account is on both sides, it pays both fees and both sides count as its
    volume; position, basis and realized PnL do not change."""
    ledger = PositionLedger(INSTRUMENTS)
    ledger.observe([trade("A", 3, 100, "B", symbol="FEE")])
    before = ledger.position("A", "FEE")
    ledger.observe([trade("A", 2, 10_000, "A", symbol="FEE")])
    after = ledger.position("A", "FEE")
    assert (after.net_quantity, after.cost, after.realized_pnl) == (3, 300, 0)
    assert after.traded_quantity == before.traded_quantity + 4
    assert after.fees == before.fees + 14 - 4
    ledger.check_invariants()


def test_only_trades_change_the_ledger() -> None:
    """Events other than trades are ignored, and ``start`` skips the events before it."""
    ledger = PositionLedger(INSTRUMENTS)
    before = ledger.state_hash()
    others: list[Event] = [
        OrderAccepted(seq=1, ts_ns=0, symbol="XYZ", order_id=1, account="A",
                      client_order_id="c", side=Side.BUY, order_type=OrderType.LIMIT,
                      time_in_force=TimeInForce.GTC, price=100, quantity=1),
        OrderCancelled(seq=2, ts_ns=0, symbol="XYZ", order_id=1, account="A",
                       client_order_id="c", side=Side.BUY, price=100, quantity=1,
                       reason=CancelReason.USER),
        KillSwitchSet(seq=3, ts_ns=0, account="A", engaged=True),
    ]
    ledger.observe(others)
    ledger.observe([trade("A", 1, 100, "B"), *others], start=1)
    assert ledger.state_hash() == before
    assert ledger.accounts() == [] and ledger.symbols() == []


def test_queries_list_positions_per_account_and_totals_per_symbol() -> None:
    """positions(account) lists each symbol the account traded; symbol_totals sums a symbol
    over accounts, counting each trade's volume once."""
    ledger = PositionLedger(INSTRUMENTS)
    ledger.observe([
        trade("A", 10, 100, "B"),
        trade("C", 4, 101, "A"),
        trade("A", 1, 10_000, "C", symbol="FEE"),
    ])
    assert [(p.symbol, p.net_quantity) for p in ledger.positions("A")] == [("FEE", 1), ("XYZ", 6)]
    assert ledger.accounts() == ["A", "B", "C"]
    assert ledger.symbols() == ["FEE", "XYZ"]
    totals = ledger.symbol_totals("XYZ")
    assert (totals.volume, totals.notional, totals.open_interest, totals.accounts) == (
        14, 1_404, 10, 3
    )
    assert (totals.mark_price, ledger.mark_price("XYZ"), ledger.mark_price("NOPE")) == (
        101, 101, None
    )


# ------------------------------------------------------------------ random trades

ACCOUNTS = ["A", "B", "C"]


def trade_from_bytes(data: bytes) -> Trade:
    """Turn 5 random bytes into a trade; accounts may meet themselves."""
    buyer, seller, quantity, price, shape = data
    return trade(
        ACCOUNTS[buyer % 3], 1 + quantity % 20, 90 + price % 21, ACCOUNTS[seller % 3],
        symbol=("XYZ", "FEE")[shape % 2], buyer_takes=shape % 4 < 2,
    )


trades = st.lists(st.binary(min_size=5, max_size=5).map(trade_from_bytes), max_size=80)


class Exact:
    """Average cost kept as an exact fraction: the textbook method without rounding."""

    def __init__(self) -> None:
        self.net = 0
        self.average = Fraction(0)
        self.realized = Fraction(0)
        self.cash = 0
        self.partial_closes = 0
        """Partial closes since the position was last flat (each may round once)."""

    def fill(self, change: int, price: int) -> None:
        self.cash -= change * price
        if self.net == 0 or (self.net > 0) == (change > 0):
            total = self.average * abs(self.net) + abs(change) * price
            self.net += change
            self.average = total / abs(self.net)
            return
        closed = min(abs(change), abs(self.net))
        direction = 1 if self.net > 0 else -1
        self.realized += closed * (price - self.average) * direction
        if abs(change) < abs(self.net):
            self.partial_closes += 1
        else:  # closed, perhaps flipped: whatever is left opened at this price
            self.partial_closes = 0
            self.average = Fraction(price)
        self.net += change


@given(trades, st.integers(0, 80))
def test_realized_pnl_is_exact_over_a_positions_life_and_never_ahead_of_the_exact_method(
    flow: list[Trade], cut: int,
) -> None:
    """Against exact fractions: positions agree; realized PnL is never above the exact
    average-cost figure, by less than one price unit per partial close, and equal whenever
    the position is flat; realized - cost is the cash paid and received; fees are the rounded
    up sums; the ledger conserves; a snapshot mid-way continues to the same hash."""
    ledger = PositionLedger(INSTRUMENTS)
    exact: defaultdict[tuple[str, str], Exact] = defaultdict(Exact)
    fees: Counter[tuple[str, str]] = Counter()
    rates = {instrument.symbol: instrument for instrument in INSTRUMENTS}
    restored: PositionLedger | None = None
    for number, event in enumerate(flow):
        if number == cut:
            restored = PositionLedger.from_state(
                INSTRUMENTS,
                msgspec.msgpack.decode(msgspec.msgpack.encode(ledger.state()), type=LedgerState),
            )
        ledger.observe([event])
        if restored is not None:
            restored.observe([event])
        buying_taker = event.aggressor_side == Side.BUY
        buyer = event.taker_account if buying_taker else event.maker_account
        seller = event.maker_account if buying_taker else event.taker_account
        if buyer != seller:
            exact[buyer, event.symbol].fill(event.quantity, event.price)
            exact[seller, event.symbol].fill(-event.quantity, event.price)
        notional = event.price * event.quantity
        instrument = rates[event.symbol]
        fees[event.maker_account, event.symbol] += ceil_div(
            notional * instrument.maker_fee_bps, 10_000
        )
        fees[event.taker_account, event.symbol] += ceil_div(
            notional * instrument.taker_fee_bps, 10_000
        )
        ledger.check_invariants()
        for (account, symbol), reference in exact.items():
            position = ledger.position(account, symbol)
            assert position.net_quantity == reference.net
            assert position.realized_pnl - position.cost == reference.cash
            behind = reference.realized - position.realized_pnl
            assert behind >= 0, (account, symbol)
            assert behind < reference.partial_closes or behind == 0, (account, symbol)
            if reference.net == 0:
                assert position.realized_pnl == reference.realized
        for (account, symbol), paid in fees.items():
            assert ledger.position(account, symbol).fees == paid
    if restored is not None:
        assert restored.state_hash() == ledger.state_hash()
