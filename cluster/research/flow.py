"""Seeded, realistic order flow for benchmarks, the demo and simulations.

The flow mixes limit orders around a drifting mid price (some crossing it), cancels and
replaces of orders that are live at that moment, IOC orders and market orders, over several
symbols and accounts. To name live orders in cancels and replaces the generator runs the flow
through a `MatchingEngine` as it goes; replaying the generated commands into a fresh engine
(or a shard with the same id) reproduces the same order ids and events exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence

import msgspec

from actors.core.engine import MatchingEngine
from protocols.messages import (
    CancelOrder,
    Command,
    Instrument,
    NewOrder,
    OrderAccepted,
    OrderType,
    ReplaceOrder,
    Side,
    TimeInForce,
)


class FlowConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Shape of a generated flow. The defaults are the benchmark's mix."""

    operations: int = 1_000_000
    seed: int = 7
    accounts: int = 20
    limit_share: float = 0.50
    """Share of GTC limit orders; about one in eight of them crosses the mid."""
    cancel_share: float = 0.30
    replace_share: float = 0.10
    ioc_share: float = 0.05
    """Share of IOC limit orders priced through the mid; the rest are market orders."""
    max_lots: int = 100
    ts_start_ns: int = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
    ts_step_ns: int = 10_000
    """Ingress time between consecutive commands (10 us: 100k commands/s)."""


def demo_instruments(count: int = 8) -> list[Instrument]:
    """Return ``count`` simple instruments (tick 1, lot 1, 2 decimals) for flows and tests."""
    return [
        Instrument(
            symbol=f"SYM{index}",
            tick_size=1,
            lot_size=1,
            price_scale=2,
            reference_price=10_000,
            maker_fee_bps=0,
            taker_fee_bps=1,
        )
        for index in range(count)
    ]


def generate_flow(
    instruments: Sequence[Instrument],
    config: FlowConfig | None = None,
    shard_of: Callable[[str], int] | None = None,
) -> list[Command]:
    """Return ``config.operations`` commands; deterministic for a given seed and instruments.

    ``shard_of`` maps a symbol to its shard (all on shard 0 if not given); the order ids in
    cancels and replaces are those the shards will assign.
    """
    return list(iter_flow(instruments, config, shard_of))


def iter_flow(
    instruments: Sequence[Instrument],
    config: FlowConfig | None = None,
    shard_of: Callable[[str], int] | None = None,
) -> Iterator[Command]:
    """Yield the flow command by command (see `generate_flow`)."""
    config = config or FlowConfig()
    rng = random.Random(config.seed)
    shard_of = shard_of or (lambda symbol: 0)
    grouped: dict[int, list[Instrument]] = {}
    for instrument in instruments:
        grouped.setdefault(shard_of(instrument.symbol), []).append(instrument)
    engines = {shard: MatchingEngine(members, shard) for shard, members in grouped.items()}
    engine_of = {
        instrument.symbol: engines[shard] for shard, members in grouped.items()
        for instrument in members
    }
    symbols = [instrument.symbol for instrument in instruments]
    by_symbol = {instrument.symbol: instrument for instrument in instruments}
    mids = {
        instrument.symbol: (instrument.reference_price or 10_000 * instrument.tick_size)
        // instrument.tick_size
        for instrument in instruments
    }  # in ticks
    live: dict[str, list[int]] = {symbol: [] for symbol in symbols}
    accounts = [f"ACC{index:03d}" for index in range(config.accounts)]
    owner: dict[int, str] = {}
    cancel_edge = config.limit_share + config.cancel_share
    replace_edge = cancel_edge + config.replace_share
    ioc_edge = replace_edge + config.ioc_share
    ts_ns = config.ts_start_ns

    def pick_live(symbol: str) -> int | None:
        ids = live[symbol]
        orders = engine_of[symbol].books[symbol].orders
        while ids:
            index = rng.randrange(len(ids))
            order_id = ids[index]
            if order_id in orders:
                return order_id
            ids[index] = ids[-1]
            ids.pop()
        return None

    for number in range(config.operations):
        ts_ns += config.ts_step_ns
        symbol = rng.choice(symbols)
        instrument = by_symbol[symbol]
        tick, lot = instrument.tick_size, instrument.lot_size
        if rng.random() < 0.02:
            mids[symbol] = max(10, mids[symbol] + rng.choice((-1, 1)))
        mid = mids[symbol]
        roll = rng.random()
        account = rng.choice(accounts)
        client_order_id = f"C{number}"
        command: Command
        target = pick_live(symbol) if roll >= config.limit_share and roll < replace_edge else None
        if roll < config.limit_share or (roll < replace_edge and target is None):
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            offset = int(rng.expovariate(0.25)) + 1
            if rng.random() < 0.125:
                offset = -rng.randint(0, 2)  # priced through the mid: it takes liquidity
            ticks = mid - offset if side == Side.BUY else mid + offset
            command = NewOrder(
                account=account,
                client_order_id=client_order_id,
                symbol=symbol,
                side=side,
                price=max(1, ticks) * tick,
                quantity=rng.randint(1, config.max_lots) * lot,
                ts_ns=ts_ns,
            )
        elif roll < cancel_edge:
            assert target is not None
            command = CancelOrder(
                account=owner[target],
                client_order_id=client_order_id,
                symbol=symbol,
                order_id=target,
                ts_ns=ts_ns,
            )
        elif roll < replace_edge:
            assert target is not None
            resting = engine_of[symbol].books[symbol].orders[target]
            if rng.random() < 0.5 and resting.quantity > lot:
                price = resting.price
                quantity = rng.randint(1, resting.quantity // lot - 1) * lot
            else:
                price = max(tick, resting.price + rng.choice((-2, -1, 1, 2)) * tick)
                quantity = rng.randint(1, config.max_lots) * lot
            command = ReplaceOrder(
                account=owner[target],
                client_order_id=client_order_id,
                symbol=symbol,
                order_id=target,
                price=price,
                quantity=quantity,
                ts_ns=ts_ns,
            )
        else:
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            quantity = rng.randint(1, config.max_lots // 2) * lot
            if roll < ioc_edge:
                ticks = mid + 2 if side == Side.BUY else mid - 2
                command = NewOrder(
                    account=account,
                    client_order_id=client_order_id,
                    symbol=symbol,
                    side=side,
                    price=max(1, ticks) * tick,
                    quantity=quantity,
                    time_in_force=TimeInForce.IOC,
                    ts_ns=ts_ns,
                )
            else:
                command = NewOrder(
                    account=account,
                    client_order_id=client_order_id,
                    symbol=symbol,
                    side=side,
                    quantity=quantity,
                    order_type=OrderType.MARKET,
                    time_in_force=TimeInForce.IOC,
                    ts_ns=ts_ns,
                )
        for event in engine_of[symbol].apply([command]):
            if type(event) is OrderAccepted and event.time_in_force == TimeInForce.GTC:
                live[symbol].append(event.order_id)
                owner[event.order_id] = event.account
        yield command
