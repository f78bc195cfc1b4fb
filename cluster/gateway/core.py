"""The gateway's engine: routing to shards, the gateway's own checks, and its event feeds.

`GatewayCore` is what the gRPC services call once a request is authenticated and converted:
it routes internal commands to their shard's `ShardBatcher`, refuses what the gateway can
decide itself (a halted symbol, a killed account, an order id that cannot be in the symbol's
shard, an account over its rate), and keeps one `ShardFeed` per shard for the streams.

It also keeps the feeds attached: a maintenance loop pings every book actor, subscribes the
gateway again when a book actor restarted (a new process forgets its readers), fills gaps
from the journal, and reports health.

Its own refusals are `OrderNotFoundError`, `SymbolHaltedError` and `AccountKilledError`;
the batcher's and the rate limiter's pass through. All are in `protocols.errors`, where the
tree is drawn.

Every time the gateway reads comes from one injected `Clock`: the core hands it to the rate
limiter, the feeds and (through ``core.clock``) the services' ingress timestamps, so a test
that gives a fake clock controls all of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from actors.core.engine import ORDER_ID_SHARD_BITS
from cluster.config import ShardMap
from cluster.gateway.auth import RateLimiter
from cluster.gateway.batching import ShardBatcher
from cluster.gateway.config import GatewayConfig
from cluster.gateway.history import JournalHistory, ShardView
from cluster.gateway.shards import ShardLink
from cluster.gateway.streams import Notifier, ShardFeed
from cluster.storage.shard import shard_directory
from protocols.convert import WireRow
from protocols.errors import (
    AccountKilledError,
    OrderNotFoundError,
    ShardUnavailableError,
    SymbolHaltedError,
)
from protocols.messages import (
    Command,
    Event,
    Instrument,
    MassCancel,
    NewOrder,
    ReplaceOrder,
    SetKillSwitch,
    SetRiskLimits,
)
from protocols.rows import GatewayShardRow, OrderRow, PositionRow, ShardStatusRow

log = logging.getLogger(__name__)


class Clock(Protocol):
    """The two clocks a gateway reads."""

    def time_ns(self) -> int:
        """Return the wall-clock time in integer nanoseconds (ingress timestamps, ids)."""
        ...

    def monotonic(self) -> float:
        """Return monotonic seconds (rates, gap and heartbeat timers)."""
        ...


class SystemClock:
    """Read the real clocks: the default `Clock`."""

    def time_ns(self) -> int:
        """Return `time.time_ns`."""
        return time.time_ns()

    def monotonic(self) -> float:
        """Return `time.monotonic`."""
        return time.monotonic()


SYSTEM_CLOCK = SystemClock()


class GatewayCore:
    """Route commands to shards in coalesced batches; follow every shard's events."""

    def __init__(
        self,
        name: str,
        config: GatewayConfig,
        *,
        namespace: str,
        shard_map: ShardMap,
        instruments: Sequence[Instrument],
        data_dir: str,
        client_order_id_window: int,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.name = name
        self.config = config
        self.namespace = namespace
        self.shard_map = shard_map
        self.shards = shard_map.shard_count
        self.instruments = list(instruments)
        self.symbol_shard = {i.symbol: shard_map.shard_of(i.symbol) for i in self.instruments}
        self.clock = clock
        self.limiter = RateLimiter(config.requests_per_second, config.request_burst,
                                   self.clock.monotonic)
        self.notifier = Notifier()
        self.links = [
            ShardLink(shard, namespace, timeout_s=config.shard_timeout_s)
            for shard in range(self.shards)
        ]
        by_shard: dict[int, list[Instrument]] = {shard: [] for shard in range(self.shards)}
        for instrument in self.instruments:
            by_shard[self.symbol_shard[instrument.symbol]].append(instrument)
        self.histories = [
            JournalHistory(shard_directory(data_dir, shard), shard, by_shard[shard],
                           client_order_id_window)
            for shard in range(self.shards)
        ]
        self.feeds = [
            ShardFeed(
                shard,
                [instrument.symbol for instrument in by_shard[shard]],
                ring_events=config.ring_events,
                history=self.histories[shard],
                on_change=self.notifier.notify,
                clock=self.clock.monotonic,
            )
            for shard in range(self.shards)
        ]
        self.batchers = [
            ShardBatcher(
                shard,
                self.links[shard].apply_batch,
                max_batch_commands=config.max_batch_commands,
                max_in_flight=config.max_in_flight_per_shard,
                max_queued=config.max_queued_commands,
                linger_s=config.linger_s,
                on_reply=self.feeds[shard].offer,
            )
            for shard in range(self.shards)
        ]
        self.shard_up = [False] * self.shards
        self.shard_errors = [""] * self.shards
        self._incarnations: list[str | None] = [None] * self.shards
        self._lag_targets: list[int | None] = [None] * self.shards
        self._subscriber: Callable[[int], Any] | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._health_listeners: list[Callable[[bool], None]] = []
        self._background: set[asyncio.Task[Any]] = set()

    # ---------------------------------------------------------------- lifecycle

    async def start(self, subscriber: Callable[[int], Any]) -> None:
        """Subscribe to every shard and start following (``subscriber(shard)`` is the handle
        the shard pushes to); return once every feed is live or the first attempt failed."""
        self._subscriber = subscriber
        await asyncio.gather(*(self._attach(shard) for shard in range(self.shards)))
        self._maintenance = asyncio.get_running_loop().create_task(self._maintain())
        self._report_health()

    async def stop(self) -> None:
        """Stop the maintenance loop and fail whatever waits for a shard."""
        if self._maintenance is not None:
            self._maintenance.cancel()
            await asyncio.gather(self._maintenance, return_exceptions=True)
        await asyncio.gather(*(batcher.close() for batcher in self.batchers))
        for task in list(self._background):
            task.cancel()

    def on_health(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(serving)`` whenever the gateway's health is re-evaluated."""
        self._health_listeners.append(listener)

    @property
    def serving(self) -> bool:
        """Whether every shard answers and every feed is live."""
        return all(self.shard_up) and all(feed.ready.is_set() for feed in self.feeds)

    async def _attach(self, shard: int) -> None:
        """Subscribe to a shard (again) and, the first time, load its picture."""
        link, feed = self.links[shard], self.feeds[shard]
        assert self._subscriber is not None
        try:
            incarnation, _ = await link.ping()
            await link.add_reader(self.name, self._subscriber(shard))
            self._incarnations[shard] = incarnation
            if not feed.ready.is_set():
                # the subscription is in place: everything after the journal's end is pushed
                view: ShardView = await asyncio.to_thread(self.histories[shard].view)
                feed.start(view.next_seq, view.books, view.halted_symbols, view.killed_accounts)
                log.info("gateway %s follows shard %d from event %d", self.name, shard,
                         view.next_seq - 1)
            self.shard_up[shard] = True
            self.shard_errors[shard] = ""
        except ShardUnavailableError as error:
            self.shard_up[shard] = False
            self.shard_errors[shard] = str(error)
            log.warning("gateway %s: shard %d not attached yet: %s", self.name, shard, error)
        except Exception as error:  # e.g. the journal is unreadable from this node
            self.shard_up[shard] = False
            self.shard_errors[shard] = f"{type(error).__name__}: {error}"
            log.exception("gateway %s: cannot follow shard %d yet", self.name, shard)

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(self.config.health_check_s)
            try:
                await asyncio.gather(*(self._check(shard) for shard in range(self.shards)))
                self._report_health()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive anything a check does
                log.exception("gateway %s: maintenance failed; trying again", self.name)

    async def _check(self, shard: int) -> None:
        feed = self.feeds[shard]
        try:
            incarnation, next_seq = await self.links[shard].ping()
        except ShardUnavailableError as error:
            self.shard_up[shard] = False
            self.shard_errors[shard] = str(error)
            return
        if incarnation != self._incarnations[shard] or not feed.ready.is_set():
            log.warning("gateway %s: shard %d is a new incarnation; subscribing again",
                        self.name, shard)
            await self._attach(shard)
            return
        self.shard_up[shard] = True
        self.shard_errors[shard] = ""
        gap_end = feed.gap_end
        if gap_end is not None and feed.gap_since is not None and (
            self.clock.monotonic() - feed.gap_since > self.config.health_check_s / 2
        ):
            feed.repair(gap_end)
        else:
            # events the shard has made but that never arrived (dropped by a slow fanout)
            target = self._lag_targets[shard]
            if target is not None and feed.next_seq <= target:
                feed.repair(target)
        self._lag_targets[shard] = next_seq - 1 if feed.next_seq < next_seq else None

    def _report_health(self) -> None:
        serving = self.serving
        for listener in self._health_listeners:
            listener(serving)

    def on_events(self, shard: int, batches: Sequence[tuple[int, int, bytes]]) -> int:
        """Take a shard's pushed event batches; return the next seq the feed expects."""
        feed = self.feeds[shard]
        for first_seq, last_seq, payload in batches:
            feed.push(first_seq, last_seq, payload)
        return feed.next_seq

    def offset(self) -> int:
        """Return the sum of the feeds' positions (grows while the gateway keeps up)."""
        return sum(feed.next_seq for feed in self.feeds)

    # ---------------------------------------------------------------- checks

    def shard_of_symbol(self, symbol: str) -> int:
        return self.symbol_shard[symbol]

    def check_tradable(self, command: NewOrder | ReplaceOrder, where: str = "") -> None:
        """Refuse an order or replace for a halted symbol or a killed account."""
        feed = self.feeds[self.symbol_shard[command.symbol]]
        if command.symbol in feed.halted:
            raise SymbolHaltedError(f"{where}symbol {command.symbol!r} is halted")
        if command.account in feed.killed:
            raise AccountKilledError(
                f"{where}account {command.account!r} has its kill switch engaged"
            )

    def check_batch_tradable(
        self, accounts: Sequence[str], symbols: Sequence[str], shards: Sequence[int]
    ) -> None:
        """Refuse a batch with an order for a halted symbol or a killed account (by index)."""
        feeds = self.feeds
        halted = set().union(*(feed.halted for feed in feeds))
        if halted:
            for index, symbol in enumerate(symbols):
                if symbol in halted:
                    raise SymbolHaltedError(f"orders[{index}].symbol {symbol!r} is halted")
        if any(feed.killed for feed in feeds):
            for index, (account, shard) in enumerate(zip(accounts, shards, strict=True)):
                if account in feeds[shard].killed:
                    raise AccountKilledError(
                        f"orders[{index}].account {account!r} has its kill switch engaged"
                    )

    def check_order_shard(self, symbol: str, order_id: int) -> int:
        """Return the symbol's shard; raise `OrderNotFoundError` if the id is from another."""
        shard = self.symbol_shard[symbol]
        if order_id >> ORDER_ID_SHARD_BITS != shard:
            raise OrderNotFoundError(f"order {order_id} is not an order of {symbol!r}")
        return shard

    def take_rate(self, account: str, cost: int = 1) -> None:
        """Spend the account's request budget (raise `RateLimitedError` when it is short)."""
        self.limiter.take(account, cost)

    # ---------------------------------------------------------------- commands

    async def route_to_shard(self, command: Command) -> tuple[int, list[Event]]:
        """Send one command to its symbol's shard; return the shard and its events."""
        shard = self.symbol_shard[command.symbol]  # type: ignore[union-attr]
        (events,) = await self.batchers[shard].enqueue([command])
        return shard, events

    async def route_many(
        self, commands: Sequence[Command | WireRow], shards: Sequence[int]
    ) -> list[tuple[int, list[Event]]]:
        """Send commands to the given shards (concurrently across shards, in order within
        one); return each command's shard and events, in the given order.

        A command may be a wire row (`protocols.convert.WireRow`) that encodes as one.
        """
        by_shard: dict[int, list[int]] = {}
        for index, shard in enumerate(shards):
            by_shard.setdefault(shard, []).append(index)
        order = list(by_shard)
        replies = await asyncio.gather(*(
            self.batchers[shard].enqueue([commands[index] for index in by_shard[shard]])
            for shard in order
        ))
        out: list[tuple[int, list[Event]]] = [(0, [])] * len(commands)
        for shard, reply in zip(order, replies, strict=True):
            for index, events in zip(by_shard[shard], reply, strict=True):
                out[index] = (shard, events)
        return out

    async def broadcast(self, command: Command) -> list[tuple[int, list[Event]]]:
        """Send an account-wide command (no symbol) to every shard; return each one's events."""
        replies = await asyncio.gather(*(
            batcher.enqueue([command]) for batcher in self.batchers
        ))
        return [(shard, reply[0]) for shard, reply in enumerate(replies)]

    async def route(self, command: MassCancel | SetRiskLimits | SetKillSwitch | Command
                    ) -> list[tuple[int, list[Event]]]:
        """Send a command to its symbol's shard, or to every shard if it names no symbol."""
        symbol = getattr(command, "symbol", "")
        if symbol:
            return [await self.route_to_shard(command)]
        return await self.broadcast(command)

    def spawn(self, work: Any) -> None:
        """Run a coroutine in the background (e.g. a cancel-on-disconnect), keeping a reference."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ---------------------------------------------------------------- reads

    async def order(self, account: str, order_id: int) -> OrderRow:
        """Return the account's open order; raise `OrderNotFoundError`."""
        shard = order_id >> ORDER_ID_SHARD_BITS
        if not 0 <= shard < self.shards:
            raise OrderNotFoundError(f"order {order_id} was never entered here")
        row = await self.links[shard].order(order_id)
        if row is None or row.account != account:
            raise OrderNotFoundError(f"order {order_id} is not open for account {account!r}")
        return row

    async def open_orders(self, account: str, symbol: str) -> list[OrderRow]:
        """Return the account's open orders in one symbol, or in all."""
        shards = [self.symbol_shard[symbol]] if symbol else range(self.shards)
        rows = await asyncio.gather(*(self.links[s].open_orders(account, symbol) for s in shards))
        return [row for part in rows for row in part]

    async def positions(self, account: str) -> list[PositionRow]:
        """Return the account's positions in every shard."""
        rows = await asyncio.gather(*(link.positions(account) for link in self.links))
        return [row for part in rows for row in part]

    async def book(
        self, symbol: str, depth: int
    ) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """Return the symbol's book from its shard (the authority), ``depth`` levels a side."""
        return await self.links[self.symbol_shard[symbol]].l2(symbol, depth)

    async def shard_statuses(self) -> list[GatewayShardRow]:
        """Return each shard's status as the book actor and this gateway see it."""

        async def one(shard: int) -> GatewayShardRow:
            book: ShardStatusRow | None = None
            try:
                book = await self.links[shard].status()
                error = book.failed or ""
            except ShardUnavailableError as failure:
                error = str(failure)
            feed = self.feeds[shard]
            return GatewayShardRow(
                shard=shard, up=not error, error=error, gateway_next_seq=feed.next_seq,
                halted_symbols=sorted(feed.halted), killed_accounts=sorted(feed.killed),
                book=book,
            )

        return list(await asyncio.gather(*(one(shard) for shard in range(self.shards))))

    def stats(self) -> dict[str, Any]:
        """Return counters for status pages and tests."""
        return {
            "feeds": [
                {"shard": feed.shard, "next_seq": feed.next_seq, "ready": feed.ready.is_set(),
                 "ring_start_seq": feed.ring.start_seq, "repairs": feed.repairs,
                 "pushed_batches": feed.pushed_batches}
                for feed in self.feeds
            ],
            "batchers": [
                {"shard": batcher.shard, "batches": batcher.batches_sent,
                 "commands": batcher.commands_sent, "queued": batcher.queued,
                 "in_flight": batcher.in_flight}
                for batcher in self.batchers
            ],
            "shard_up": list(self.shard_up),
        }
