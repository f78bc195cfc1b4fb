"""The rows the read side answers with: open orders, shard, risk and supervisor status, positions.

The book and reader actors answer queries with these records (they pickle through Ray
as they are), the Python client hands them to its callers, and `protocols.reports` turns them
into protobuf. Typed records instead of dicts mean a renamed field is a type error, not a
``KeyError`` in a user's terminal.

A position or an exposure is already a frozen struct of its pure core
(``actors.core.positions.Position``, ``actors.core.risk.AccountExposure``); the actors return
those as they are. `PositionRow` states the fields reports read from a position, so this
package need not import the cores (the dependency runs ``actors -> protocols``).
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from protocols.messages import Side


class OrderRow(msgspec.Struct, frozen=True, kw_only=True):
    """An order resting in a shard's book, as the book actor reports it."""

    order_id: int
    """The shard-assigned order id (the shard is ``order_id >> 40``)."""
    account: str
    """The account that entered the order."""
    client_order_id: str
    """The id the client gave the order (or its latest replace)."""
    symbol: str
    """The instrument the order rests in."""
    side: Side
    """Buy or sell."""
    price: int
    """The limit price, in integer price units (ticks times the tick size)."""
    open_quantity: int
    """What is left to fill, in lots times the lot size."""


class ShardStatusRow(msgspec.Struct, frozen=True, kw_only=True):
    """A book actor's counters and its position in the shard's sequence."""

    shard: int
    """The shard's number."""
    incarnation: str
    """Changes with every start of the book actor, so a restart shows."""
    symbols: list[str]
    """The symbols the shard trades, sorted."""
    next_seq: int
    """The sequence number the shard's next event gets."""
    batches: int
    """Command batches applied since this incarnation started."""
    commands: int
    """Commands applied since this incarnation started."""
    resting_orders: int
    """Orders resting in the shard's books now."""
    failed: str | None
    """Why the shard stopped serving (a journal append failed), or None while it serves."""
    front_end: str = ""
    """Where the shard's own gRPC front end listens (``host:port``), ``failed: <why>`` if it
    could not start, empty if the cluster runs none (`cluster.gateway.direct`)."""


class RiskStatusRow(msgspec.Struct, frozen=True, kw_only=True):
    """The kill switches and halts in force in a shard, as its reader's risk model sees them."""

    killed_accounts: list[str]
    """Accounts whose kill switch is engaged, sorted."""
    halted_symbols: list[str]
    """Symbols halted for trading, sorted."""


class GatewayShardRow(msgspec.Struct, frozen=True, kw_only=True):
    """A shard's status as a gateway reports it: its own view, and the book actor's row."""

    shard: int
    """The shard's number."""
    up: bool
    """True if the book actor answered and serves."""
    error: str = ""
    """Why the shard is not up (empty when it is)."""
    gateway_next_seq: int = 0
    """The next event the gateway's feed of this shard expects."""
    halted_symbols: list[str] = []
    """Halts in force, as the gateway's feed has seen them."""
    killed_accounts: list[str] = []
    """Engaged kill switches, as the gateway's feed has seen them."""
    book: ShardStatusRow | None = None
    """The book actor's own status, or None if it did not answer."""


class SupervisedChildRow(msgspec.Struct, frozen=True, kw_only=True):
    """One child as its supervisor sees it."""

    name: str
    """The child's actor name."""
    state: str
    """Where the supervisor believes it is: ``unknown``, ``up``, ``slow`` (pings time out, not
    counted yet), ``down`` (counted, Ray is bringing it back) or ``restarting`` (killed by the
    supervisor, waiting for its new incarnation)."""
    up: bool
    """True if it answered its last ping."""
    restarts: int
    """Restarts seen: Ray's own count when the probe knows it, else new incarnations."""
    offset: int
    """How far it has got when it last answered (a shard's journal offset); 0 if it never did."""
    last_error: str
    """Why its last failed ping failed (one line; empty if none failed yet)."""
    down_s: float | None = None
    """How long it has been down or restarting, in seconds; None while it is not."""


class SupervisorFailureRow(msgspec.Struct, frozen=True, kw_only=True):
    """One failure in a supervisor's history, and what the supervisor did about it."""

    ago_s: float
    """How long ago it happened, in seconds (one decimal)."""
    child: str
    """The child that failed."""
    reason: str
    """Why it counted as a failure."""
    action: str
    """``restart [names]`` or ``escalate``."""


class SupervisorStatusRow(msgspec.Struct, frozen=True, kw_only=True):
    """A supervisor's state, its policy, its children and its recent failures."""

    name: str
    """The supervisor's actor name."""
    state: str
    """``running``, ``escalated`` (children stopped, waiting for the parent) or ``failed``."""
    strategy: str
    """``one_for_one``, ``rest_for_one`` or ``one_for_all``."""
    max_restarts: int
    """The restart intensity: at most this many failures ..."""
    within_s: float
    """... within this many seconds, then it escalates."""
    recent_failures: int
    """Failures that count against the intensity now."""
    children: list[SupervisedChildRow]
    """Every child, in start order."""
    history: list[SupervisorFailureRow]
    """The failures it remembers, oldest first."""


class PositionRow(Protocol):
    """What a report reads from a position (``actors.core.positions.Position`` is one)."""

    @property
    def account(self) -> str:
        """The account holding the position."""
        ...

    @property
    def symbol(self) -> str:
        """The instrument."""
        ...

    @property
    def net_quantity(self) -> int:
        """Positive long, negative short."""
        ...

    @property
    def cost(self) -> int:
        """Open cost basis in price units times quantity, signed like ``net_quantity``."""
        ...

    @property
    def realized_pnl(self) -> int:
        """Realized profit and loss, gross of fees."""
        ...

    @property
    def unrealized_pnl(self) -> int:
        """``net_quantity x mark_price - cost``; 0 when flat."""
        ...

    @property
    def mark_price(self) -> int | None:
        """The symbol's last trade price; None before its first trade."""
        ...

    @property
    def traded_quantity(self) -> int:
        """Quantity bought plus quantity sold."""
        ...

    @property
    def traded_notional(self) -> int:
        """Price times quantity over every fill."""
        ...

    @property
    def fees(self) -> int:
        """Fees paid (negative: rebates received)."""
        ...
