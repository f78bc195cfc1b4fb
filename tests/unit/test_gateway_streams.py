"""The gateway's feeds and streams (cluster.gateway.streams) on real events, without Ray.

A real `MatchingEngine` makes the events of a random order flow; the tests deliver its
batches to a `ShardFeed` the way Ray may (twice, out of order, some never) and check that the
feed folds each event exactly once, that execution streams resume with nothing missed or
repeated, and that market data reproduces the engine's books.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.core.engine import MatchingEngine
from actors.core.shard import build_shard
from cluster.gateway.history import JournalHistory
from cluster.gateway.streams import (
    ExecutionChunk,
    Notifier,
    Ring,
    ShardFeed,
    StreamSettings,
    concerns,
    follow_executions,
    follow_market_data,
)
from cluster.storage.journal import FsyncPolicy
from cluster.storage.shard import ShardStorage, shard_directory
from protocols.errors import HistoryUnavailableError
from protocols.messages import (
    CancelOrder,
    Command,
    Event,
    Instrument,
    LevelChanged,
    NewOrder,
    OrderAccepted,
    Side,
    Trade,
    encode,
)

INSTRUMENTS = [Instrument(symbol="AAPL"), Instrument(symbol="MSFT")]
ACCOUNTS = ["alice", "bob", "carol"]


def flow(seed: int, batches: int = 40) -> tuple[MatchingEngine, list[list[Event]]]:
    """Return an engine and the event batches of a random flow of orders and cancels."""
    rng = random.Random(seed)
    engine = MatchingEngine(INSTRUMENTS, 0, client_order_id_window=10_000)
    out: list[list[Event]] = []
    live: list[tuple[str, str, int]] = []
    serial = 0
    for _ in range(batches):
        commands: list[Command] = []
        for _ in range(rng.randint(1, 8)):
            serial += 1
            account = rng.choice(ACCOUNTS)
            symbol = rng.choice(["AAPL", "MSFT"])
            if live and rng.random() < 0.25:
                owner, cancel_symbol, order_id = live.pop(rng.randrange(len(live)))
                commands.append(CancelOrder(account=owner, client_order_id=f"x{serial}",
                                            symbol=cancel_symbol, order_id=order_id, ts_ns=serial))
            else:
                commands.append(NewOrder(
                    account=account, client_order_id=f"o{serial}", symbol=symbol,
                    side=rng.choice([Side.BUY, Side.SELL]), quantity=rng.randint(1, 20),
                    price=rng.randint(95, 105), ts_ns=serial,
                ))
        events = engine.apply(commands)
        live.extend(
            (event.account, event.symbol, event.order_id)
            for event in events
            if isinstance(event, OrderAccepted)
        )
        out.append(events)
    return engine, out


class ListHistory:
    """A journal made of a list of event batches."""

    def __init__(self, batches: list[list[Event]]) -> None:
        self.events_list = [event for batch in batches for event in batch]
        self.calls = 0

    def events(self, from_seq: int, to_seq: int | None = None) -> Iterator[list[Event]]:
        self.calls += 1
        wanted = [e for e in self.events_list
                  if e.seq >= from_seq and (to_seq is None or e.seq <= to_seq)]
        for start in range(0, len(wanted), 7):
            yield wanted[start:start + 7]

    def last_seq(self) -> int:
        return self.events_list[-1].seq if self.events_list else 0


def empty_start(feed: ShardFeed) -> None:
    feed.start(1, {}, [], [])


def deliveries(batches: list[list[Event]], rng: random.Random, *, lose: bool
               ) -> list[tuple[int, int, bytes]]:
    """The pushes of a publisher: each batch once, some twice, shuffled nearby, some lost."""
    pushes = []
    for events in batches:
        if lose and rng.random() < 0.1:
            continue
        push = (events[0].seq, events[-1].seq, encode(events))
        pushes.append(push)
        if rng.random() < 0.2:
            pushes.append(push)
    for index in range(len(pushes) - 1):  # neighbours swap: calls to an async actor
        if rng.random() < 0.3:
            pushes[index], pushes[index + 1] = pushes[index + 1], pushes[index]
    return pushes


# ------------------------------------------------------------------------------ ring


def test_the_ring_keeps_the_newest_events_contiguous() -> None:
    """Old batches fall out past the bound; reads before the start say so with None."""
    _, batches = flow(1, 30)
    ring = Ring(max_events=20)
    for batch in batches:
        ring.append(batch)
    assert ring.next_seq == batches[-1][-1].seq + 1
    assert ring.after(0, 100) is None
    start = ring.start_seq
    tail = ring.after(start - 1, 1000)
    assert tail is not None
    assert [event.seq for event in tail] == list(range(start, ring.next_seq))
    assert [event.seq for event in ring.after(start + 2, 3) or []] == [start + 3, start + 4,
                                                                       start + 5]
    assert ring.after(ring.next_seq - 1, 10) == []


# ------------------------------------------------------------------------------ feed


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_the_feed_folds_every_event_once_whatever_the_delivery(seed: int) -> None:
    """Duplicated and reordered pushes fold once, in order; the books match the engine's."""
    engine, batches = flow(seed)
    feed = ShardFeed(0, ["AAPL", "MSFT"], ring_events=100_000, history=None)
    empty_start(feed)
    for push in deliveries(batches, random.Random(seed), lose=False):
        feed.push(*push)
    assert feed.gap_end is None
    assert feed.next_seq == engine.next_seq
    folded = feed.ring.after(0, 1_000_000)
    assert folded is not None
    assert [event.seq for event in folded] == list(range(1, engine.next_seq))
    for symbol in ("AAPL", "MSFT"):
        assert feed.market_snapshot(symbol) == engine.books[symbol].l2(10_000)


def test_a_gap_waits_and_is_filled_from_the_journal() -> None:
    """Lost pushes leave a gap that `repair` fills from the journal, then folding goes on."""

    async def scenario() -> None:
        engine, batches = flow(7)
        history = ListHistory(batches)
        feed = ShardFeed(0, ["AAPL", "MSFT"], ring_events=100_000, history=history)
        empty_start(feed)
        for events in batches[:5] + batches[8:]:
            feed.push(events[0].seq, events[-1].seq, encode(events))
        gap_end = feed.gap_end
        assert gap_end == batches[7][-1].seq
        task = feed.repair(gap_end)
        assert task is not None
        await task
        assert feed.next_seq == engine.next_seq and feed.repairs == 1
        assert feed.market_snapshot("AAPL") == engine.books["AAPL"].l2(10_000)

    asyncio.run(scenario())


def test_replies_and_pushes_of_the_same_batch_fold_once() -> None:
    """A batch seen in the gateway's own reply and then pushed is folded once."""
    engine, batches = flow(3)
    feed = ShardFeed(0, ["AAPL", "MSFT"], ring_events=100_000, history=None)
    empty_start(feed)
    for events in batches:
        feed.offer(list(events))
        feed.push(events[0].seq, events[-1].seq, encode(events))
    assert feed.next_seq == engine.next_seq
    assert len(feed.ring.after(0, 10**6) or []) == engine.next_seq - 1


def test_only_batches_the_gateway_did_not_send_are_shown_to_on_fold() -> None:
    """The client order id window learns its own requests when it routes them: the feed
    shows it the pushed batches (other senders'), not the offered ones (its own replies),
    and every batch is folded into the ring either way."""
    engine, batches = flow(4)
    shown: list[int] = []
    feed = ShardFeed(0, ["AAPL", "MSFT"], ring_events=100_000, history=None,
                     on_fold=lambda events: shown.extend(event.seq for event in events))
    empty_start(feed)
    pushed: list[int] = []
    for index, events in enumerate(batches):
        if index % 3:
            feed.offer(list(events))
        else:
            feed.push(events[0].seq, events[-1].seq, encode(events))
            pushed.extend(event.seq for event in events)
    assert pushed and shown == pushed
    assert feed.next_seq == engine.next_seq
    assert len(feed.ring.after(0, 10**6) or []) == engine.next_seq - 1


def test_a_gap_is_timed_from_its_start_on_the_feed_clock() -> None:
    """The feed notes when a gap opened on its injected clock (0.0 included) and keeps that
    time while later batches arrive; the gap closing clears it."""
    now = [0.0]
    _, batches = flow(4, 6)
    feed = ShardFeed(0, ["AAPL", "MSFT"], ring_events=1000, history=None,
                     clock=lambda: now[0])
    empty_start(feed)
    for events in batches[1:3]:
        feed.push(events[0].seq, events[-1].seq, encode(events))
        assert feed.gap_since == 0.0
        now[0] += 5.0
    first = batches[0]
    feed.push(first[0].seq, first[-1].seq, encode(first))
    assert feed.gap_since is None and feed.next_seq == batches[2][-1].seq + 1


# ------------------------------------------------------------------------------ executions


async def collect_executions(
    feed: ShardFeed, accounts: frozenset[str], after: dict[int, int], notifier: Notifier,
    until_seq: int,
) -> list[ExecutionChunk]:
    chunks = []
    stream = follow_executions({0: feed}, accounts, after, notifier,
                               StreamSettings(heartbeat_s=0.05, max_events_per_chunk=5))
    async for chunk in stream:
        chunks.append(chunk)
        if chunk.cursor[0] >= until_seq:
            break
    await stream.aclose()
    return chunks


def relevant(batches: list[list[Event]], accounts: frozenset[str]) -> list[int]:
    return [event.seq for batch in batches for event in batch if concerns(event, accounts)]


def test_an_execution_stream_resumes_with_nothing_missed_or_repeated() -> None:
    """Stop a stream part-way, resume from its last cursor: the union is every event, once."""

    async def scenario() -> None:
        engine, batches = flow(11, 60)
        last = engine.next_seq - 1
        accounts = frozenset({"alice"})
        notifier = Notifier()
        feed = ShardFeed(0, ["AAPL", "MSFT"], ring_events=100_000, history=None,
                         on_change=notifier.notify)
        empty_start(feed)
        for events in batches:
            feed.push(events[0].seq, events[-1].seq, encode(events))
        first = await collect_executions(feed, accounts, {0: 0}, notifier, last // 2)
        cursor = first[-1].cursor
        second = await collect_executions(feed, accounts, cursor, notifier, last)
        seen = [event.seq for chunk in first + second for _, events in chunk.parts
                for event in events]
        assert seen == relevant(batches, accounts)

    asyncio.run(scenario())


def test_a_resume_older_than_the_ring_reads_the_journal() -> None:
    """A cursor before the ring's start is served from the journal, then from the ring."""

    async def scenario() -> None:
        engine, batches = flow(5, 60)
        history = ListHistory(batches)
        notifier = Notifier()
        feed = ShardFeed(0, ["AAPL", "MSFT"], ring_events=30, history=history,
                         on_change=notifier.notify)
        empty_start(feed)
        for events in batches:
            feed.push(events[0].seq, events[-1].seq, encode(events))
        assert feed.ring.start_seq > 10
        accounts = frozenset({"bob", "carol"})
        chunks = await collect_executions(feed, accounts, {0: 3}, notifier,
                                          engine.next_seq - 1)
        seen = [event.seq for chunk in chunks for _, events in chunk.parts for event in events]
        assert seen == [seq for seq in relevant(batches, accounts) if seq > 3]
        assert history.calls == 1

    asyncio.run(scenario())


def test_a_live_stream_starts_at_the_head_and_sees_new_events() -> None:
    """Without a cursor the stream starts live: first an empty chunk, then new events."""

    async def scenario() -> None:
        _, batches = flow(2, 20)
        notifier = Notifier()
        feed = ShardFeed(0, ["AAPL", "MSFT"], ring_events=1000, history=None,
                         on_change=notifier.notify)
        empty_start(feed)
        for events in batches[:10]:
            feed.push(events[0].seq, events[-1].seq, encode(events))
        stream = follow_executions({0: feed}, None, {}, notifier,
                                   StreamSettings(heartbeat_s=0.05))
        opening = await anext(stream)
        assert opening.parts == [] and opening.cursor == {0: batches[9][-1].seq}
        for events in batches[10:]:
            feed.push(events[0].seq, events[-1].seq, encode(events))
        got: list[int] = []
        cursor = opening.cursor[0]
        while cursor < batches[-1][-1].seq:
            chunk = await asyncio.wait_for(anext(stream), 1.0)
            got.extend(event.seq for _, events in chunk.parts for event in events)
            cursor = chunk.cursor[0]
        await stream.aclose()
        assert got == relevant(batches[10:], frozenset(ACCOUNTS))

    asyncio.run(scenario())


# ------------------------------------------------------------------------------ market data


def test_market_data_snapshot_and_deltas_reproduce_the_book() -> None:
    """A subscriber applying the snapshot then every update holds the engine's book."""

    async def scenario() -> None:
        engine, batches = flow(21, 80)
        notifier = Notifier()
        feed = ShardFeed(0, ["AAPL", "MSFT"], ring_events=100_000, history=None,
                         on_change=notifier.notify)
        empty_start(feed)
        for events in batches[:30]:
            feed.push(events[0].seq, events[-1].seq, encode(events))
        stream = follow_market_data({"AAPL": feed}, notifier, StreamSettings(heartbeat_s=0.05))
        (snapshot,) = await anext(stream)
        book = {Side.BUY: {p: q for p, q, _ in snapshot.bids},
                Side.SELL: {p: q for p, q, _ in snapshot.asks}}
        last_seq = snapshot.seq
        trades = 0
        for events in batches[30:]:
            feed.push(events[0].seq, events[-1].seq, encode(events))
        end = batches[-1][-1].seq
        while last_seq < end:
            for item in await asyncio.wait_for(anext(stream), 1.0):
                assert item.previous_seq == last_seq  # no gap
                last_seq = item.seq
                if isinstance(item.event, LevelChanged):
                    side = book[item.event.side]
                    if item.event.quantity:
                        side[item.event.price] = item.event.quantity
                    else:
                        side.pop(item.event.price, None)
                elif isinstance(item.event, Trade):
                    trades += 1
            if last_seq >= max((e.seq for b in batches for e in b
                                if getattr(e, "symbol", "") == "AAPL"
                                and isinstance(e, LevelChanged | Trade)), default=0):
                break
        await stream.aclose()
        bids, asks = engine.books["AAPL"].l2(10_000)
        assert sorted(book[Side.BUY].items(), reverse=True) == [(p, q) for p, q, _ in bids]
        assert sorted(book[Side.SELL].items()) == [(p, q) for p, q, _ in asks]
        assert trades > 0

    asyncio.run(scenario())


def test_an_idle_stream_beats_when_its_clock_says_so() -> None:
    """With no news, an execution stream sends an empty chunk once ``heartbeat_s`` has passed
    on its clock, and not before, however often it is woken."""

    async def scenario() -> None:
        now = [100.0]
        notifier = Notifier()
        feed = ShardFeed(0, ["AAPL"], ring_events=1000, history=None, on_change=notifier.notify)
        empty_start(feed)
        stream = follow_executions({0: feed}, None, {}, notifier,
                                   StreamSettings(heartbeat_s=3600.0, clock=lambda: now[0]))

        async def settle() -> None:  # let the stream run until it waits for news again
            for _ in range(20):
                await asyncio.sleep(0)

        opening = await anext(stream)
        beat = asyncio.ensure_future(anext(stream))
        for _ in range(3):
            await settle()
            now[0] += 1000.0
            notifier.notify()
            await settle()
            assert not beat.done()
        now[0] += 600.0
        notifier.notify()
        chunk = await asyncio.wait_for(beat, 1.0)
        assert chunk.parts == [] and chunk.cursor == opening.cursor
        await stream.aclose()

    asyncio.run(scenario())


# ------------------------------------------------------------------------------ the contract
#
# docs/GATEWAY.md, "The stream contract": a chunk's cursor covers exactly the events delivered
# up to and including that chunk, per shard. So a client that resumes from the cursor of any
# chunk it received, having kept what came up to it, ends with each of its reports once, in
# order per shard.


class JournaledShard:
    """A shard as the book actor runs it: engine behind its risk gate, a real journal on disk,
    and each batch journaled before it is pushed to the gateway's feed."""

    def __init__(self, data_dir: Path, shard: int, symbols: list[str], feed_ring: int,
                 notifier: Notifier) -> None:
        self.shard = shard
        self.symbols = symbols
        instruments = [Instrument(symbol=symbol) for symbol in symbols]
        directory = shard_directory(data_dir, shard)
        self.storage = ShardStorage(directory, fsync=FsyncPolicy(mode="none"))
        self.storage.load()
        _, self.engine = build_shard(shard, instruments, client_order_id_window=10_000)
        self.history = JournalHistory(directory, shard, instruments, 10_000)
        self.feed = ShardFeed(shard, symbols, ring_events=feed_ring, history=self.history,
                              on_change=notifier.notify)
        empty_start(self.feed)
        self.live: list[tuple[str, str, int]] = []
        self.serial = 0

    def run_batch(self, rng: random.Random) -> None:
        """Apply a random batch of orders and cancels; journal it; push its events."""
        commands: list[Command] = []
        for _ in range(rng.randint(1, 6)):
            self.serial += 1
            if self.live and rng.random() < 0.25:
                owner, symbol, order_id = self.live.pop(rng.randrange(len(self.live)))
                commands.append(CancelOrder(account=owner, client_order_id=f"x{self.serial}",
                                            symbol=symbol, order_id=order_id, ts_ns=self.serial))
            else:
                commands.append(NewOrder(
                    account=rng.choice(ACCOUNTS), client_order_id=f"o{self.serial}",
                    symbol=rng.choice(self.symbols), side=rng.choice([Side.BUY, Side.SELL]),
                    quantity=rng.randint(1, 20), price=rng.randint(95, 105), ts_ns=self.serial,
                ))
        first_seq = self.engine.next_seq
        events = self.engine.apply(commands)
        if not events:
            return
        self.storage.append(first_seq, self.engine.next_seq - 1, commands)
        self.live.extend((event.account, event.symbol, event.order_id)
                         for event in events if isinstance(event, OrderAccepted))
        self.feed.push(first_seq, events[-1].seq, encode(events))

    def journal_reports(self, accounts: frozenset[str]) -> list[int]:
        """The seqs of the accounts' reports, read back from the journal."""
        return [event.seq for batch in self.history.events(1) for event in batch
                if concerns(event, accounts)]


def delivered(chunks: list[ExecutionChunk]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for chunk in chunks:
        for shard, events in chunk.parts:
            out.setdefault(shard, []).extend(event.seq for event in events)
    return out


async def session(
    feeds: dict[int, ShardFeed], accounts: frozenset[str], after: dict[int, int],
    notifier: Notifier, chunks_wanted: int, between: Callable[[], None] = lambda: None,
) -> list[ExecutionChunk]:
    """Read chunks until ``chunks_wanted`` after the opening one, or until caught up."""
    stream = follow_executions(feeds, accounts, after, notifier,
                               StreamSettings(heartbeat_s=0.01, max_events_per_chunk=5))
    chunks = [await anext(stream)]
    try:
        while len(chunks) <= chunks_wanted:
            if all(chunks[-1].cursor[shard] >= feed.next_seq - 1
                   for shard, feed in feeds.items()):
                break
            chunks.append(await asyncio.wait_for(anext(stream), 5.0))
            between()
    finally:
        await stream.aclose()
    return chunks


def check_cursors(chunks: list[ExecutionChunk], start: Mapping[int, int],
                  truth: dict[int, list[int]]) -> None:
    """Every chunk's cursor covers exactly what the session delivered up to it, per shard."""
    got: dict[int, list[int]] = {}
    for index, chunk in enumerate(chunks):
        for shard, events in chunk.parts:
            got.setdefault(shard, []).extend(event.seq for event in events)
        for shard, seq in chunk.cursor.items():
            expected = [s for s in truth[shard] if start[shard] < s <= seq]
            assert got.get(shard, []) == expected, (
                f"chunk {index}: cursor {chunk.cursor} but shard {shard} delivered "
                f"{got.get(shard, [])}, not {expected}"
            )


@contextlib.contextmanager
def two_journaled_shards(ring_events: int) -> Iterator[tuple[JournaledShard, JournaledShard,
                                                              Notifier]]:
    with tempfile.TemporaryDirectory() as data_dir:
        notifier = Notifier()
        shards = (JournaledShard(Path(data_dir), 0, ["AAPL"], ring_events, notifier),
                  JournaledShard(Path(data_dir), 1, ["MSFT"], ring_events, notifier))
        try:
            yield shards[0], shards[1], notifier
        finally:
            for shard in shards:
                shard.storage.close()


def test_a_resume_from_each_cursor_misses_nothing_when_one_shard_reads_the_journal() -> None:
    """Issue 9, item 1: shard 0 is served from the ring and shard 1 from the journal; a client
    that reconnects from the cursor of every chunk it receives still gets every report once
    (the ring's events used to be counted in a journal chunk's cursor before they were sent)."""

    async def scenario() -> None:
        accounts = frozenset(ACCOUNTS)
        with two_journaled_shards(ring_events=30) as (ring_shard, journal_shard, notifier):
            rng = random.Random(9)
            for _ in range(40):
                journal_shard.run_batch(rng)
            for _ in range(3):
                ring_shard.run_batch(rng)
            assert journal_shard.feed.ring.start_seq > 1 and ring_shard.feed.ring.start_seq == 1
            feeds = {0: ring_shard.feed, 1: journal_shard.feed}
            truth = {0: ring_shard.journal_reports(accounts),
                     1: journal_shard.journal_reports(accounts)}
            cursor = {0: 0, 1: 0}
            kept: dict[int, list[int]] = {0: [], 1: []}
            for _ in range(200):
                chunks = await session(feeds, accounts, cursor, notifier, chunks_wanted=1)
                for shard, seqs in delivered(chunks).items():
                    kept[shard].extend(seqs)
                cursor = chunks[-1].cursor
                if len(chunks) == 1:
                    break
            assert kept == truth

    asyncio.run(scenario())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    ring_events=st.integers(5, 60),
    backlog=st.tuples(st.integers(0, 30), st.integers(0, 30)),
    sessions=st.lists(st.tuples(st.integers(1, 6), st.integers(0, 6), st.integers(0, 3)),
                      min_size=1, max_size=12),
    accounts=st.sets(st.sampled_from(ACCOUNTS), min_size=1).map(frozenset),
)
def test_any_disconnects_and_resumes_deliver_the_journal_exactly_once(
    seed: int, ring_events: int, backlog: tuple[int, int],
    sessions: list[tuple[int, int, int]], accounts: frozenset[str],
) -> None:
    """The stream contract: for any sequence of disconnects and resumes from any cursor the
    server returned, with events arriving meanwhile and cursors older than the ring, what a
    client kept equals the journal's reports for its accounts, per shard in order, no gap,
    no duplicate; and every cursor covers exactly what was delivered up to it."""

    async def scenario() -> None:
        rng = random.Random(seed)
        with two_journaled_shards(ring_events) as (shard_0, shard_1, notifier):
            shards = (shard_0, shard_1)
            for journaled, count in zip(shards, backlog, strict=True):
                for _ in range(count):
                    journaled.run_batch(rng)
            feeds = {0: shard_0.feed, 1: shard_1.feed}

            def live_events() -> None:  # events keep coming while the client reads
                if rng.random() < 0.3:
                    rng.choice(shards).run_batch(rng)

            kept: dict[int, list[int]] = {0: [], 1: []}
            cursor: dict[int, int] = {0: 0, 1: 0}
            chunk_lists = []
            for chunks_wanted, resume_back, new_batches in sessions:
                chunks = await session(feeds, accounts, cursor, notifier, chunks_wanted,
                                       live_events)
                chunk_lists.append((dict(cursor), chunks))
                # resume from an earlier chunk's cursor: what came after it is dropped, as a
                # client that crashed before it stored its cursor would
                chunks = chunks[: max(1, len(chunks) - resume_back)]
                for shard, seqs in delivered(chunks).items():
                    kept[shard].extend(seqs)
                cursor = dict(chunks[-1].cursor)
                for _ in range(new_batches):
                    rng.choice(shards).run_batch(rng)
            while True:  # finally read to the end
                chunks = await session(feeds, accounts, cursor, notifier, 1000)
                for shard, seqs in delivered(chunks).items():
                    kept[shard].extend(seqs)
                cursor = chunks[-1].cursor
                if all(cursor[s] >= feed.next_seq - 1 for s, feed in feeds.items()):
                    break
            truth = {0: shard_0.journal_reports(accounts), 1: shard_1.journal_reports(accounts)}
            assert kept == truth
            for start, chunks in chunk_lists:
                check_cursors(chunks, start, truth)

    asyncio.run(scenario())


# ------------------------------------------------------------------------------ bad cursors


@pytest.mark.parametrize("beyond", [1, 2**63 - 1])
def test_a_cursor_beyond_the_journals_end_is_out_of_range(beyond: int) -> None:
    """Issue 9, item 9: a cursor past the last event the shard has journaled is refused with
    `HistoryUnavailableError` (OUT_OF_RANGE) before anything is sent, instead of being
    echoed and then skipping every later event of that shard."""

    async def scenario() -> None:
        with two_journaled_shards(ring_events=30) as (shard_0, shard_1, notifier):
            rng = random.Random(3)
            for _ in range(5):
                shard_0.run_batch(rng)
                shard_1.run_batch(rng)
            end = shard_1.engine.next_seq - 1
            stream = follow_executions({0: shard_0.feed, 1: shard_1.feed}, None,
                                       {0: 0, 1: min(end + beyond, 2**63 - 1)}, notifier)
            with pytest.raises(HistoryUnavailableError, match="beyond the end"):
                await anext(stream)
            # the very end is a valid cursor
            stream = follow_executions({0: shard_0.feed, 1: shard_1.feed}, None,
                                       {0: 0, 1: end}, notifier)
            opening = await anext(stream)
            assert opening.cursor == {0: 0, 1: end}
            await stream.aclose()

    asyncio.run(scenario())


def test_a_cursor_the_feed_has_not_reached_but_the_journal_has_is_served() -> None:
    """A gateway whose feed lags its shard (pushes not arrived yet) accepts a cursor up to
    the journal's end, from another gateway say, and serves what follows once it arrives."""

    async def scenario() -> None:
        with two_journaled_shards(ring_events=1000) as (shard_0, _, notifier):
            rng = random.Random(4)
            for _ in range(3):
                shard_0.run_batch(rng)
            lagging = ShardFeed(0, ["AAPL"], ring_events=1000, history=shard_0.history,
                                on_change=notifier.notify)
            empty_start(lagging)
            end = shard_0.engine.next_seq - 1
            stream = follow_executions({0: lagging}, None, {0: end - 1}, notifier,
                                       StreamSettings(heartbeat_s=0.01))
            assert (await anext(stream)).cursor == {0: end - 1}
            for events in shard_0.history.events(1):
                lagging.push(events[0].seq, events[-1].seq, encode(events))
            chunk = await asyncio.wait_for(anext(stream), 2.0)
            while not chunk.parts and chunk.cursor[0] < end:
                chunk = await asyncio.wait_for(anext(stream), 2.0)
            assert chunk.cursor == {0: end}
            await stream.aclose()

    asyncio.run(scenario())


# ------------------------------------------------------------------------------ cancellation


class BlockingHistory:
    """A journal whose replay blocks in the worker thread until released."""

    def __init__(self, batches: list[list[Event]]) -> None:
        self.inner = ListHistory(batches)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.closed = threading.Event()
        self.steps = 0

    def events(self, from_seq: int, to_seq: int | None = None) -> Iterator[list[Event]]:
        try:
            for batch in self.inner.events(from_seq, to_seq):
                self.steps += 1
                if self.steps == 2:
                    self.entered.set()
                    self.release.wait(10)
                yield batch
        finally:
            self.closed.set()

    def last_seq(self) -> int:
        return self.inner.last_seq()


def test_cancelling_a_stream_mid_replay_is_clean(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 9, item 8: a stream cancelled while a worker thread replays the journal ends with
    a plain cancellation (it used to close the generator from the event loop while the thread
    ran it: "ValueError: generator already executing"), and the replay stops right after the
    step in progress."""

    async def scenario() -> None:
        _, batches = flow(5, 60)
        history = BlockingHistory(batches)
        notifier = Notifier()
        feed = ShardFeed(0, ["AAPL", "MSFT"], ring_events=30, history=history,
                         on_change=notifier.notify)
        empty_start(feed)
        for events in batches:
            feed.push(events[0].seq, events[-1].seq, encode(events))

        async def consume() -> None:
            async for _ in follow_executions({0: feed}, None, {0: 0}, notifier):
                pass

        task = asyncio.ensure_future(consume())
        await asyncio.to_thread(history.entered.wait, 5)
        task.cancel()
        outcome = (await asyncio.gather(task, return_exceptions=True))[0]
        assert isinstance(outcome, asyncio.CancelledError), repr(outcome)
        assert not history.closed.is_set()  # the step in progress is not interrupted ...
        history.release.set()
        assert await asyncio.to_thread(history.closed.wait, 5)  # ... and the replay stops
        assert history.steps == 2

    with caplog.at_level(logging.DEBUG):
        asyncio.run(scenario())
    assert "generator already executing" not in caplog.text
