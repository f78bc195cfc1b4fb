"""Positions and profit and loss of one shard's accounts, folded from the shard's trades.

The shard's reader (`actors.projections.ShardReader`) folds the shard's event log; this module
is the pure state machine inside it, so positions are rebuilt by replay, tested without Ray and
benchmarked alone. Only `Trade` events change it.

Per (account, symbol) the ledger keeps, in integers:

* the **net quantity**: positive long, negative short;
* the **cost basis**: signed like the net quantity, in price units x quantity, so the average
  entry price is ``cost / net_quantity`` (exact as a ratio, see `Position.average_entry_price`);
* the **realized PnL**, gross of fees; the **fees** paid; the **traded quantity** and **traded
  notional** (price x quantity) of both sides of the account's trades.

Average-cost method. A trade in the direction of the position (or from flat) adds its quantity
and ``quantity x price`` to the basis. A trade against it closes ``closed`` units and realizes
``closed x price`` (signed by the position) minus the share of the basis the closed units held.
That share, ``cost x closed / |net|``, is rarely whole; the ledger removes its **ceiling**
(towards positive infinity), which is the same as rounding the realized PnL of a partial close
**down** (towards negative infinity) to a whole price unit, long or short. The residue stays in
the basis; closing the rest of the position removes the whole remaining basis, so the realized
PnL over a position's life is exact: at every moment ``realized - cost`` equals the cash the
account's trades in the symbol paid and received. A trade bigger than the position closes it
completely and opens the remainder on the other side at the trade price.

Fees: the maker pays ``notional x maker_fee_bps / 10000`` and the taker ``notional x
taker_fee_bps / 10000``, each rounded **up** (the venue never undercharges; a rebate, a
negative rate, is rounded towards zero). Rates come from each symbol's `Instrument`.

A self-trade (one account on both sides) pays both fees and counts both sides as volume, but
moves neither the position nor the basis: it changes nothing the account owns.

Marks: the mark price of a symbol is its last trade price; unrealized PnL is
``net_quantity x mark - cost``. Summed over the accounts of a symbol, net quantities are zero
and realized plus unrealized PnL is zero (gross of fees): `check_invariants` holds both.

Money in the snapshot (`LedgerState`) is written as decimal strings: a price times a quantity
of two 64-bit values, and any sum of such, outgrows the 64-bit integers MessagePack carries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from fractions import Fraction

import msgspec

from protocols.messages import Event, Instrument, Side, Trade

_BUY = Side.BUY


class Position(msgspec.Struct, frozen=True, kw_only=True):
    """An account's position in one symbol, marked at the symbol's last trade price."""

    account: str
    symbol: str
    net_quantity: int
    """Positive long, negative short."""
    cost: int
    """Open cost basis in price units x quantity, signed like ``net_quantity``."""
    realized_pnl: int
    """Realized profit and loss, gross of fees."""
    unrealized_pnl: int
    """``net_quantity x mark_price - cost``; 0 when flat."""
    mark_price: int | None
    """Last trade price in the symbol; None before the first trade."""
    traded_quantity: int
    traded_notional: int
    fees: int
    """Fees paid (negative: rebates received)."""

    def average_entry_price(self) -> Fraction | None:
        """Return the exact average entry price (for display), or None when flat."""
        return Fraction(self.cost, self.net_quantity) if self.net_quantity else None


class SymbolTotals(msgspec.Struct, frozen=True, kw_only=True):
    """One symbol's figures over every account in the shard."""

    symbol: str
    mark_price: int | None
    volume: int
    """Quantity traded, each trade counted once."""
    notional: int
    """Price x quantity traded, each trade counted once."""
    open_interest: int
    """Sum of the long positions (equal to the sum of the short ones)."""
    fees: int
    realized_pnl: int
    unrealized_pnl: int
    """Always ``-realized_pnl``: trading is zero-sum before fees."""
    accounts: int
    """Accounts that have traded the symbol."""


class LedgerEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One (account, symbol) of the snapshot; money as decimal strings (see the module)."""

    account: str
    symbol: str
    net_quantity: int
    cost: str
    realized_pnl: str
    traded_quantity: int
    traded_notional: str
    fees: str


class LedgerSymbol(msgspec.Struct, frozen=True, kw_only=True):
    """One symbol of the snapshot."""

    symbol: str
    mark_price: int
    volume: int
    notional: str


class LedgerState(msgspec.Struct, frozen=True, kw_only=True):
    """Canonical state of a `PositionLedger`: the body of its snapshot and `state_hash`."""

    entries: list[LedgerEntry]
    """Sorted by account, then symbol."""
    symbols: list[LedgerSymbol]
    """Sorted by symbol."""


class _Holding:
    """Mutable figures of one (account, symbol)."""

    __slots__ = ("cost", "fees", "net", "realized", "traded_notional", "traded_quantity")

    def __init__(self) -> None:
        self.net = 0
        self.cost = 0
        self.realized = 0
        self.traded_quantity = 0
        self.traded_notional = 0
        self.fees = 0


class _Market:
    """Mutable figures of one symbol."""

    __slots__ = ("mark", "notional", "volume")

    def __init__(self, mark: int) -> None:
        self.mark = mark
        self.volume = 0
        self.notional = 0


def _fill(holding: _Holding, change: int, price: int) -> None:
    """Move a holding's position by ``change`` (signed) at ``price``."""
    net = holding.net
    if not net or (net > 0) == (change > 0):
        holding.net = net + change
        holding.cost += change * price
        return
    size = net if net > 0 else -net
    closed = -change if change < 0 else change
    if closed < size:
        cost = holding.cost
        removed = -((-cost * closed) // size)  # ceiling: the realized PnL rounds down
        holding.realized += -change * price - removed
        holding.cost = cost - removed
        holding.net = net + change
        return
    holding.realized += net * price - holding.cost
    rest = net + change
    holding.net = rest
    holding.cost = rest * price


class PositionLedger:
    """Keep every account's positions, PnL, volume and fees in the shard's symbols."""

    def __init__(self, instruments: Iterable[Instrument]) -> None:
        self._fee_bps: dict[str, tuple[int, int]] = {
            instrument.symbol: (instrument.maker_fee_bps, instrument.taker_fee_bps)
            for instrument in instruments
        }
        self._holdings: dict[str, dict[str, _Holding]] = {}
        self._markets: dict[str, _Market] = {}

    def observe(self, events: Sequence[Event], start: int = 0) -> None:
        """Fold the trades among ``events[start:]``; ignore every other event.

        Raise `KeyError` for a trade in a symbol the ledger has no instrument for: the ledger
        was built for another shard, a wiring bug.
        """
        holdings = self._holdings
        for event in events[start:]:
            if type(event) is not Trade:
                continue
            symbol = event.symbol
            price = event.price
            quantity = event.quantity
            notional = price * quantity
            maker_bps, taker_bps = self._fee_bps[symbol]

            per_account = holdings.get(event.maker_account)
            if per_account is None:
                per_account = holdings[event.maker_account] = {}
            maker = per_account.get(symbol)
            if maker is None:
                maker = per_account[symbol] = _Holding()
            per_account = holdings.get(event.taker_account)
            if per_account is None:
                per_account = holdings[event.taker_account] = {}
            taker = per_account.get(symbol)
            if taker is None:
                taker = per_account[symbol] = _Holding()

            if maker_bps:
                maker.fees -= (-notional * maker_bps) // 10_000
            if taker_bps:
                taker.fees -= (-notional * taker_bps) // 10_000
            maker.traded_quantity += quantity
            maker.traded_notional += notional
            taker.traded_quantity += quantity
            taker.traded_notional += notional
            if maker is not taker:
                if event.aggressor_side == _BUY:
                    _fill(taker, quantity, price)
                    _fill(maker, -quantity, price)
                else:
                    _fill(maker, quantity, price)
                    _fill(taker, -quantity, price)

            market = self._markets.get(symbol)
            if market is None:
                market = self._markets[symbol] = _Market(price)
            market.mark = price
            market.volume += quantity
            market.notional += notional

    # ---------------------------------------------------------------- queries

    def position(self, account: str, symbol: str) -> Position:
        """Return an account's position in a symbol (all zero if it never traded it)."""
        holding = self._holdings.get(account, {}).get(symbol) or _Holding()
        market = self._markets.get(symbol)
        mark = market.mark if market is not None else None
        return Position(
            account=account,
            symbol=symbol,
            net_quantity=holding.net,
            cost=holding.cost,
            realized_pnl=holding.realized,
            unrealized_pnl=holding.net * mark - holding.cost if mark is not None else 0,
            mark_price=mark,
            traded_quantity=holding.traded_quantity,
            traded_notional=holding.traded_notional,
            fees=holding.fees,
        )

    def positions(self, account: str) -> list[Position]:
        """Return an account's positions in every symbol it traded, sorted by symbol."""
        return [
            self.position(account, symbol) for symbol in sorted(self._holdings.get(account, {}))
        ]

    def all_positions(self) -> list[Position]:
        """Return every account's positions, sorted by account, then symbol."""
        return [
            position for account in sorted(self._holdings) for position in self.positions(account)
        ]

    def accounts(self) -> list[str]:
        """Return every account that has traded, sorted."""
        return sorted(self._holdings)

    def symbols(self) -> list[str]:
        """Return every symbol that has traded, sorted."""
        return sorted(self._markets)

    def mark_price(self, symbol: str) -> int | None:
        """Return the symbol's last trade price, or None before its first trade."""
        market = self._markets.get(symbol)
        return market.mark if market is not None else None

    def symbol_totals(self, symbol: str) -> SymbolTotals:
        """Return one symbol's volume, open interest, fees and PnL over all accounts."""
        market = self._markets.get(symbol)
        held = [
            per_account[symbol] for per_account in self._holdings.values() if symbol in per_account
        ]
        mark = market.mark if market is not None else 0
        return SymbolTotals(
            symbol=symbol,
            mark_price=market.mark if market is not None else None,
            volume=market.volume if market is not None else 0,
            notional=market.notional if market is not None else 0,
            open_interest=sum(holding.net for holding in held if holding.net > 0),
            fees=sum(holding.fees for holding in held),
            realized_pnl=sum(holding.realized for holding in held),
            unrealized_pnl=sum(holding.net * mark - holding.cost for holding in held),
            accounts=len(held),
        )

    # ---------------------------------------------------------------- snapshots

    def state(self) -> LedgerState:
        """Return the canonical state (immutable, safe to keep or encode)."""
        return LedgerState(
            entries=[
                LedgerEntry(
                    account=account,
                    symbol=symbol,
                    net_quantity=holding.net,
                    cost=str(holding.cost),
                    realized_pnl=str(holding.realized),
                    traded_quantity=holding.traded_quantity,
                    traded_notional=str(holding.traded_notional),
                    fees=str(holding.fees),
                )
                for account in sorted(self._holdings)
                for symbol, holding in sorted(self._holdings[account].items())
            ],
            symbols=[
                LedgerSymbol(
                    symbol=symbol,
                    mark_price=market.mark,
                    volume=market.volume,
                    notional=str(market.notional),
                )
                for symbol, market in sorted(self._markets.items())
            ],
        )

    @classmethod
    def from_state(cls, instruments: Iterable[Instrument], state: LedgerState) -> PositionLedger:
        """Build a ledger holding exactly ``state`` (a snapshot)."""
        ledger = cls(instruments)
        for entry in state.entries:
            holding = _Holding()
            holding.net = entry.net_quantity
            holding.cost = int(entry.cost)
            holding.realized = int(entry.realized_pnl)
            holding.traded_quantity = entry.traded_quantity
            holding.traded_notional = int(entry.traded_notional)
            holding.fees = int(entry.fees)
            ledger._holdings.setdefault(entry.account, {})[entry.symbol] = holding
        for symbol_entry in state.symbols:
            market = ledger._markets[symbol_entry.symbol] = _Market(symbol_entry.mark_price)
            market.volume = symbol_entry.volume
            market.notional = int(symbol_entry.notional)
        return ledger

    def state_hash(self) -> str:
        """Return a hex digest that is equal for equal states, however they were reached."""
        return hashlib.blake2b(msgspec.msgpack.encode(self.state()), digest_size=16).hexdigest()

    def check_invariants(self) -> None:
        """Raise `AssertionError` if a holding is malformed or a symbol does not conserve.

        Per holding: flat if and only if the basis is zero, the basis signed like the position
        and at least one price unit per unit held; volumes not negative. Per symbol: net
        quantities sum to zero, realized plus unrealized PnL sums to zero, and the accounts'
        volume is twice the symbol's (both sides of every trade).
        """
        net: dict[str, int] = {}
        pnl: dict[str, int] = {}
        volume: dict[str, int] = {}
        notional: dict[str, int] = {}
        for account, per_account in self._holdings.items():
            for symbol, holding in per_account.items():
                where = f"{account} {symbol}"
                market = self._markets.get(symbol)
                assert market is not None, f"{where}: traded, yet {symbol} has no mark"
                assert (holding.net == 0) == (holding.cost == 0), f"{where}: flat iff no basis"
                assert holding.net * holding.cost >= 0, f"{where}: basis signed unlike position"
                assert abs(holding.cost) >= abs(holding.net), f"{where}: basis under 1 per unit"
                assert holding.traded_quantity > 0, f"{where}: listed without volume"
                assert holding.traded_notional > 0, f"{where}: notional not positive"
                net[symbol] = net.get(symbol, 0) + holding.net
                pnl[symbol] = (
                    pnl.get(symbol, 0)
                    + holding.realized
                    + holding.net * market.mark
                    - holding.cost
                )
                volume[symbol] = volume.get(symbol, 0) + holding.traded_quantity
                notional[symbol] = notional.get(symbol, 0) + holding.traded_notional
        for symbol, market in self._markets.items():
            assert net.get(symbol, 0) == 0, f"{symbol}: positions sum to {net.get(symbol)}"
            assert pnl.get(symbol, 0) == 0, f"{symbol}: PnL sums to {pnl.get(symbol)}"
            assert volume.get(symbol, 0) == 2 * market.volume, f"{symbol}: volume"
            assert notional.get(symbol, 0) == 2 * market.notional, f"{symbol}: notional"
            assert market.mark > 0, f"{symbol}: mark {market.mark}"
        assert set(net) <= set(self._markets), "holdings in a symbol that never traded"
