"""The gateway's engine: routing to shards, the gateway's own checks, and its event feeds.

`GatewayCore` is what the gRPC services call once a request is authenticated and converted:
it routes internal commands to their shard's `ShardBatcher`, refuses what the gateway can
decide itself (a halted symbol, a killed account, an order id that cannot be in the symbol's
shard, an account over its rate), and keeps one `ShardFeed` per shard for the streams.

A feed gets the events of the gateway's own batches from the replies (the batcher's
``on_reply``): each batch names this gateway as its origin, so the book does not push them
back (that push was a second Ray call per batch, ~22% of a batched order's CPU). The events of
other origins (other gateways, clients that bypass gateways) are pushed. A batch whose reply
never came (a timeout, a lost answer) may have been applied all the same: the feed then reads
it from the journal (`_catch_up`), right after the failure rather than at the next gap.

It also keeps the feeds attached: a maintenance loop pings every book actor, subscribes the
gateway again when a book actor restarted (a new process forgets its readers), fills gaps
from the journal, and reports health. A quiet shard (up, followed without gap or lag, no
event since its last check, and held alive by Ray's own view of the actor, which costs no
call) is pinged only every ``quiet_check_s`` instead of every ``health_check_s``: a restart
is still seen within ``health_check_s`` (Ray marks the actor restarting at once), but a
restart quicker than ``health_check_s``, or a push to this gateway lost while the shard is
otherwise quiet, waits for the next ping (up to ``quiet_check_s``).

It makes client order ids unique per account across shards (`AccountWideIds`): a request
whose id was already used on another shard goes to that shard, which answers it as the
duplicate it is.

Its own refusals are `OrderNotFoundError`, `SymbolHaltedError`, `AccountKilledError` and
`ShardUnavailableError` (a shard's client order ids are not read yet); the batcher's and the
rate limiter's pass through. All are in `protocols.errors`, where the tree is drawn.

Every time the gateway reads comes from one injected `Clock`: the core hands it to the rate
limiter, the feeds and (through ``core.clock``) the services' ingress timestamps, so a test
that gives a fake clock controls all of them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Protocol

from actors.core.engine import ORDER_ID_SHARD_BITS, client_order_id_uses
from cluster.config import ShardMap
from cluster.gateway.auth import RateLimiter
from cluster.gateway.batching import BatchObserver, ShardBatcher
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
    CancelOrder,
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

_ROW_ACCOUNT: Final = 1 + NewOrder.__struct_fields__.index("account")
_ROW_CLIENT_ORDER_ID: Final = 1 + NewOrder.__struct_fields__.index("client_order_id")
_NEW_ORDER_TAG: Final = NewOrder.__struct_config__.tag
_IDEMPOTENT: Final = (NewOrder, CancelOrder, ReplaceOrder)


class AccountWideIds:
    """Know which shard each recent (account, client order id) was used on, so an id is
    unique per account across every shard, not only within one.

    Each shard already refuses a reuse of an id it remembers (`actors.core.engine`, a window
    of its last ``window`` ids, journaled and snapshotted, so it survives any restart) and
    names the original request. This class is the gateway's part: it mirrors the union of the
    shards' windows, and `destination` sends a request whose id was used on another shard to
    that shard instead of the symbol's. The shard that holds the id then answers with its own
    ``DUPLICATE_CLIENT_ORDER_ID`` reject (journaled, naming the original request and order,
    on the execution stream), exactly as it answers a retry; nothing is applied.

    It learns ids from three places: the journals at start (the window of the same replay
    that gives the gateway its picture, `JournalHistory.view`), the events the feeds fold of
    batches it did not send (`observe`: other gateways' and direct clients' requests), and its
    own requests as it routes them (`destination`, before the reply, so two requests in flight
    at this gateway cannot both pass; their events would teach it nothing more, and skipping
    them saved ~0.8 us of the gateway's CPU per batched order).

    Why here and not an owner shard per account: an owner shard would put a second Ray hop
    and a second journal append (~1 ms of CPU each way here) on every order whose symbol is
    not on its account's shard, and split every batch in two phases; the gateway already sees
    every shard's events in order, so it costs a dict lookup per request. The price is the
    limits, which an owner shard would not have:

    * two gateways that receive the same new id for two shards within the time an event
      takes to reach the other gateway (a push after the batch, milliseconds) both let it
      through, and each shard enters it;
    * clients that bypass gateways (`cluster.clients.ray_client`) get the per-shard rule only
      (their ids are learned by the gateways, which route a later reuse to their shard);
    * like the shards, it remembers the last ``window`` ids per shard: an id older than that
      is forgotten, on every shard alike;
    * a request it routed but the shard never applied (refused at the gateway's queue, a shard
      that died before journaling it) still marks its id as used on that shard: a reuse for
      another shard's symbol then goes there and is rejected (``UNKNOWN_SYMBOL``, spending the
      id), which never enters an order twice.

    Pure: no clock, no I/O; the gateway core feeds it.
    """

    def __init__(self, shards: int, window: int) -> None:
        self.window = window
        """Ids remembered per shard, as each shard's engine does (0: none, no checks)."""
        self.loaded = [window == 0] * shards
        """Per shard, whether its journal's ids are in (until then `destination` refuses)."""
        self._all_loaded = False
        self._shard_of: dict[tuple[str, str], int] = {}
        self._order: list[deque[tuple[str, str]]] = [deque() for _ in range(shards)]

    def __len__(self) -> int:
        return len(self._shard_of)

    def shard_of(self, account: str, client_order_id: str) -> int | None:
        """Return the shard the id was used on, or None if it is not remembered."""
        return self._shard_of.get((account, client_order_id))

    def load(self, shard: int, keys: Iterable[tuple[str, str]]) -> None:
        """Learn a shard's window (oldest first), e.g. replayed from its journal."""
        if self.window:
            for key in keys:
                self._learn(shard, key)
        self.loaded[shard] = True

    def observe(self, shard: int, events: Iterable[Any]) -> None:
        """Learn the ids a shard's events show used (see `client_order_id_uses`)."""
        if self.window:
            for account, client_order_id, _, _ in client_order_id_uses(events):
                self._learn(shard, (account, client_order_id))

    def destination(self, account: str, client_order_id: str, shard: int) -> int:
        """Return the shard a request for ``shard`` must go to (where its id was used, if it
        was), and remember the id as used there.

        Raise `ShardUnavailableError` while some shard's ids are not loaded: a reuse of one
        of them could not be recognised.
        """
        if not self.window or not client_order_id:
            return shard
        key = (account, client_order_id)
        known = self._shard_of.get(key)
        if known is not None:
            return known
        if not self._all_loaded:
            if not all(self.loaded):
                missing = self.loaded.index(False)
                raise ShardUnavailableError(
                    missing, "this gateway has not read its client order ids from the journal yet"
                )
            self._all_loaded = True
        self._learn(shard, key)
        return shard

    def _learn(self, shard: int, key: tuple[str, str]) -> None:
        if key in self._shard_of:  # the first use is the one a reuse is sent to
            return
        self._shard_of[key] = shard
        order = self._order[shard]
        order.append(key)
        if len(order) > self.window:
            oldest = order.popleft()
            if self._shard_of.get(oldest) == shard:
                del self._shard_of[oldest]


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
            ShardLink(shard, namespace, timeout_s=config.shard_timeout_s, origin=name)
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
        self.ids = AccountWideIds(self.shards, client_order_id_window)
        for shard, history in enumerate(self.histories):
            if not history.directory.exists():  # a shard that never ran has no ids to read
                self.ids.load(shard, ())
        self.feeds: list[ShardFeed] = [
            ShardFeed(
                shard,
                [instrument.symbol for instrument in by_shard[shard]],
                ring_events=config.ring_events,
                history=self.histories[shard],
                on_change=self.notifier.notify,
                clock=self.clock.monotonic,
                on_fold=functools.partial(self.ids.observe, shard),
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
                on_failure=functools.partial(self.on_batch_failed, shard),
            )
            for shard in range(self.shards)
        ]
        self._catching_up: set[int] = set()
        self.shard_up = [False] * self.shards
        self.shard_errors = [""] * self.shards
        self._incarnations: list[str | None] = [None] * self.shards
        self._lag_targets: list[int | None] = [None] * self.shards
        self._checked: list[tuple[float, int] | None] = [None] * self.shards
        """When each shard was last pinged, and the feed's next seq then."""
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
                # the same replay: the window is exactly where the feed starts
                self.ids.load(shard, view.client_order_ids)
                feed.start(view.next_seq, view.books, view.halted_symbols, view.killed_accounts)
                log.info("gateway %s follows shard %d from event %d", self.name, shard,
                         view.next_seq - 1)
            self.shard_up[shard] = True
            self.shard_errors[shard] = ""
        except ShardUnavailableError as error:
            self.shard_up[shard] = False
            self.shard_errors[shard] = str(error)
            log.warning("gateway %s: shard %d not attached yet: %s", self.name, shard, error)
            if not self.ids.loaded[shard]:
                # the journal answers without the actor: other shards need not wait for it
                try:
                    await self._load_ids(shard)
                except Exception:
                    log.exception("gateway %s: cannot read shard %d's client order ids",
                                  self.name, shard)
        except Exception as error:  # e.g. the journal is unreadable from this node
            self.shard_up[shard] = False
            self.shard_errors[shard] = f"{type(error).__name__}: {error}"
            log.exception("gateway %s: cannot follow shard %d yet", self.name, shard)

    async def _load_ids(self, shard: int) -> None:
        view = await asyncio.to_thread(self.histories[shard].view)
        self.ids.load(shard, view.client_order_ids)

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(self.config.health_check_s)
            try:
                # decide first: a coroutine made before a failing decision would never run
                due = [shard for shard in range(self.shards) if not self._quiet(shard)]
                await asyncio.gather(*(self._check(shard) for shard in due))
                self._report_health()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive anything a check does
                log.exception("gateway %s: maintenance failed; trying again", self.name)

    def _quiet(self, shard: int) -> bool:
        """Tell whether a ping of the shard now would only confirm what the gateway knows."""
        checked, feed = self._checked[shard], self.feeds[shard]
        return (
            checked is not None
            and self.clock.monotonic() - checked[0] < self.config.quiet_check_s
            and checked[1] == feed.next_seq
            and self.shard_up[shard]
            and feed.ready.is_set()
            and feed.gap_end is None
            and self._lag_targets[shard] is None
            and shard not in self._catching_up
            and self.links[shard].book_alive() is True
        )

    async def _check(self, shard: int) -> None:
        feed = self.feeds[shard]
        self._checked[shard] = (self.clock.monotonic(), feed.next_seq)
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

    def on_batch_failed(self, shard: int, error: BaseException) -> None:
        """Catch the shard's feed up from the journal after a batch whose reply never came.

        The shard may have applied the batch (the call timed out, or the answer was lost); it
        did not push it here, since this gateway is the batch's origin. Without this, the feed
        would find those events only at the next gap or lag check.
        """
        if shard not in self._catching_up:
            self._catching_up.add(shard)
            self.spawn(self._catch_up(shard))

    async def _catch_up(self, shard: int) -> None:
        feed = self.feeds[shard]
        try:
            # Ray runs this caller's calls to the book in order: the ping answers after the
            # failed batch did, so its next seq covers that batch's events if it was applied
            _, next_seq = await self.links[shard].ping()
            for _ in range(2):  # a repair already running may stop short of next_seq
                if not feed.ready.is_set() or feed.next_seq >= next_seq:
                    return
                repair = feed.repair(next_seq - 1)
                if repair is None:
                    return
                await asyncio.wait({repair})
        except ShardUnavailableError as error:  # the maintenance loop follows it up
            log.info("gateway %s: shard %d did not answer after a failed batch: %s",
                     self.name, shard, error)
        finally:
            self._catching_up.discard(shard)

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
        """Send one command to its symbol's shard (a new order, cancel or replace whose
        client order id was used on another shard: to that one); return the shard and its
        events."""
        shard = self.symbol_shard[command.symbol]  # type: ignore[union-attr]
        if isinstance(command, _IDEMPOTENT):
            shard = self.ids.destination(command.account, command.client_order_id, shard)
        (events,) = await self.batchers[shard].enqueue([command])
        return shard, events

    async def route_many(
        self, commands: Sequence[Command | WireRow], shards: Sequence[int]
    ) -> list[tuple[int, list[Event]]]:
        """Send commands to the given shards (concurrently across shards, in order within
        one); return each command's shard and events, in the given order.

        A command may be a wire row (`protocols.convert.WireRow`) that encodes as one. As in
        `route_to_shard`, a new order, cancel or replace goes where its client order id was
        used, if that is another shard.
        """
        by_shard: dict[int, list[int]] = {}
        destination = self.ids.destination
        for index, (command, shard) in enumerate(zip(commands, shards, strict=True)):
            if type(command) is tuple:
                if command[0] == _NEW_ORDER_TAG:
                    shard = destination(command[_ROW_ACCOUNT], command[_ROW_CLIENT_ORDER_ID],
                                        shard)
            elif isinstance(command, _IDEMPOTENT):
                shard = destination(command.account, command.client_order_id, shard)
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

    def observe_batches(self, observer: BatchObserver) -> None:
        """Tell ``observer`` (the gateway's metrics) what every shard batch does."""
        for batcher in self.batchers:
            batcher.observer = observer

    def trace_batches(self, traceparent: Callable[[], str | None]) -> None:
        """Have every shard batch carry its requests' trace contexts: ``traceparent`` returns
        the current span's W3C traceparent (`actors.tracing.current_traceparent`)."""
        for batcher in self.batchers:
            batcher.traceparent = traceparent

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
                 "commands": batcher.commands_sent, "failed": batcher.failed_batches,
                 "queued": batcher.queued,
                 "in_flight": batcher.in_flight}
                for batcher in self.batchers
            ],
            "shard_up": list(self.shard_up),
        }
