"""Simulated traders for researchers' agent simulations (`cluster.research.sim`), all pure.

Every piece here is plain Python over integer prices and lots: no Ray, no clock, no global
randomness (each random choice comes from the object's own ``random.Random``, seeded from a
string, so the same seed gives the same choices in any process). A simulation step is::

    fair = fair_value.step()                       # the latent price each symbol drifts around
    market = state.view(step, ts_ns, fair, depth)  # L2 after the previous step, last trades
    commands = group.step(market, events)          # each agent: its events, then its decision
    events = <the cluster applies the commands>    # real matching, risk and positions
    state.apply(events); ledger.apply(events)      # the next step's market, PnL

The agents:

* `MarketMaker` quotes ``levels`` price levels a side around the latent fair value, which it
  alone knows, skewed against its inventory, and keeps its quotes current with replaces;
* `NoiseTaker` sends random market or IOC limit orders;
* `MomentumTrader` buys after the mid (or the last trade) rose over its lookback, sells after
  it fell, within a position limit.

An agent learns what happened to its orders only from events (`Agent.on_event`), and decides
from the market it is shown (`Agent.decide`); its commands carry no time (``ts_ns == 0``): the
simulation stamps them with simulated time. Client order ids are ``f"{name}-{n}"``, so a run
is reproducible down to the journal's bytes.

`AgentGroup` is the body of one agent actor: a few agents stepped together in one process.
`FairValue`, `MarketState` and `Ledger` are the coordinator's parts: the latent price, the
order books mirrored from the events, and each account's mark-to-market PnL.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Protocol

import msgspec

from protocols.messages import (
    CancelOrder,
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
    SelfTradePrevention,
    Side,
    TimeInForce,
    Trade,
    decode_events,
    encode,
)

# ------------------------------------------------------------------------------ parameters


class FairValueParams(msgspec.Struct, frozen=True, kw_only=True):
    """How the latent fair value of each symbol moves per step (a random walk with jumps)."""

    move_probability: float = 0.25
    """Chance per step of a one-tick move."""
    persistence: float = 0.6
    """Chance that a move goes the way the previous one went (above 0.5: trends)."""
    jump_probability: float = 0.004
    """Chance per step of a jump instead of a move."""
    jump_min_ticks: int = 5
    jump_max_ticks: int = 25
    """A jump's size in ticks is uniform in ``jump_min_ticks..jump_max_ticks``, either way."""
    floor_ticks: int = 100
    """The fair value never goes below this many ticks."""


class MakerParams(msgspec.Struct, frozen=True, kw_only=True):
    """A market maker's quoting. Maker ``k`` of a simulation quotes ``k`` ticks wider."""

    half_spread_ticks: int = 2
    """Distance in ticks from the fair value to the inner bid and ask."""
    levels: int = 2
    """Price levels quoted on each side."""
    level_spacing_ticks: int = 1
    size_lots: int = 20
    """Lots per quote."""
    size_jitter_lots: int = 5
    """A random 0..this many lots more per quote sent."""
    skew_lots_per_tick: int = 25
    """Every this many lots of inventory move both quotes one tick against the inventory."""
    max_position_lots: int = 200
    """At this inventory (long or short) the maker stops quoting the side that adds to it."""
    requote_ticks: int = 1
    """Replace a quote when it is this many ticks or more from where it should be."""


class TakerParams(msgspec.Struct, frozen=True, kw_only=True):
    """A noise taker's random orders."""

    order_probability: float = 0.3
    """Chance per step of sending one order."""
    market_share: float = 0.5
    """Share of market orders; the rest are IOC limit orders near the opposite best."""
    max_lots: int = 15
    """Quantity is uniform in 1..this many lots."""
    limit_slack_ticks: int = 2
    """An IOC limit is priced at the opposite best, give or take this many ticks."""


class MomentumParams(msgspec.Struct, frozen=True, kw_only=True):
    """A momentum trader's rule."""

    lookback_steps: int = 10
    """Compare the mark now with the mark this many steps ago."""
    threshold_ticks: int = 3
    """Trade once the mark moved at least this many ticks."""
    size_lots: int = 10
    max_position_lots: int = 100
    trade_probability: float = 0.5
    """Chance of acting on a signal in a given step."""
    slippage_ticks: int = 1
    """The IOC limit goes this many ticks through the opposite best."""
    cooldown_steps: int = 5
    """Steps to wait in a symbol after trading it."""


# ------------------------------------------------------------------------------ the market


class BookView(msgspec.Struct, frozen=True, kw_only=True):
    """One symbol as an agent sees it at the start of a step."""

    symbol: str
    tick_size: int
    lot_size: int
    fair_value: int
    """The latent price (integer price units). Only market makers read it."""
    bids: tuple[tuple[int, int], ...] = ()
    """``(price, quantity)`` best first."""
    asks: tuple[tuple[int, int], ...] = ()
    last_price: int | None = None
    """Price of the symbol's last trade, None before the first."""

    def best_bid(self) -> int | None:
        """Return the best bid price, or None."""
        return self.bids[0][0] if self.bids else None

    def best_ask(self) -> int | None:
        """Return the best ask price, or None."""
        return self.asks[0][0] if self.asks else None

    def mid(self) -> int | None:
        """Return the mid price rounded down to a whole price unit, or None without two sides."""
        if not self.bids or not self.asks:
            return None
        return (self.bids[0][0] + self.asks[0][0]) // 2

    def mark(self) -> int | None:
        """Return the mid, else the last trade price, else None."""
        mid = self.mid()
        return mid if mid is not None else self.last_price


class Market(msgspec.Struct, frozen=True, kw_only=True):
    """What every agent is shown at the start of a step."""

    step: int
    ts_ns: int
    """Simulated time of the step (the commands it produces carry it)."""
    books: dict[str, BookView]
    """Every symbol, in the simulation's symbol order."""


_market_encoder = msgspec.msgpack.Encoder()
_market_decoder = msgspec.msgpack.Decoder(Market)


def encode_market(market: Market) -> bytes:
    """Encode a `Market` as MessagePack (what crosses to the agent actors)."""
    return _market_encoder.encode(market)


def decode_market(data: bytes) -> Market:
    """Decode a `Market`."""
    return _market_decoder.decode(data)


def accounts_of(event: Event) -> tuple[str, ...]:
    """Return the accounts an event concerns: a trade's maker and taker (once each), the
    account of an order event, none for market data and admin events without one."""
    if type(event) is Trade:
        if event.maker_account == event.taker_account:
            return (event.maker_account,)
        return (event.maker_account, event.taker_account)
    if type(event) is LevelChanged:
        return ()
    account = getattr(event, "account", "")
    return (account,) if account else ()


class FairValue:
    """The latent fair value of each symbol: a seeded random walk in ticks, with jumps."""

    def __init__(self, instruments: Sequence[Instrument], params: FairValueParams,
                 seed: int) -> None:
        self.params = params
        self.rng = random.Random(f"{seed}/fair-value")
        self.tick_sizes = {instrument.symbol: instrument.tick_size for instrument in instruments}
        self.ticks = {
            instrument.symbol: max(params.floor_ticks,
                                   (instrument.reference_price or 10_000 * instrument.tick_size)
                                   // instrument.tick_size)
            for instrument in instruments
        }
        self._direction = dict.fromkeys(self.ticks, 1)

    def values(self) -> dict[str, int]:
        """Return each symbol's fair value in integer price units."""
        return {symbol: ticks * self.tick_sizes[symbol] for symbol, ticks in self.ticks.items()}

    def step(self) -> dict[str, int]:
        """Move every symbol's fair value one step (in symbol order); return the new values."""
        params, rng = self.params, self.rng
        for symbol, ticks in self.ticks.items():
            if rng.random() < params.jump_probability:
                move = rng.choice((-1, 1)) * rng.randint(params.jump_min_ticks,
                                                         params.jump_max_ticks)
            elif rng.random() < params.move_probability:
                keep = rng.random() < params.persistence
                move = self._direction[symbol] if keep else -self._direction[symbol]
                self._direction[symbol] = move
            else:
                continue
            self.ticks[symbol] = max(params.floor_ticks, ticks + move)
        return self.values()


class MarketState:
    """Every symbol's order book mirrored from `LevelChanged` events, and its trades.

    Applying a batch's events in order gives the books after the batch (see `LevelChanged`),
    whatever the shards: each symbol's events come from its one shard, in sequence.
    """

    def __init__(self, instruments: Sequence[Instrument]) -> None:
        self.instruments = {instrument.symbol: instrument for instrument in instruments}
        self.bids: dict[str, dict[int, int]] = {symbol: {} for symbol in self.instruments}
        self.asks: dict[str, dict[int, int]] = {symbol: {} for symbol in self.instruments}
        self.last_price: dict[str, int | None] = dict.fromkeys(self.instruments)
        self.volume: dict[str, int] = dict.fromkeys(self.instruments, 0)
        """Traded quantity since `take_volume` was last called."""

    def apply(self, events: Iterable[Event]) -> None:
        """Fold a batch's events into the books, last prices and volumes."""
        for event in events:
            if type(event) is LevelChanged:
                levels = (self.bids if event.side == Side.BUY else self.asks)[event.symbol]
                if event.quantity:
                    levels[event.price] = event.quantity
                else:
                    levels.pop(event.price, None)
            elif type(event) is Trade:
                self.last_price[event.symbol] = event.price
                self.volume[event.symbol] += event.quantity

    def best(self, symbol: str) -> tuple[int | None, int | None]:
        """Return the best bid and ask prices (None for an empty side)."""
        bids, asks = self.bids[symbol], self.asks[symbol]
        return (max(bids) if bids else None, min(asks) if asks else None)

    def mark(self, symbol: str) -> int | None:
        """Return the mid rounded down, else the last trade price, else None."""
        bid, ask = self.best(symbol)
        if bid is not None and ask is not None:
            return (bid + ask) // 2
        return self.last_price[symbol]

    def take_volume(self) -> dict[str, int]:
        """Return each symbol's traded quantity since the last call, and start again at 0."""
        volume = self.volume
        self.volume = dict.fromkeys(self.instruments, 0)
        return volume

    def view(self, step: int, ts_ns: int, fair_values: dict[str, int], depth: int) -> Market:
        """Return the market agents see: up to ``depth`` levels a side per symbol."""
        books = {}
        for symbol, instrument in self.instruments.items():
            bids, asks = self.bids[symbol], self.asks[symbol]
            books[symbol] = BookView(
                symbol=symbol,
                tick_size=instrument.tick_size,
                lot_size=instrument.lot_size,
                fair_value=fair_values[symbol],
                bids=tuple((price, bids[price]) for price in sorted(bids, reverse=True)[:depth]),
                asks=tuple((price, asks[price]) for price in sorted(asks)[:depth]),
                last_price=self.last_price[symbol],
            )
        return Market(step=step, ts_ns=ts_ns, books=books)


class Ledger:
    """Each account's cash and positions from trades, marked to market in integer units.

    Cash is in price units x quantity (``price * quantity`` summed, signed), gross of fees.
    """

    def __init__(self) -> None:
        self.cash: dict[str, int] = {}
        self.positions: dict[str, dict[str, int]] = {}

    def apply(self, events: Iterable[Event]) -> None:
        """Book every trade among ``events``."""
        for event in events:
            if type(event) is not Trade:
                continue
            if event.aggressor_side == Side.BUY:
                buyer, seller = event.taker_account, event.maker_account
            else:
                buyer, seller = event.maker_account, event.taker_account
            notional = event.price * event.quantity
            for account, sign in ((buyer, 1), (seller, -1)):
                self.cash[account] = self.cash.get(account, 0) - sign * notional
                held = self.positions.setdefault(account, {})
                held[event.symbol] = held.get(event.symbol, 0) + sign * event.quantity

    def pnl(self, account: str, marks: dict[str, int | None]) -> int:
        """Return the account's cash plus its positions valued at ``marks``.

        A symbol without a mark is valued at 0; it cannot hold a position (a position needs a
        trade, which sets the last price).
        """
        value = self.cash.get(account, 0)
        for symbol, quantity in self.positions.get(account, {}).items():
            value += quantity * (marks.get(symbol) or 0)
        return value


# ------------------------------------------------------------------------------ the agents


class Agent(Protocol):
    """A simulated trader: it learns from events and decides from the market."""

    name: str
    """The agent's account, and the prefix of its client order ids."""

    def on_event(self, event: Event) -> None:
        """Take in an event that concerns the agent's account (its orders, its trades)."""

    def decide(self, market: Market) -> list[Command]:
        """Return the commands to send this step (``ts_ns`` 0: the simulation stamps them)."""


class Trader:
    """What every agent here shares: a name, its own random generator, its client order ids,
    and its positions from its trades."""

    def __init__(self, name: str, seed: int) -> None:
        self.name = name
        self.rng = random.Random(f"{seed}/{name}")
        self.sent = 0
        """Commands sent so far: the ``n`` of the next client order id ``f"{name}-{n}"``."""
        self.positions: dict[str, int] = {}
        """Net lots per symbol (in quantity units), from the agent's trades."""

    def next_client_order_id(self) -> str:
        """Return a fresh client order id, ``f"{name}-{n}"``."""
        self.sent += 1
        return f"{self.name}-{self.sent}"

    def on_event(self, event: Event) -> None:
        """Book the agent's trades; subclasses also follow their orders."""
        if type(event) is Trade:
            buy = event.aggressor_side == Side.BUY
            if event.taker_account == self.name:
                self._add(event.symbol, event.quantity if buy else -event.quantity)
            if event.maker_account == self.name:
                self._add(event.symbol, -event.quantity if buy else event.quantity)

    def _add(self, symbol: str, quantity: int) -> None:
        self.positions[symbol] = self.positions.get(symbol, 0) + quantity

    def decide(self, market: Market) -> list[Command]:
        raise NotImplementedError


class _Quote:
    __slots__ = ("client_order_id", "leaves", "order_id", "price")

    def __init__(self, client_order_id: str, price: int, leaves: int) -> None:
        self.client_order_id = client_order_id
        self.order_id = 0  # until accepted
        self.price = price
        self.leaves = leaves


_Slot = tuple[str, Side, int]  # symbol, side, level


def _lots(quantity: int, lot_size: int) -> int:
    return quantity // lot_size if quantity >= 0 else -(-quantity // lot_size)


class MarketMaker(Trader):
    """Quote both sides of every symbol around the latent fair value.

    Level ``i`` of the bid sits ``half_spread + i * spacing`` ticks below the fair value, the
    ask as far above; both move one tick against the inventory per ``skew_lots_per_tick`` held.
    A quote further than ``requote_ticks`` from its place, or with less than half its size
    left, is replaced (a replace that moves it loses time priority, as on a venue); a side
    that would add to an inventory at ``max_position_lots`` is cancelled. Per symbol the
    commands go cancels first, then the side moving away from the other, so a maker never
    crosses its own quotes (self-trade prevention on its orders is the safety net).
    """

    def __init__(self, name: str, seed: int, params: MakerParams,
                 extra_half_spread_ticks: int = 0) -> None:
        super().__init__(name, seed)
        if params.requote_ticks > 2 * params.half_spread_ticks:
            raise ValueError("requote_ticks above twice the half spread lets a stale quote "
                             "cross the maker's own new one")
        self.params = params
        self.half_spread_ticks = params.half_spread_ticks + extra_half_spread_ticks
        self.quotes: dict[_Slot, _Quote] = {}
        self._by_client_order_id: dict[str, _Slot] = {}
        self._by_order_id: dict[int, _Slot] = {}

    def on_event(self, event: Event) -> None:
        super().on_event(event)
        if isinstance(event, OrderAccepted):
            slot = self._by_client_order_id.pop(event.client_order_id, None)
            if slot is not None:
                self.quotes[slot].order_id = event.order_id
                self._by_order_id[event.order_id] = slot
        elif isinstance(event, Trade):
            if event.maker_account == self.name:
                self._left(event.maker_order_id, event.maker_leaves)
            if event.taker_account == self.name:
                self._left(event.taker_order_id, event.taker_leaves)
        elif isinstance(event, OrderReplaced):
            slot = self._by_order_id.get(event.order_id)
            if slot is not None:
                self.quotes[slot].price = event.price
                self.quotes[slot].leaves = event.quantity
        elif isinstance(event, OrderCancelled):
            self._left(event.order_id, 0)
        elif isinstance(event, OrderRejected):
            slot = self._by_client_order_id.pop(event.client_order_id, None)
            if slot is not None:  # a new quote refused: place it again next step
                del self.quotes[slot]
            elif event.code in (RejectCode.ORDER_NOT_OPEN, RejectCode.UNKNOWN_ORDER):
                self._left(event.order_id, 0)

    def _left(self, order_id: int, leaves: int) -> None:
        slot = self._by_order_id.get(order_id)
        if slot is None:
            return
        if leaves:
            self.quotes[slot].leaves = leaves
        else:
            del self.quotes[slot]
            del self._by_order_id[order_id]

    def target(self, book: BookView, side: Side, level: int) -> int:
        """Return where the maker wants its ``level``-th quote on ``side`` (price units)."""
        params, tick = self.params, book.tick_size
        inventory = _lots(self.positions.get(book.symbol, 0), book.lot_size)
        skew = abs(inventory) // params.skew_lots_per_tick
        shift = -skew if inventory > 0 else skew
        offset = self.half_spread_ticks + level * params.level_spacing_ticks
        fair_ticks = book.fair_value // tick
        ticks = fair_ticks - offset + shift if side == Side.BUY else fair_ticks + offset + shift
        return max(1, ticks) * tick

    def decide(self, market: Market) -> list[Command]:
        commands: list[Command] = []
        params = self.params
        for symbol, book in market.books.items():
            inventory = _lots(self.positions.get(symbol, 0), book.lot_size)
            cancels: list[Command] = []
            sides: dict[Side, list[Command]] = {Side.BUY: [], Side.SELL: []}
            for side in (Side.BUY, Side.SELL):
                adds = inventory if side == Side.BUY else -inventory
                for level in range(params.levels):
                    slot = (symbol, side, level)
                    quote = self.quotes.get(slot)
                    if quote is not None and not quote.order_id:
                        continue  # not answered yet
                    if adds >= params.max_position_lots:
                        if quote is not None:
                            cancels.append(CancelOrder(
                                account=self.name, client_order_id=self.next_client_order_id(),
                                symbol=symbol, order_id=quote.order_id))
                        continue
                    price = self.target(book, side, level)
                    if quote is None:
                        sides[side].append(self._new(book, side, level, price))
                    elif (abs(quote.price - price) >= params.requote_ticks * book.tick_size
                          or 2 * quote.leaves < params.size_lots * book.lot_size):
                        sides[side].append(ReplaceOrder(
                            account=self.name, client_order_id=self.next_client_order_id(),
                            symbol=symbol, order_id=quote.order_id, price=price,
                            quantity=self._size(book)))
            # every quote of a symbol moves the same way (the fair value and the skew are
            # shared): the first one found tells which side is moving away from the other
            moving_up = next((self.target(book, side, level) > quote.price
                              for (quoted, side, level), quote in self.quotes.items()
                              if quoted == symbol and quote.order_id), False)
            first, second = (Side.SELL, Side.BUY) if moving_up else (Side.BUY, Side.SELL)
            commands += cancels + sides[first] + sides[second]
        return commands

    def _size(self, book: BookView) -> int:
        params = self.params
        return (params.size_lots + self.rng.randint(0, params.size_jitter_lots)) * book.lot_size

    def _new(self, book: BookView, side: Side, level: int, price: int) -> NewOrder:
        client_order_id = self.next_client_order_id()
        quantity = self._size(book)
        slot = (book.symbol, side, level)
        self.quotes[slot] = _Quote(client_order_id, price, quantity)
        self._by_client_order_id[client_order_id] = slot
        return NewOrder(account=self.name, client_order_id=client_order_id, symbol=book.symbol,
                        side=side, price=price, quantity=quantity,
                        self_trade_prevention=SelfTradePrevention.CANCEL_AGGRESSING)


class NoiseTaker(Trader):
    """Send, now and then, a random market order or an IOC limit near the opposite best."""

    def __init__(self, name: str, seed: int, params: TakerParams) -> None:
        super().__init__(name, seed)
        self.params = params

    def decide(self, market: Market) -> list[Command]:
        params, rng = self.params, self.rng
        if rng.random() >= params.order_probability:
            return []
        book = market.books[rng.choice(list(market.books))]
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        quantity = rng.randint(1, params.max_lots) * book.lot_size
        market_order = rng.random() < params.market_share
        slack = rng.randint(-params.limit_slack_ticks, params.limit_slack_ticks) * book.tick_size
        if market_order:
            return [NewOrder(account=self.name, client_order_id=self.next_client_order_id(),
                             symbol=book.symbol, side=side, quantity=quantity,
                             order_type=OrderType.MARKET, time_in_force=TimeInForce.IOC)]
        reference = book.best_ask() if side == Side.BUY else book.best_bid()
        if reference is None:
            reference = book.last_price
        if reference is None:
            return []  # no price to lean on yet
        price = reference + slack if side == Side.BUY else reference - slack
        return [NewOrder(account=self.name, client_order_id=self.next_client_order_id(),
                         symbol=book.symbol, side=side, quantity=quantity,
                         price=max(book.tick_size, price), time_in_force=TimeInForce.IOC)]


class MomentumTrader(Trader):
    """Trade in the direction the mark (mid, else last trade) moved over the lookback."""

    def __init__(self, name: str, seed: int, params: MomentumParams) -> None:
        super().__init__(name, seed)
        self.params = params
        self.marks: dict[str, deque[int]] = {}
        self.cooldown: dict[str, int] = {}

    def signal(self, symbol: str, tick_size: int) -> int:
        """Return 1 (buy), -1 (sell) or 0 from the marks seen so far."""
        marks = self.marks.get(symbol)
        if marks is None or len(marks) <= self.params.lookback_steps:
            return 0
        move = marks[-1] - marks[0]
        threshold = self.params.threshold_ticks * tick_size
        return 1 if move >= threshold else -1 if move <= -threshold else 0

    def decide(self, market: Market) -> list[Command]:
        params, rng = self.params, self.rng
        commands: list[Command] = []
        for symbol, book in market.books.items():
            mark = book.mark()
            if mark is not None:
                self.marks.setdefault(
                    symbol, deque(maxlen=params.lookback_steps + 1)).append(mark)
            if self.cooldown.get(symbol, 0) > 0:
                self.cooldown[symbol] -= 1
                continue
            direction = self.signal(symbol, book.tick_size)
            if not direction:
                continue
            quantity = params.size_lots * book.lot_size
            position = self.positions.get(symbol, 0) + direction * quantity
            if abs(position) > params.max_position_lots * book.lot_size:
                continue
            reference = book.best_ask() if direction > 0 else book.best_bid()
            if reference is None or rng.random() >= params.trade_probability:
                continue
            slippage = params.slippage_ticks * book.tick_size
            commands.append(NewOrder(
                account=self.name, client_order_id=self.next_client_order_id(), symbol=symbol,
                side=Side.BUY if direction > 0 else Side.SELL, quantity=quantity,
                price=max(book.tick_size, reference + direction * slippage),
                time_in_force=TimeInForce.IOC))
            self.cooldown[symbol] = params.cooldown_steps
        return commands


# ------------------------------------------------------------------------------ one actor


class AgentGroup:
    """Step a few agents together: the body of one agent actor of a simulation.

    Plain Python (`cluster.research.sim` runs it as a Ray actor through `handles.spawn`). Each
    `step` hands every agent the events that concern it, in the order given, then asks each,
    in the group's order, for its commands; the same inputs give the same commands.
    """

    def __init__(self, agents: Sequence[Agent], label: str = "agents") -> None:
        names = [agent.name for agent in agents]
        if len(set(names)) != len(names):
            raise ValueError(f"agent names repeat: {names}")
        self.agents = list(agents)
        self.label = label
        self._by_name = {agent.name: agent for agent in agents}
        self.steps = 0

    def step(self, market: bytes, events: bytes) -> bytes:
        """Take an encoded `Market` and the encoded events of the last step; return the
        agents' encoded commands (unstamped)."""
        for event in decode_events(events):
            for account in accounts_of(event):
                agent = self._by_name.get(account)
                if agent is not None:
                    agent.on_event(event)
        view = decode_market(market)
        commands = [command for agent in self.agents for command in agent.decide(view)]
        self.steps += 1
        return encode(commands)

    def ping(self) -> tuple[str, int]:
        """Answer a health check: the group's label and the steps taken."""
        return self.label, self.steps
