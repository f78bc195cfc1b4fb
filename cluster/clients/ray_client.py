"""The Python client of a raytrade cluster, for drivers, simulations and tests.

It speaks to the shards through the typed handles of `cluster.edge.handles` (the one module
that calls Ray). A batch of commands is split by
shard (order kept within each shard), each part is encoded once and sent to its shard's book
actor, all shards concurrently; the reply is every event the batch caused, shard by shard.
Account-wide commands (a kill switch, a mass cancel or limits without a symbol) go to every
shard.

Commands without an ingress timestamp (``ts_ns == 0``) are stamped with the current time, as
a gateway would, and (unless they carry one) with the driver's audit origin: principal
``"driver"``, no gateway, and this host and process as the peer.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from actors.core.positions import Position
from actors.core.risk import AccountExposure
from cluster.edge.handles import BookHandle, Call, ReaderHandle, wait_all
from cluster.edge.wiring import Cluster
from protocols.errors import ActorUnavailableError, ShardUnavailableError
from protocols.messages import (
    CancelOrder,
    Command,
    Event,
    MassCancel,
    NewOrder,
    OrderType,
    ReplaceOrder,
    RiskLimitsConfig,
    SelfTradePrevention,
    SetKillSwitch,
    SetRiskLimits,
    SetSymbolHalt,
    Side,
    TimeInForce,
    decode_events,
    encode,
    format_origin,
)
from protocols.rows import OrderRow, ShardStatusRow

DRIVER_PRINCIPAL = "driver"
"""The principal of the commands a driver's `Client` stamps."""


class PendingSubmit:
    """A batch sent to the shards; `result` waits for and returns its events."""

    def __init__(self, parts: list[Call[bytes]]) -> None:
        self._parts = parts

    def result(self, timeout_s: float | None = None) -> list[Event]:
        """Return the batch's events, shard by shard.

        Raise `ShardUnavailableError` if a shard's actor died or restarted meanwhile, or did
        not answer within ``timeout_s`` (some shards may have applied their part: resubmitting
        the whole batch is safe).
        """
        events: list[Event] = []
        failure: ShardUnavailableError | None = None
        for call in self._parts:
            try:
                events.extend(decode_events(call.result(timeout_s)))
            except ShardUnavailableError as error:
                failure = failure or error
        if failure is not None:
            raise failure
        return events


class Client:
    """Submit commands to and query a running raytrade cluster."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.shard_map = cluster.shard_map
        self.symbols = {instrument.symbol for instrument in cluster.topology.instruments}
        self._books = [cluster.book(shard) for shard in range(cluster.shards)]
        self._readers = [cluster.reader(shard) for shard in range(cluster.shards)]
        self.origin = format_origin(DRIVER_PRINCIPAL, "", f"{socket.gethostname()}:{os.getpid()}")
        """The audit origin of commands this client stamps (see the module docstring)."""

    def book(self, shard: int) -> BookHandle:
        """Return the shard's book actor handle (it looks the actor up again after a failure)."""
        return self._books[shard]

    # ---------------------------------------------------------------- commands

    def submit(self, commands: Sequence[Command]) -> list[Event]:
        """Apply a batch across the shards and return its events (see `PendingSubmit`)."""
        return self.submit_async(commands).result()

    def submit_async(self, commands: Sequence[Command]) -> PendingSubmit:
        """Send a batch without waiting (pipelining); `PendingSubmit.result` collects it."""
        parts: dict[int, list[Command]] = {}
        shard_of = self.shard_map.shard_of
        now = 0
        for command in commands:
            if not command.ts_ns:
                now = now or time.time_ns()
                command = msgspec.structs.replace(command, ts_ns=now,
                                                  origin=command.origin or self.origin)
            symbol = getattr(command, "symbol", "")
            if symbol and symbol in self.symbols:
                parts.setdefault(shard_of(symbol), []).append(command)
            elif symbol:
                # unknown symbol: any shard rejects it with UNKNOWN_SYMBOL
                parts.setdefault(0, []).append(command)
            else:
                for shard in range(self.cluster.shards):
                    parts.setdefault(shard, []).append(command)
        return PendingSubmit([self.book(shard).apply_batch(encode(part))
                              for shard, part in sorted(parts.items())])

    def buy(
        self, account: str, symbol: str, quantity: int, price: int = 0, **options: Any
    ) -> list[Event]:
        """Send one buy order (market if price is 0, unless order_type says otherwise)."""
        return self.submit([_order(account, symbol, Side.BUY, quantity, price, options)])

    def sell(
        self, account: str, symbol: str, quantity: int, price: int = 0, **options: Any
    ) -> list[Event]:
        """Send one sell order (market if price is 0, unless order_type says otherwise)."""
        return self.submit([_order(account, symbol, Side.SELL, quantity, price, options)])

    def cancel(
        self, account: str, symbol: str, order_id: int, client_order_id: str = ""
    ) -> list[Event]:
        """Cancel a resting order."""
        request = client_order_id or f"cancel-{order_id}-{time.time_ns()}"
        return self.submit([CancelOrder(account=account, client_order_id=request, symbol=symbol,
                                        order_id=order_id)])

    def replace(
        self, account: str, symbol: str, order_id: int, price: int, quantity: int,
        client_order_id: str = "",
    ) -> list[Event]:
        """Change a resting order's price and open quantity."""
        request = client_order_id or f"replace-{order_id}-{time.time_ns()}"
        return self.submit([ReplaceOrder(account=account, client_order_id=request, symbol=symbol,
                                         order_id=order_id, price=price, quantity=quantity)])

    def mass_cancel(self, account: str, symbol: str = "") -> list[Event]:
        """Cancel every resting order of an account (in one symbol, or everywhere)."""
        return self.submit([MassCancel(account=account, client_order_id=f"mass-{time.time_ns()}",
                                       symbol=symbol)])

    def halt(self, symbol: str, halted: bool = True) -> list[Event]:
        """Halt a symbol (or resume it with ``halted=False``)."""
        return self.submit([SetSymbolHalt(symbol=symbol, halted=halted)])

    def kill_switch(self, account: str, engaged: bool = True) -> list[Event]:
        """Engage (or release) an account's kill switch on every shard."""
        return self.submit([SetKillSwitch(account=account, engaged=engaged)])

    def set_limits(self, account: str, limits: RiskLimitsConfig, symbol: str = "") -> list[Event]:
        """Set an account's limits (``"*"`` for every account), or a symbol override."""
        return self.submit([SetRiskLimits(account=account, limits=limits, symbol=symbol)])

    # ---------------------------------------------------------------- queries

    def _book(self, symbol: str) -> BookHandle:
        return self.book(self.shard_map.shard_of(symbol))

    def l1(self, symbol: str) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        """Return the best bid and ask of a symbol as ``(price, quantity)`` or None."""
        bid, ask = self._book(symbol).l1(symbol).result()
        return (tuple(bid) if bid else None, tuple(ask) if ask else None)

    def l2(
        self, symbol: str, depth: int = 10
    ) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """Return up to ``depth`` levels per side as ``(price, quantity, order_count)``."""
        return self._book(symbol).l2(symbol, depth).result()

    def order(self, order_id: int) -> OrderRow | None:
        """Return a live order by id (its shard is in its high bits), or None if not open."""
        shard = order_id >> 40
        if not 0 <= shard < self.cluster.shards:
            return None
        result: OrderRow | None = self.book(shard).order(order_id).result()
        return result

    def open_orders(self, account: str, symbol: str = "") -> list[OrderRow]:
        """Return an account's live orders, oldest first per shard."""
        books = [self._book(symbol)] if symbol else self._books
        found: list[OrderRow] = []
        for orders in wait_all([book.open_orders(account, symbol) for book in books]):
            found.extend(orders)
        return found

    def positions(self, account: str) -> list[Position]:
        """Return an account's positions and PnL in every symbol it traded."""
        return self._gather([reader.positions(account) for reader in self._readers])

    def all_positions(self) -> list[Position]:
        """Return every account's positions."""
        return self._gather([reader.all_positions() for reader in self._readers])

    def exposure(self, account: str) -> list[AccountExposure]:
        """Return an account's risk exposure per shard."""
        return wait_all([reader.exposure(account) for reader in self._readers])

    def status(self) -> list[ShardStatusRow]:
        """Return each shard's book actor status."""
        return wait_all([book.status() for book in self._books])

    def wait_for_readers(self, timeout_s: float = 30.0) -> None:
        """Block until every shard's read models have folded every event published so far.

        A reader that is restarting is waited for (it recovers from the journal). Raise
        `TimeoutError` if that takes longer than ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        for shard in range(self.cluster.shards):
            target = self._retry_until(deadline, self._book_offset, shard)
            reader = self._readers[shard]
            while (offset := self._retry_until(deadline, self._reader_offset, reader)) < target:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{reader.name} is at event {offset - 1}, not {target - 1}, "
                        f"after {timeout_s} s"
                    )
                time.sleep(0.01)

    def _book_offset(self, shard: int) -> int:
        return self.book(shard).ping().result()[1]

    @staticmethod
    def _reader_offset(reader: ReaderHandle) -> int:
        return reader.offset().result()

    def _retry_until(self, deadline: float, call: Callable[[Any], int], argument: Any) -> int:
        while True:
            try:
                return call(argument)
            except (ShardUnavailableError, ActorUnavailableError) as error:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"still unavailable: {error}") from error
                time.sleep(0.1)

    @staticmethod
    def _gather(calls: Sequence[Call[list[Any]]]) -> list[Any]:
        found: list[Any] = []
        for rows in wait_all(calls):
            found.extend(rows)
        return found


def _order(
    account: str, symbol: str, side: Side, quantity: int, price: int, options: dict[str, Any]
) -> NewOrder:
    order_type = options.pop("order_type", OrderType.LIMIT if price else OrderType.MARKET)
    return NewOrder(
        account=account,
        client_order_id=options.pop("client_order_id", f"{account}-{time.time_ns()}"),
        symbol=symbol,
        side=side,
        price=price,
        quantity=quantity,
        order_type=order_type,
        time_in_force=options.pop(
            "time_in_force", TimeInForce.GTC if order_type == OrderType.LIMIT else TimeInForce.IOC
        ),
        post_only=options.pop("post_only", False),
        self_trade_prevention=options.pop("self_trade_prevention", SelfTradePrevention.NONE),
        **options,
    )
