"""A shard's deciding state, built and replayed in one place.

A shard is a risk gate (`RiskLimits`) in front of a matching engine (`MatchingEngine`). The
book actor's recovery, the projections' catch-up, the gateway's history and the researchers'
replays all build it with `build_shard` and re-apply journaled batches with `replay_batch`, so
every copy of a shard decides exactly as the live one did. Pure: no framework, clock or I/O.

Exceptions::

    RuntimeError
    └── ReplayDivergedError    a journaled batch did not replay to the range it recorded
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

import msgspec

from actors.core.engine import EngineState, MatchingEngine
from actors.core.risk import OpenOrder, RiskLimits, RiskState
from protocols.journal_format import CommandBatch
from protocols.messages import Event, Instrument

CLIENT_ORDER_ID_WINDOW: Final = 1_000_000
"""Default number of recent (account, client order id) pairs a shard remembers, so a resubmitted
order is recognised instead of entered twice (about 180 MB per shard when full)."""


class ShardState(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a shard needs to resume: the body of a book actor's snapshots."""

    engine: EngineState
    """The books, order ids, idempotency window and next sequence number."""
    risk: RiskState
    """Limits, kill switches, halts, exposures and rate buckets of the pre-trade gate."""


class ReplayDivergedError(RuntimeError):
    """A journaled batch did not replay to the sequence range the journal recorded for it.

    Either the journal has a gap (the batch starts elsewhere than the replay is), or the
    replay decided differently from the live run (a non-deterministic engine, or a shard
    built with other instruments, shard id or client order id window than the live one).
    """


def build_shard(
    shard_id: int,
    instruments: Sequence[Instrument],
    state: ShardState | None = None,
    *,
    client_order_id_window: int = CLIENT_ORDER_ID_WINDOW,
) -> tuple[RiskLimits, MatchingEngine]:
    """Build a shard's risk gate and engine, empty or from a snapshot."""
    if state is None:
        risk = RiskLimits(instruments)
        engine = MatchingEngine(
            instruments, shard_id, gate=risk, client_order_id_window=client_order_id_window
        )
    else:
        risk = RiskLimits.from_state(instruments, state.risk)
        if not state.risk.open_orders:  # a snapshot of `shard_state`: the books hold them
            risk.add_open_orders(resting_orders(state.engine))
        engine = MatchingEngine.from_state(
            instruments, state.engine, gate=risk, client_order_id_window=client_order_id_window
        )
    return risk, engine


def resting_orders(engine: EngineState) -> list[OpenOrder]:
    """Return the resting orders of an engine's state as the risk gate counts them (every
    open order of a shard rests in its book between batches), sorted by order id."""
    orders = [
        OpenOrder(order_id=order.order_id, account=order.account, symbol=book.symbol,
                  side=order.side, price=order.price, quantity=order.quantity)
        for book in engine.books for side in (book.bids, book.asks) for order in side
    ]
    orders.sort(key=_order_id)
    return orders


def _order_id(order: OpenOrder) -> int:
    return order.order_id


def replay_batch(engine: MatchingEngine, batch: CommandBatch, where: str) -> list[Event]:
    """Re-apply a journaled batch and return its events.

    Raise `ReplayDivergedError` (naming ``where``) unless the events are numbered exactly as
    the journal recorded.
    """
    if batch.first_seq != engine.next_seq:
        raise ReplayDivergedError(
            f"{where}: journal batch starts at event {batch.first_seq}, replay is at "
            f"{engine.next_seq}"
        )
    events = engine.apply(batch.commands)
    if engine.next_seq != batch.last_seq + 1:
        raise ReplayDivergedError(
            f"{where}: replaying events {batch.first_seq}..{batch.last_seq} gave "
            f"{batch.first_seq}..{engine.next_seq - 1}: replay is not deterministic"
        )
    return events


def shard_state(risk: RiskLimits, engine: MatchingEngine) -> ShardState:
    """Return a copy of the shard's full state (what a snapshot stores).

    The risk gate's open orders are left out: they are the books' resting orders, which
    `build_shard` counts again (a third of a busy shard's snapshot time and a fifth of its
    size went to the second copy). Snapshots that hold them still load.
    """
    return ShardState(engine=engine.state(), risk=risk.state(open_orders=False))


def state_hashes(risk: RiskLimits, engine: MatchingEngine) -> dict[str, str]:
    """Return hashes of the books (live orders and order ids), the engine and the risk gate.

    Two copies of a shard that saw the same batches give equal hashes; the books' own hash
    tells a matching difference apart from a bookkeeping one.
    """
    books = msgspec.msgpack.encode(
        [engine.books[symbol].state() for symbol in sorted(engine.books)]
    )
    return {
        "books": hashlib.blake2b(books, digest_size=16).hexdigest(),
        "engine": engine.state_hash(),
        "risk": risk.state_hash(),
    }
