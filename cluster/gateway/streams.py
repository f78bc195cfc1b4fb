"""A gateway's view of every shard's event log, and the streams it serves from it.

Each shard's book actor pushes its event batches to the gateway (the gateway is one of the
shard's readers, like the shards' reader actors). Per shard, a `ShardFeed`

* folds the events in sequence order, exactly once, whether they come from the replies to
  the gateway's own batches (`offer`) or pushed (`push`): pushes may arrive twice, out of order
  (Ray does not order calls to an async actor) or not at all (the publisher drops batches for
  a slow reader; a restarted book actor forgets its readers), so batches wait until the
  sequence is contiguous and a gap that persists is filled from the journal;
* keeps the market-data state: the full L2 book of each symbol, halted symbols, killed
  accounts (the gateway's own checks use the last two);
* keeps a bounded `Ring` of recent events for the streams.

Streams pull from the feeds at their own pace with a cursor per shard, so a slow client costs
memory only for its cursor:

* `follow_executions` yields a subscriber's execution events from a per-shard cursor: from the
  journal while the cursor is older than the ring (a resume after a long disconnect, or from
  before this gateway started), then from the ring, then live. Nothing is missed or repeated
  because a chunk's cursor covers exactly the events yielded up to and including that chunk,
  plus those that did not concern the subscriber (the contract in docs/GATEWAY.md); a cursor
  beyond the journal's end is refused;
* `follow_market_data` yields a snapshot of each symbol, then level changes and trades, each
  with the seq of the symbol's previous update on the stream; a reader that falls out of the
  ring gets fresh snapshots instead (conflation).

Nothing here touches Ray or gRPC: events arrive through `ShardFeed.push`, and the journal
through the injected `JournalHistory`. Nor does it read the time itself: a feed's gap timer
and a stream's heartbeat use the monotonic clock they are given (`GatewayCore` passes its
own), so tests run on a fake one. A stream that cannot resume from its cursor fails with
`protocols.errors.HistoryUnavailableError`. Journal replays run in worker threads through
`Replay`, which a cancelled stream or repair can close without racing the thread.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from protocols.errors import HistoryUnavailableError
from protocols.messages import (
    Event,
    KillSwitchSet,
    LevelChanged,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderReplaced,
    Side,
    SymbolHaltSet,
    Trade,
    decode_events,
)

log = logging.getLogger(__name__)

Levels = list[tuple[int, int, int]]


class History(Protocol):
    """The journal of one shard, as `cluster.gateway.history.JournalHistory` reads it."""

    def events(self, from_seq: int, to_seq: int | None = None) -> Iterator[list[Event]]:
        """Yield the events ``from_seq..to_seq`` batch by batch."""
        ...

    def last_seq(self) -> int:
        """Return the seq of the journal's last event (0 for an empty journal)."""
        ...


class Replay:
    """Step a blocking iterator (a journal replay) in worker threads; close it safely.

    A generator may be closed only while no thread runs it. A stream or a repair cancelled
    while a worker thread is inside ``next`` must not close it from the event loop (that
    raises "ValueError: generator already executing" and leaves the replay running): `close`
    only marks it, and the thread closes it as soon as its step returns, so the replay stops
    after the step in progress and the cancellation stays a plain cancellation.
    """

    def __init__(self, iterator: Iterator[list[Event]]) -> None:
        self._iterator = iterator
        self._lock = threading.Lock()
        self._running = False
        self._closed = False

    async def next(self) -> list[Event] | None:
        """Return the next batch, or None at the end (or once closed)."""
        return await asyncio.to_thread(self._step)

    def _step(self) -> list[Event] | None:
        with self._lock:
            if self._closed:
                return None
            self._running = True
        try:
            return next(self._iterator, None)
        finally:
            with self._lock:
                self._running = False
                if self._closed:
                    self._close_iterator()

    def close(self) -> None:
        """Close the iterator now if no thread runs it, else right after its step."""
        with self._lock:  # held only around flag updates, never around a step
            if self._closed:
                return
            self._closed = True
            if not self._running:
                self._close_iterator()

    def _close_iterator(self) -> None:
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()


class Notifier:
    """Wake every waiting stream when any feed has new events."""

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    def notify(self) -> None:
        """Wake the waiters."""
        if self._future is not None and not self._future.done():
            self._future.set_result(None)
        self._future = None

    async def wait(self, timeout_s: float) -> None:
        """Return at the next notification, or after ``timeout_s``."""
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._future), timeout_s)


class Ring:
    """A shard's most recent events, contiguous in seq, at most ``max_events`` of them."""

    def __init__(self, max_events: int, start_seq: int = 1) -> None:
        self.max_events = max_events
        self._firsts: list[int] = []
        self._batches: list[list[Event]] = []
        self._head = 0
        self._events = 0
        self._next_seq = start_seq

    @property
    def start_seq(self) -> int:
        """The oldest seq still held (the next seq to come if the ring is empty)."""
        if self._head < len(self._firsts):
            return self._firsts[self._head]
        return self._next_seq

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def reset(self, next_seq: int) -> None:
        """Forget everything; the next batch starts at ``next_seq``."""
        self._firsts, self._batches, self._head, self._events = [], [], 0, 0
        self._next_seq = next_seq

    def append(self, events: list[Event]) -> None:
        """Add a batch that starts exactly at `next_seq`."""
        if not events:
            return
        if events[0].seq != self._next_seq:
            raise ValueError(f"ring at {self._next_seq} given a batch from {events[0].seq}")
        self._firsts.append(events[0].seq)
        self._batches.append(events)
        self._events += len(events)
        self._next_seq = events[-1].seq + 1
        while self._events > self.max_events and len(self._firsts) - self._head > 1:
            self._events -= len(self._batches[self._head])
            self._batches[self._head] = []
            self._head += 1
        if self._head > 1024 and self._head * 2 > len(self._firsts):
            del self._firsts[: self._head]
            del self._batches[: self._head]
            self._head = 0

    def after(self, seq: int, limit: int) -> list[Event] | None:
        """Return up to ``limit`` events after ``seq``; None if some were already dropped."""
        wanted = seq + 1
        if wanted < self.start_seq:
            return None
        if wanted >= self._next_seq:
            return []
        index = bisect.bisect_right(self._firsts, wanted, lo=self._head) - 1
        out: list[Event] = []
        while index < len(self._firsts) and len(out) < limit:
            batch = self._batches[index]
            offset = wanted - self._firsts[index] if not out else 0
            out.extend(batch[offset: offset + limit - len(out)])
            index += 1
        return out


class MarketBook:
    """The L2 book of one symbol, kept from a snapshot and `LevelChanged` events."""

    def __init__(self, bids: Levels = (), asks: Levels = ()) -> None:  # type: ignore[assignment]
        self.bids = {price: (quantity, count) for price, quantity, count in bids}
        self.asks = {price: (quantity, count) for price, quantity, count in asks}

    def apply(self, event: LevelChanged) -> None:
        """Apply a level change (quantity 0 removes the level)."""
        side = self.bids if event.side == Side.BUY else self.asks
        if event.quantity:
            side[event.price] = (event.quantity, event.order_count)
        else:
            side.pop(event.price, None)

    def levels(self) -> tuple[Levels, Levels]:
        """Return (bids best first, asks best first)."""
        bids = [(price, *self.bids[price]) for price in sorted(self.bids, reverse=True)]
        asks = [(price, *self.asks[price]) for price in sorted(self.asks)]
        return bids, asks


class ShardFeed:
    """Fold one shard's pushed event batches in order; keep its ring and market data."""

    def __init__(
        self,
        shard: int,
        symbols: Collection[str],
        *,
        ring_events: int,
        history: History | None,
        on_change: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        on_fold: Callable[[Sequence[Event]], None] | None = None,
    ) -> None:
        self.shard = shard
        self.symbols = set(symbols)
        self.history = history
        self.on_change = on_change
        self.on_fold = on_fold
        """Shown every folded batch, in sequence order, except the gateway's own (`offer`): the
        gateway's client order id window, which learned its own requests' ids as it routed
        them (`cluster.gateway.core.AccountWideIds.destination`)."""
        self.clock = clock
        self.ring = Ring(ring_events)
        self.ready = asyncio.Event()
        self.next_seq = 0
        """The next event to fold; 0 until started."""
        self.last_ts_ns = 0
        self.books: dict[str, MarketBook] = {symbol: MarketBook() for symbol in symbols}
        self.halted: set[str] = set()
        self.killed: set[str] = set()
        self._waiting: dict[int, tuple[int, bytes | list[Event]]] = {}
        """Batches not folded yet: first_seq -> (last_seq, encoded or decoded events)."""
        self.gap_since: float | None = None
        self._repair: asyncio.Task[None] | None = None
        self.repairs = 0
        self.pushed_batches = 0

    # ---------------------------------------------------------------- input

    def start(
        self,
        next_seq: int,
        books: Mapping[str, tuple[Levels, Levels]],
        halted: Collection[str],
        killed: Collection[str],
    ) -> None:
        """Begin after event ``next_seq - 1`` with this picture of the shard."""
        self.next_seq = next_seq
        self.ring.reset(next_seq)
        self.books = {
            symbol: MarketBook(*books.get(symbol, ([], []))) for symbol in self.symbols
        }
        self.halted = set(halted)
        self.killed = set(killed)
        self.ready.set()
        self._drain()
        self.on_change()

    def push(self, first_seq: int, last_seq: int, payload: bytes) -> None:
        """Take a published batch; fold it now if it is next, else keep it for later."""
        self.pushed_batches += 1
        if self.next_seq and last_seq < self.next_seq:
            return
        known = self._waiting.get(first_seq)
        if known is None or known[0] < last_seq:
            self._waiting[first_seq] = (last_seq, payload)
        if self.ready.is_set() and self._repair is None and self._drain():
            self.on_change()

    def offer(self, events: list[Event]) -> None:
        """Take the events of a batch this gateway sent, from the shard's reply (the shard does
        not push them here); `on_fold` is not shown them."""
        if not events:
            return
        first_seq, last_seq = events[0].seq, events[-1].seq
        if self.next_seq and last_seq < self.next_seq:
            return
        if first_seq not in self._waiting:
            self._waiting[first_seq] = (last_seq, events)
        if self.ready.is_set() and self._repair is None and self._drain():
            self.on_change()

    def _drain(self) -> bool:
        """Fold waiting batches while they continue the sequence; return whether any did."""
        folded = False
        while self._waiting:
            usable = [first for first in self._waiting if first <= self.next_seq]
            if not usable:
                if self.gap_since is None:  # not `or`: 0.0 is a valid reading
                    self.gap_since = self.clock()
                return folded
            for first in sorted(usable):
                last, payload = self._waiting.pop(first)
                if last < self.next_seq:
                    continue
                if isinstance(payload, bytes):
                    self.fold(decode_events(payload)[self.next_seq - first:])
                else:  # offered: this gateway's own batch
                    self.fold(payload[self.next_seq - first:], own=True)
                folded = True
        self.gap_since = None
        return folded

    def fold(self, events: Sequence[Event], own: bool = False) -> None:
        """Apply events that start exactly at `next_seq` (``own``: of a batch this gateway
        sent, not shown to `on_fold`)."""
        if not events:
            return
        books = self.books
        for event in events:
            kind = type(event)
            if kind is LevelChanged:
                book = books.get(event.symbol)  # type: ignore[union-attr]
                if book is not None:
                    book.apply(event)  # type: ignore[arg-type]
            elif kind is SymbolHaltSet:
                if event.halted:  # type: ignore[union-attr]
                    self.halted.add(event.symbol)  # type: ignore[union-attr]
                else:
                    self.halted.discard(event.symbol)  # type: ignore[union-attr]
            elif kind is KillSwitchSet:
                if event.engaged:  # type: ignore[union-attr]
                    self.killed.add(event.account)  # type: ignore[union-attr]
                else:
                    self.killed.discard(event.account)  # type: ignore[union-attr]
        self.ring.append(list(events))
        self.next_seq = events[-1].seq + 1
        self.last_ts_ns = events[-1].ts_ns
        if self.on_fold is not None and not own:
            self.on_fold(events)

    # ---------------------------------------------------------------- gaps

    @property
    def gap_end(self) -> int | None:
        """The last missing seq before the earliest waiting batch, if there is a gap."""
        if not self._waiting or not self.ready.is_set():
            return None
        first = min(self._waiting)
        return first - 1 if first > self.next_seq else None

    def repair(self, to_seq: int) -> asyncio.Task[None] | None:
        """Start filling ``next_seq..to_seq`` from the journal (once at a time)."""
        if self._repair is not None or to_seq < self.next_seq or not self.ready.is_set():
            return self._repair
        if self.history is None:
            log.error("shard %d: events %d..%d are missing and there is no journal to read",
                      self.shard, self.next_seq, to_seq)
            return None
        self._repair = asyncio.get_running_loop().create_task(self._run_repair(to_seq))
        return self._repair

    async def _run_repair(self, to_seq: int) -> None:
        assert self.history is not None
        log.warning("shard %d: reading events %d..%d from the journal", self.shard,
                    self.next_seq, to_seq)
        replay = Replay(self.history.events(self.next_seq, to_seq))
        try:
            while True:
                events = await replay.next()
                if events is None:
                    break
                fresh = [event for event in events if event.seq >= self.next_seq]
                if fresh and fresh[0].seq == self.next_seq:
                    self.fold(fresh)
            self.repairs += 1
        except Exception:
            log.exception("shard %d: reading the journal failed; trying again later", self.shard)
        finally:
            replay.close()
            self._repair = None
            self._drain()
            self.on_change()

    # ---------------------------------------------------------------- reads

    def market_snapshot(self, symbol: str) -> tuple[Levels, Levels]:
        """Return the symbol's book as of event `next_seq` - 1."""
        return self.books[symbol].levels()


# ------------------------------------------------------------------------------ executions


def concerns(event: Event, accounts: Collection[str] | None) -> bool:
    """Return whether an event is an execution report for one of ``accounts`` (None: any)."""
    kind = type(event)
    if kind is Trade:
        return accounts is None or (
            event.maker_account in accounts or event.taker_account in accounts  # type: ignore[union-attr]
        )
    if kind is OrderAccepted or kind is OrderRejected or kind is OrderCancelled or (
        kind is OrderReplaced
    ):
        return accounts is None or event.account in accounts  # type: ignore[union-attr]
    return False


@dataclass
class ExecutionChunk:
    """What a stream sends next: relevant events per shard, and its cursor after them."""

    parts: list[tuple[int, list[Event]]]
    cursor: dict[int, int]


@dataclass
class StreamSettings:
    """Pacing of a stream."""

    heartbeat_s: float = 1.0
    max_events_per_chunk: int = 4096
    clock: Callable[[], float] = time.monotonic
    """Monotonic seconds, for the heartbeat (a fake one in tests)."""


async def follow_executions(
    feeds: Mapping[int, ShardFeed],
    accounts: Collection[str] | None,
    after_seq: Mapping[int, int],
    notifier: Notifier,
    settings: StreamSettings = StreamSettings(),  # noqa: B008 - immutable in practice
) -> AsyncGenerator[ExecutionChunk, None]:
    """Yield the execution events of ``accounts`` after the per-shard cursor ``after_seq``.

    Shards not in ``after_seq`` start live. The first chunk is empty and carries the starting
    cursor; an empty chunk follows every ``heartbeat_s`` without news. Every chunk's cursor
    covers exactly the events delivered up to and including that chunk (and those between
    that did not concern ``accounts``), per shard: resuming from it misses and repeats
    nothing. Raise `HistoryUnavailableError` before the first chunk for a cursor beyond the
    end of its shard's journal, and later if events are needed that no journal holds.
    """
    for feed in feeds.values():
        await feed.ready.wait()
    for shard, seq in after_seq.items():
        if shard in feeds:
            await _check_not_beyond_end(feeds[shard], seq)
    cursor = {
        shard: after_seq.get(shard, feed.next_seq - 1) for shard, feed in feeds.items()
    }
    yield ExecutionChunk([], dict(cursor))
    clock = settings.clock
    last_sent = clock()
    limit = settings.max_events_per_chunk
    while True:
        parts: list[tuple[int, list[Event]]] = []
        for shard, feed in feeds.items():
            position = cursor[shard]
            if position >= feed.next_seq - 1:
                continue
            events = feed.ring.after(position, limit)
            if events is None:  # older than the ring: from the journal
                if parts:
                    # send what the ring gave first: a journal chunk carries the whole
                    # cursor, which already counts these events
                    yield ExecutionChunk(parts, dict(cursor))
                    last_sent = clock()
                    parts = []
                async for chunk in _from_journal(feed, accounts, position, cursor, limit):
                    yield chunk
                    last_sent = clock()
                continue
            if events:
                relevant = [event for event in events if concerns(event, accounts)]
                cursor[shard] = events[-1].seq
                if relevant:
                    parts.append((shard, relevant))
        if parts:
            yield ExecutionChunk(parts, dict(cursor))
            last_sent = clock()
            continue
        if any(cursor[shard] < feed.next_seq - 1 for shard, feed in feeds.items()):
            await asyncio.sleep(0)  # more to scan: let other calls run meanwhile
            continue
        idle = clock() - last_sent
        if idle >= settings.heartbeat_s:
            yield ExecutionChunk([], dict(cursor))
            last_sent = clock()
            continue
        await notifier.wait(settings.heartbeat_s - idle)


async def _check_not_beyond_end(feed: ShardFeed, seq: int) -> None:
    """Refuse a cursor past the last event the shard has journaled.

    The feed may lag its shard (pushes in flight, or a cursor from a gateway that is ahead),
    so a cursor past the feed is checked against the journal, which holds every event before
    it is published; a cursor the feed has reached needs no disk read.
    """
    head = feed.next_seq - 1
    if seq <= head:
        return
    end = head if feed.history is None else max(
        head, await asyncio.to_thread(feed.history.last_seq)
    )
    if seq > end:
        raise HistoryUnavailableError(
            f"after_seq[{feed.shard}]: event {seq} is beyond the end of shard {feed.shard}'s "
            f"journal (its last event is {end}); resume from a cursor the stream returned"
        )


async def _from_journal(
    feed: ShardFeed,
    accounts: Collection[str] | None,
    position: int,
    cursor: dict[int, int],
    limit: int,
) -> AsyncGenerator[ExecutionChunk, None]:
    """Yield the events ``position + 1 ..`` the ring no longer holds, from the journal."""
    if feed.history is None:
        raise HistoryUnavailableError(
            f"shard {feed.shard}: events after {position} are no longer held and there is no "
            "journal to read"
        )
    to_seq = feed.ring.start_seq - 1
    replay = Replay(feed.history.events(position + 1, to_seq))
    try:
        while True:
            events = await replay.next()
            if events is None:
                break
            for start in range(0, len(events), limit):
                stretch = [event for event in events[start: start + limit]
                           if event.seq > cursor[feed.shard]]
                if not stretch:
                    continue
                cursor[feed.shard] = stretch[-1].seq
                relevant = [event for event in stretch if concerns(event, accounts)]
                if relevant:
                    yield ExecutionChunk([(feed.shard, relevant)], dict(cursor))
    finally:
        replay.close()
    if cursor[feed.shard] < to_seq:
        raise HistoryUnavailableError(
            f"shard {feed.shard}: the journal ends at event {cursor[feed.shard]}, before "
            f"{to_seq}"
        )


# ------------------------------------------------------------------------------ market data


@dataclass
class MarketDataItem:
    """One market-data update: a snapshot, a level change or a trade of one symbol."""

    symbol: str
    seq: int
    previous_seq: int
    ts_ns: int
    event: LevelChanged | Trade | None = None
    """The level change or trade; None for a snapshot."""
    bids: Levels = field(default_factory=list)
    asks: Levels = field(default_factory=list)


async def follow_market_data(
    feeds: Mapping[str, ShardFeed],
    notifier: Notifier,
    settings: StreamSettings = StreamSettings(),  # noqa: B008 - immutable in practice
) -> AsyncGenerator[list[MarketDataItem], None]:
    """Yield, for the symbols in ``feeds`` (symbol -> its shard's feed), snapshots then updates."""
    by_shard: dict[int, tuple[ShardFeed, set[str]]] = {}
    for symbol, feed in feeds.items():
        by_shard.setdefault(feed.shard, (feed, set()))[1].add(symbol)
    for feed, _ in by_shard.values():
        await feed.ready.wait()
    last: dict[str, int] = {}
    cursor: dict[int, int] = {}

    def snapshots(feed: ShardFeed, symbols: set[str]) -> list[MarketDataItem]:
        seq = feed.next_seq - 1
        cursor[feed.shard] = seq
        items = []
        for symbol in sorted(symbols):
            bids, asks = feed.market_snapshot(symbol)
            items.append(MarketDataItem(symbol, seq, 0, feed.last_ts_ns, bids=bids, asks=asks))
            last[symbol] = seq
        return items

    first: list[MarketDataItem] = []
    for feed, symbols in by_shard.values():
        first.extend(snapshots(feed, symbols))
    yield first
    limit = settings.max_events_per_chunk
    while True:
        items: list[MarketDataItem] = []
        behind = False
        for shard, (feed, symbols) in by_shard.items():
            position = cursor[shard]
            if position >= feed.next_seq - 1:
                continue
            events = feed.ring.after(position, limit)
            if events is None:  # fell out of the ring: start over from a snapshot
                items.extend(snapshots(feed, symbols))
                continue
            for event in events:
                kind = type(event)
                if (kind is LevelChanged or kind is Trade) and event.symbol in symbols:  # type: ignore[union-attr]
                    symbol = event.symbol  # type: ignore[union-attr]
                    items.append(MarketDataItem(symbol, event.seq, last[symbol], event.ts_ns,
                                                event=event))  # type: ignore[arg-type]
                    last[symbol] = event.seq
            if events:
                cursor[shard] = events[-1].seq
                behind = behind or cursor[shard] < feed.next_seq - 1
        if items:
            yield items
        elif behind:
            await asyncio.sleep(0)
        else:
            await notifier.wait(settings.heartbeat_s)
