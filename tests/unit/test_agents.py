"""The simulation's agents and parts, pure: no Ray, no clock, each run on its own seed."""

from __future__ import annotations

import itertools

import msgspec
import pytest

from actors.core.engine import MatchingEngine
from cluster.research.agents import (
    AgentGroup,
    BookView,
    FairValue,
    FairValueParams,
    Ledger,
    MakerParams,
    Market,
    MarketMaker,
    MarketState,
    MomentumParams,
    MomentumTrader,
    NoiseTaker,
    TakerParams,
    Trader,
    accounts_of,
    encode_market,
)
from cluster.research.flow import FlowConfig, demo_instruments, generate_flow
from protocols.messages import (
    CancelOrder,
    Command,
    Event,
    NewOrder,
    OrderAccepted,
    OrderType,
    ReplaceOrder,
    Side,
    TimeInForce,
    Trade,
    decode_commands,
    encode,
)

SYMBOL = "SYM0"


def book(fair: int = 10_000, bids: tuple[tuple[int, int], ...] = ((9_998, 20),),
         asks: tuple[tuple[int, int], ...] = ((10_002, 20),), last: int | None = None,
         symbol: str = SYMBOL) -> BookView:
    return BookView(symbol=symbol, tick_size=1, lot_size=1, fair_value=fair, bids=bids,
                    asks=asks, last_price=last)


def market(*views: BookView, step: int = 0) -> Market:
    return Market(step=step, ts_ns=1, books={view.symbol: view for view in views})


def accept(agent: Trader, commands: list[Command], first_order_id: int = 1) -> dict[str, int]:
    """Feed the agent an OrderAccepted for each new order; return client order id -> order id."""
    ids = {}
    for number, command in enumerate(commands):
        if type(command) is NewOrder:
            order_id = first_order_id + number
            ids[command.client_order_id] = order_id
            agent.on_event(OrderAccepted(
                seq=number + 1, ts_ns=1, symbol=command.symbol, order_id=order_id,
                account=command.account, client_order_id=command.client_order_id,
                side=command.side, order_type=command.order_type,
                time_in_force=command.time_in_force, price=command.price,
                quantity=command.quantity))
    return ids


def fill(agent: str, side: Side, quantity: int, price: int = 10_000) -> Trade:
    """A trade in which ``agent`` took liquidity on ``side`` from "other"."""
    return Trade(seq=1, ts_ns=1, symbol=SYMBOL, price=price, quantity=quantity,
                 aggressor_side=side, maker_order_id=99, maker_account="other",
                 maker_client_order_id="o-1", maker_leaves=0, taker_order_id=98,
                 taker_account=agent, taker_client_order_id=f"{agent}-x", taker_leaves=0)


def quotes(commands: list[Command], side: Side) -> list[int]:
    return sorted(c.price for c in commands if type(c) is NewOrder and c.side == side)


# ------------------------------------------------------------------------------ market makers


def test_a_maker_quotes_each_level_around_the_fair_value() -> None:
    """Level i of the bid sits half spread + i ticks below the fair value, the ask as far above."""
    maker = MarketMaker("mm0", 1, MakerParams(half_spread_ticks=2, levels=2))
    commands = maker.decide(market(book(fair=10_000)))
    assert quotes(commands, Side.BUY) == [9_997, 9_998]
    assert quotes(commands, Side.SELL) == [10_002, 10_003]
    assert all(type(c) is NewOrder and c.time_in_force == TimeInForce.GTC and c.ts_ns == 0
               for c in commands)


def test_a_wider_maker_quotes_wider() -> None:
    """Maker k of a simulation adds k ticks to the half spread."""
    maker = MarketMaker("mm1", 1, MakerParams(half_spread_ticks=2, levels=1),
                        extra_half_spread_ticks=1)
    commands = maker.decide(market(book(fair=10_000)))
    assert quotes(commands, Side.BUY) == [9_997] and quotes(commands, Side.SELL) == [10_003]


def test_a_maker_follows_the_fair_value_moving_the_far_side_first() -> None:
    """When the fair value rises, the maker replaces its asks before its bids, so that the new
    bids never meet its own old asks."""
    maker = MarketMaker("mm0", 1, MakerParams(half_spread_ticks=2, levels=1))
    accept(maker, maker.decide(market(book(fair=10_000))))
    assert maker.decide(market(book(fair=10_000))) == []  # in place: nothing to do
    commands = maker.decide(market(book(fair=10_010)))
    assert [type(c) for c in commands] == [ReplaceOrder, ReplaceOrder]
    assert [c.price for c in commands if type(c) is ReplaceOrder] == [10_012, 10_008]
    down = maker.decide(market(book(fair=9_990)))
    assert [c.price for c in down if type(c) is ReplaceOrder] == [9_988, 9_992]


def test_a_maker_skews_its_quotes_against_its_inventory() -> None:
    """Every skew_lots_per_tick lots held move both quotes a tick against the inventory."""
    maker = MarketMaker("mm0", 1, MakerParams(half_spread_ticks=2, levels=1,
                                              skew_lots_per_tick=25))
    maker.on_event(fill("mm0", Side.BUY, 50))
    assert maker.positions == {SYMBOL: 50}
    commands = maker.decide(market(book(fair=10_000)))
    assert quotes(commands, Side.BUY) == [9_996] and quotes(commands, Side.SELL) == [10_000]


def test_a_maker_at_its_position_limit_stops_adding_to_it() -> None:
    """At max_position_lots long, the bid is cancelled and not placed again; the ask stays."""
    maker = MarketMaker("mm0", 1, MakerParams(levels=1, max_position_lots=30))
    accept(maker, maker.decide(market(book())))
    maker.on_event(fill("mm0", Side.BUY, 30))
    commands = maker.decide(market(book()))
    assert [type(c) for c in commands if type(c) is CancelOrder] == [CancelOrder]
    assert not [c for c in commands if type(c) is NewOrder and c.side == Side.BUY]


def test_a_filled_quote_is_placed_again() -> None:
    """A quote whose order traded away is sent anew at the next step."""
    maker = MarketMaker("mm0", 1, MakerParams(levels=1))
    ids = accept(maker, maker.decide(market(book())))
    bid_id = next(order_id for cid, order_id in ids.items() if cid == "mm0-1")
    maker.on_event(Trade(seq=5, ts_ns=1, symbol=SYMBOL, price=9_998, quantity=50,
                         aggressor_side=Side.SELL, maker_order_id=bid_id, maker_account="mm0",
                         maker_client_order_id="mm0-1", maker_leaves=0, taker_order_id=77,
                         taker_account="noise0", taker_client_order_id="noise0-1",
                         taker_leaves=0))
    commands = maker.decide(market(book()))
    assert [(type(c), c.side) for c in commands if type(c) is NewOrder] == [(NewOrder, Side.BUY)]


def test_a_requote_threshold_that_lets_a_maker_cross_itself_is_refused() -> None:
    with pytest.raises(ValueError, match="requote_ticks"):
        MarketMaker("mm0", 1, MakerParams(half_spread_ticks=1, requote_ticks=3))


# ------------------------------------------------------------------------------ momentum


def trend(trader: MomentumTrader, marks: list[int]) -> list[Command]:
    commands: list[Command] = []
    for step, mark in enumerate(marks):
        view = book(bids=((mark - 1, 10),), asks=((mark + 1, 10),))
        commands = trader.decide(market(view, step=step))
    return commands


def test_momentum_buys_after_a_rise_and_sells_after_a_fall() -> None:
    """A mark up threshold ticks over the lookback is a buy through the ask; down, a sell."""
    params = MomentumParams(lookback_steps=5, threshold_ticks=3, trade_probability=1.0,
                            slippage_ticks=1, size_lots=10)
    up = trend(MomentumTrader("momentum0", 1, params), list(range(10_000, 10_006)))
    assert len(up) == 1 and type(up[0]) is NewOrder
    assert (up[0].side, up[0].price, up[0].quantity) == (Side.BUY, 10_005 + 1 + 1, 10)
    assert up[0].time_in_force == TimeInForce.IOC
    down = trend(MomentumTrader("momentum0", 1, params), list(range(10_006, 10_000, -1)))
    assert len(down) == 1 and type(down[0]) is NewOrder
    assert (down[0].side, down[0].price) == (Side.SELL, 10_001 - 1 - 1)


def test_momentum_does_nothing_on_a_flat_market_or_past_its_limit() -> None:
    params = MomentumParams(lookback_steps=5, threshold_ticks=3, trade_probability=1.0,
                            max_position_lots=10, size_lots=10)
    assert trend(MomentumTrader("momentum0", 1, params), [10_000] * 12) == []
    full = MomentumTrader("momentum0", 1, params)
    full.on_event(fill("momentum0", Side.BUY, 10))
    assert trend(full, list(range(10_000, 10_006))) == []


def test_momentum_waits_out_its_cooldown() -> None:
    """After trading a symbol it skips cooldown_steps steps in it."""
    params = MomentumParams(lookback_steps=2, threshold_ticks=1, trade_probability=1.0,
                            cooldown_steps=3, max_position_lots=1_000)
    trader = MomentumTrader("momentum0", 1, params)
    sent = [len(trend(trader, [10_000 + step])) for step in range(10)]
    assert sent == [0, 0, 1, 0, 0, 0, 1, 0, 0, 0]


# ------------------------------------------------------------------------------ noise takers


def test_noise_takers_send_only_market_and_ioc_orders_within_their_size() -> None:
    taker = NoiseTaker("noise0", 3, TakerParams(order_probability=1.0, max_lots=7))
    view = market(book(), book(symbol="SYM1"))
    sent = [command for step in range(300) for command in taker.decide(view)]
    assert len(sent) == 300
    assert all(type(c) is NewOrder and c.time_in_force == TimeInForce.IOC for c in sent)
    assert all(1 <= c.quantity <= 7 for c in sent if type(c) is NewOrder)
    kinds = {c.order_type for c in sent if type(c) is NewOrder}
    assert kinds == {OrderType.MARKET, OrderType.LIMIT}
    assert {c.symbol for c in sent if type(c) is NewOrder} == {"SYM0", "SYM1"}
    assert {c.side for c in sent if type(c) is NewOrder} == {Side.BUY, Side.SELL}


def test_client_order_ids_are_the_agent_name_and_a_count() -> None:
    taker = NoiseTaker("noise0", 3, TakerParams(order_probability=1.0))
    ids = [c.client_order_id for step in range(5) for c in taker.decide(market(book()))]
    assert ids == [f"noise0-{n}" for n in range(1, 6)]


# ------------------------------------------------------------------------------ reproducibility


def test_the_same_seed_gives_the_same_decisions_and_another_seed_others() -> None:
    view = market(book(), book(symbol="SYM1"))

    def run(seed: int) -> bytes:
        agents: list[Trader] = [NoiseTaker("noise0", seed, TakerParams(order_probability=0.5)),
                                MarketMaker("mm0", seed, MakerParams())]
        return encode([c for _ in range(50) for agent in agents for c in agent.decide(view)])

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_the_fair_value_is_a_seeded_integer_walk_with_jumps_above_its_floor() -> None:
    instruments = demo_instruments(2)
    params = FairValueParams(jump_probability=0.05, floor_ticks=9_990)

    def path(seed: int) -> list[dict[str, int]]:
        fair = FairValue(instruments, params, seed)
        return [fair.step() for _ in range(500)]

    first = path(5)
    assert first == path(5) and first != path(6)
    values = [value for step in first for value in step.values()]
    assert all(type(value) is int for value in values)
    assert min(values) == 9_990  # it reached the floor, never went below
    moves = [abs(b["SYM0"] - a["SYM0"]) for a, b in itertools.pairwise(first)
             if b["SYM0"] != 9_990]  # (a jump is cut short at the floor)
    assert max(moves) >= params.jump_min_ticks  # it jumped
    assert set(moves) - {0, 1} <= set(range(params.jump_min_ticks, params.jump_max_ticks + 1))


# ------------------------------------------------------------------ the coordinator's parts


def test_the_mirrored_books_match_the_engine_after_a_random_flow() -> None:
    """Applying LevelChanged events in order gives the engine's own L2, level by level."""
    instruments = demo_instruments(3)
    engine = MatchingEngine(instruments, 0)
    state = MarketState(instruments)
    flow = generate_flow(instruments, FlowConfig(operations=3_000, seed=11))
    for start in range(0, len(flow), 50):
        state.apply(engine.apply(flow[start : start + 50]))
    for instrument in instruments:
        bids, asks = engine.books[instrument.symbol].l2(1_000)
        assert state.bids[instrument.symbol] == {price: quantity for price, quantity, _ in bids}
        assert state.asks[instrument.symbol] == {price: quantity for price, quantity, _ in asks}
        view = state.view(0, 1, {i.symbol: 0 for i in instruments}, 3).books[instrument.symbol]
        assert view.bids == tuple((p, q) for p, q, _ in bids[:3])
        assert view.asks == tuple((p, q) for p, q, _ in asks[:3])


def test_the_ledger_conserves_cash_and_positions() -> None:
    """For every trade the buyer's and seller's changes cancel, so total PnL is 0 at any mark."""
    ledger = Ledger()
    ledger.apply([fill("a", Side.BUY, 5, 10_010), fill("b", Side.SELL, 3, 9_990)])
    assert ledger.positions == {"a": {SYMBOL: 5}, "other": {SYMBOL: -2}, "b": {SYMBOL: -3}}
    marks: dict[str, int | None] = {SYMBOL: 10_000}
    assert ledger.pnl("a", marks) == 5 * (10_000 - 10_010)
    assert ledger.pnl("b", marks) == 3 * (9_990 - 10_000)
    assert sum(ledger.pnl(account, marks) for account in ("a", "b", "other")) == 0


def test_accounts_of_names_each_trader_once() -> None:
    assert accounts_of(fill("a", Side.BUY, 1)) == ("other", "a")
    self_trade = msgspec.structs.replace(fill("a", Side.BUY, 1), maker_account="a")
    assert accounts_of(self_trade) == ("a",)


def simulate(seed: int, steps: int = 300) -> tuple[list[bytes], str, Ledger]:
    """The simulation's loop, on one in-process engine instead of a cluster."""
    instruments = demo_instruments(2)
    engine = MatchingEngine(instruments, 0)
    fair_value = FairValue(instruments, FairValueParams(), seed)
    state, ledger = MarketState(instruments), Ledger()
    groups = [AgentGroup([MarketMaker(f"mm{k}", seed, MakerParams(), k) for k in range(2)]),
              AgentGroup([NoiseTaker(f"noise{k}", seed, TakerParams()) for k in range(3)]),
              AgentGroup([MomentumTrader("momentum0", seed, MomentumParams())])]
    members = [{agent.name for agent in group.agents} for group in groups]
    inboxes: list[list[Event]] = [[] for _ in groups]
    journal = []
    for step in range(steps):
        ts_ns = 1_000 + step
        view = encode_market(state.view(step, ts_ns, fair_value.step(), 5))
        commands = [msgspec.structs.replace(command, ts_ns=ts_ns)
                    for group, inbox in zip(groups, inboxes, strict=True)
                    for command in decode_commands(group.step(view, encode(inbox)))]
        events = engine.apply(commands) if commands else []
        journal.append(encode(commands))
        state.apply(events)
        ledger.apply(events)
        inboxes = [[e for e in events if set(accounts_of(e)) & names] for names in members]
    engine.check_invariants()
    return journal, engine.state_hash(), ledger


def test_a_seeded_simulation_on_one_engine_repeats_exactly() -> None:
    """The whole loop, pure: the same seed, the same commands and book; positions sum to 0."""
    journal, state_hash, ledger = simulate(4)
    again, again_hash, _ = simulate(4)
    assert journal == again and state_hash == again_hash
    other, _, _ = simulate(5)
    assert other != journal
    totals: dict[str, int] = {}
    for held in ledger.positions.values():
        for symbol, quantity in held.items():
            totals[symbol] = totals.get(symbol, 0) + quantity
    assert totals and set(totals.values()) == {0}
    assert sum(len(held) for held in ledger.positions.values()) > 4  # they traded


def test_an_agent_group_refuses_two_agents_of_one_name() -> None:
    with pytest.raises(ValueError, match="repeat"):
        AgentGroup([NoiseTaker("x", 1, TakerParams()), NoiseTaker("x", 2, TakerParams())])
