"""Coalescing of concurrent requests into per-shard batches, against an in-process shard.

The fake shard is a real `BookActor` without storage, so the replies (``apply_batch_with_ends``)
are the real format; its send function counts calls and can be held open or made to fail.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from actors.book_actor import BookActor
from cluster.config import ShardMap
from cluster.gateway.batching import ShardBatcher
from cluster.gateway.config import GatewayConfig
from cluster.gateway.core import GatewayCore
from cluster.gateway.streams import ShardFeed, StreamSettings, concerns, follow_executions
from cluster.storage.journal import FsyncPolicy
from cluster.storage.shard import ShardStorageFactory, shard_directory
from protocols.errors import QueueFullError, ShardUnavailableError
from protocols.messages import (
    Command,
    Event,
    Instrument,
    NewOrder,
    OrderAccepted,
    OrderRejected,
    Side,
    decode_commands,
    encode,
)

INSTRUMENTS = [Instrument(symbol="AAPL")]


class FakeShard:
    """A book actor behind an async send function that records each batch."""

    def __init__(self) -> None:
        self.book = BookActor(0, INSTRUMENTS)
        self.batches: list[int] = []
        self.gate: asyncio.Event | None = None
        self.failure: Exception | None = None

    async def send(self, payload: bytes) -> bytes:
        from protocols.messages import decode_commands

        self.batches.append(len(decode_commands(payload)))
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return self.book.apply_batch_with_ends(payload)


def buy(client_order_id: str, quantity: int = 1) -> NewOrder:
    return NewOrder(account="alice", client_order_id=client_order_id, symbol="AAPL",
                    side=Side.BUY, quantity=quantity, price=100)


def sell(client_order_id: str) -> NewOrder:
    return NewOrder(account="bob", client_order_id=client_order_id, symbol="AAPL",
                    side=Side.SELL, quantity=2, price=100)


def test_concurrent_requests_share_one_batch_and_get_their_own_events() -> None:
    """Requests made in the same turn of the loop go out as one batch; each gets its events."""

    async def scenario() -> tuple[list[int], list[list[list[Event]]]]:
        shard = FakeShard()
        batcher = ShardBatcher(0, shard.send)
        replies = await asyncio.gather(*(
            batcher.enqueue([buy(f"c{i}"), buy(f"d{i}")]) for i in range(50)
        ))
        return shard.batches, replies

    batches, replies = asyncio.run(scenario())
    assert batches == [100]
    for index, reply in enumerate(replies):
        assert len(reply) == 2
        for command_events, prefix in zip(reply, "cd", strict=True):
            (accepted,) = command_events
            assert isinstance(accepted, OrderAccepted)
            assert accepted.client_order_id == f"{prefix}{index}"


def test_requests_that_arrive_during_a_call_wait_for_it_and_go_together() -> None:
    """With one call allowed in flight, what arrives meanwhile is the next single batch."""

    async def scenario() -> list[int]:
        shard = FakeShard()
        shard.gate = asyncio.Event()
        batcher = ShardBatcher(0, shard.send, max_in_flight=1)
        first = asyncio.ensure_future(batcher.enqueue([buy("first")]))
        await asyncio.sleep(0.01)
        later = [asyncio.ensure_future(batcher.enqueue([buy(f"later-{i}")])) for i in range(20)]
        await asyncio.sleep(0.01)
        assert batcher.queued == 20 and batcher.in_flight == 1
        shard.gate.set()
        await asyncio.gather(first, *later)
        return shard.batches

    assert asyncio.run(scenario()) == [1, 20]


def test_a_second_batch_leaves_after_the_linger_when_two_may_be_in_flight() -> None:
    """With two calls allowed in flight, waiting commands go after ``linger_s``."""

    async def scenario() -> list[int]:
        shard = FakeShard()
        shard.gate = asyncio.Event()
        batcher = ShardBatcher(0, shard.send, max_in_flight=2, linger_s=0.005)
        first = asyncio.ensure_future(batcher.enqueue([buy("first")]))
        await asyncio.sleep(0.001)
        second = asyncio.ensure_future(batcher.enqueue([buy("second")]))
        await asyncio.sleep(0.05)
        sent = list(shard.batches)
        shard.gate.set()
        await asyncio.gather(first, second)
        return sent

    assert asyncio.run(scenario()) == [1, 1]


def test_batches_are_capped_and_keep_requests_whole_and_in_order() -> None:
    """No batch exceeds the cap (unless one request alone does); order is kept."""

    async def scenario() -> tuple[list[int], list[int]]:
        shard = FakeShard()
        batcher = ShardBatcher(0, shard.send, max_batch_commands=10, max_in_flight=1)
        replies = await asyncio.gather(*(
            batcher.enqueue([buy(f"r{i}-{j}") for j in range(4)]) for i in range(6)
        ))
        order_ids = [events[0].order_id for reply in replies for events in reply]  # type: ignore[union-attr]
        return shard.batches, order_ids

    batches, order_ids = asyncio.run(scenario())
    assert batches == [8, 8, 8]
    assert order_ids == sorted(order_ids)


def test_a_full_queue_refuses_new_requests() -> None:
    """Beyond ``max_queued`` waiting commands, submit raises QueueFullError (backpressure)."""

    async def scenario() -> None:
        shard = FakeShard()
        shard.gate = asyncio.Event()
        batcher = ShardBatcher(0, shard.send, max_in_flight=1, max_queued=5)
        first = asyncio.ensure_future(batcher.enqueue([buy("x")]))
        await asyncio.sleep(0.01)
        waiting = asyncio.ensure_future(batcher.enqueue([buy(f"w{i}") for i in range(5)]))
        await asyncio.sleep(0)
        with pytest.raises(QueueFullError):
            await batcher.enqueue([buy("one-too-many")])
        shard.gate.set()
        await asyncio.gather(first, waiting)

    asyncio.run(scenario())


def test_a_failed_call_fails_every_request_in_it() -> None:
    """If the shard call fails, each request of the batch gets the error; later ones work."""

    async def scenario() -> None:
        shard = FakeShard()
        shard.failure = ShardUnavailableError(0, "restarting")
        batcher = ShardBatcher(0, shard.send)
        results = await asyncio.gather(
            *(batcher.enqueue([buy(f"c{i}")]) for i in range(3)), return_exceptions=True
        )
        assert all(isinstance(result, ShardUnavailableError) for result in results)
        shard.failure = None
        (events,) = await batcher.enqueue([buy("c0")])
        assert isinstance(events[0], OrderAccepted)  # the failed batch was never applied

    asyncio.run(scenario())


def test_a_request_cancelled_before_its_batch_leaves_is_not_sent() -> None:
    """A caller that gives up (deadline, disconnect) while waiting costs the shard nothing."""

    async def scenario() -> list[int]:
        shard = FakeShard()
        shard.gate = asyncio.Event()
        batcher = ShardBatcher(0, shard.send, max_in_flight=1)
        first = asyncio.ensure_future(batcher.enqueue([buy("first")]))
        await asyncio.sleep(0.01)
        doomed = asyncio.ensure_future(batcher.enqueue([buy("doomed")]))
        kept = asyncio.ensure_future(batcher.enqueue([buy("kept")]))
        await asyncio.sleep(0.01)
        doomed.cancel()
        shard.gate.set()
        await asyncio.gather(first, kept)
        return shard.batches

    assert asyncio.run(scenario()) == [1, 1]


def test_replies_are_offered_to_the_feed() -> None:
    """Every reply's events (all of the batch, level changes included) reach ``on_reply``."""

    async def scenario() -> list[Event]:
        seen: list[Event] = []
        shard = FakeShard()
        batcher = ShardBatcher(0, shard.send, on_reply=seen.extend)
        await batcher.enqueue([buy("a"), buy("a")])
        return seen

    events = asyncio.run(scenario())
    assert [type(event).__name__ for event in events] == [
        "OrderAccepted", "OrderRejected", "LevelChanged"
    ]
    assert isinstance(events[1], OrderRejected)
    assert [event.seq for event in events] == [1, 2, 3]


def test_a_failed_call_is_reported_to_the_failure_hook() -> None:
    """A call that failed may have been applied (a timeout, a lost answer): ``on_failure``
    hears of it, so the gateway can catch its feed up from the journal."""

    async def scenario() -> list[BaseException]:
        failures: list[BaseException] = []
        shard = FakeShard()
        shard.failure = ShardUnavailableError(0, "took longer than 10 s")
        batcher = ShardBatcher(0, shard.send, on_failure=failures.append)
        with pytest.raises(ShardUnavailableError):
            await batcher.enqueue([buy("lost")])
        assert batcher.failed_batches == 1
        return failures

    (failure,) = asyncio.run(scenario())
    assert isinstance(failure, ShardUnavailableError)


# ------------------------------------------------------------------- no push to the origin


class OriginSink:
    """An `EventSink` that pushes each batch to every gateway feed but its origin's, after a
    random delay (pushes to an async actor arrive in any order)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.feeds: dict[str, ShardFeed] = {}
        self.pushes: set[asyncio.Task[None]] = set()
        self.sent: dict[str, int] = {}
        self.skipped: dict[str, int] = {}

    def publish(self, first_seq: int, last_seq: int, payload: bytes, origin: str = "") -> None:
        for name, feed in self.feeds.items():
            if name == origin:
                self.skipped[name] = self.skipped.get(name, 0) + 1
                continue
            self.sent[name] = self.sent.get(name, 0) + 1
            task = asyncio.get_running_loop().create_task(
                self._push(feed, first_seq, last_seq, payload))
            self.pushes.add(task)
            task.add_done_callback(self.pushes.discard)

    async def _push(self, feed: ShardFeed, first_seq: int, last_seq: int, payload: bytes) -> None:
        await asyncio.sleep(self.rng.random() * 0.004)
        feed.push(first_seq, last_seq, payload)


@pytest.mark.parametrize("seed", range(5))
def test_feeds_fold_every_event_once_when_own_batches_come_only_in_replies(seed: int) -> None:
    """Two gateways (two batches in flight each, replies back in any order) and a client
    without a gateway share a shard; the book pushes no gateway its own batches. Each feed
    still folds the shard's whole sequence exactly once, in order, with no journal repair:
    replies and other origins' pushes wait in the feed until the sequence is contiguous."""
    rng = random.Random(seed)

    async def scenario() -> tuple[BookActor, OriginSink, dict[str, ShardFeed],
                                  dict[str, ShardBatcher]]:
        sink = OriginSink(rng)
        book = BookActor(0, INSTRUMENTS, sink_factory=lambda: sink)
        feeds = {name: ShardFeed(0, ["AAPL"], ring_events=100_000, history=None)
                 for name in ("gateway-0", "gateway-1")}
        for feed in feeds.values():
            feed.start(book.engine.next_seq, {}, [], [])
        sink.feeds = dict(feeds)

        def send_as(origin: str) -> Callable[[bytes], Awaitable[bytes]]:
            async def send(payload: bytes) -> bytes:
                reply = book.apply_batch_with_ends(payload, origin)  # applied in send order
                await asyncio.sleep(rng.random() * 0.004)  # answers come back in any order
                return reply
            return send

        batchers = {
            name: ShardBatcher(0, send_as(name), max_in_flight=2, linger_s=0.0005,
                               on_reply=feeds[name].offer)
            for name in feeds
        }

        async def trader(name: str, count: int) -> None:
            for index in range(count):
                await batchers[name].enqueue([buy(f"{name}-{index}", 1 + index % 3)])
                await asyncio.sleep(rng.random() * 0.001)

        async def direct(count: int) -> None:
            for index in range(count):
                commands: list[Command] = [sell(f"direct-{index}")]
                payload = encode(commands)
                book.apply_batch(payload)
                await asyncio.sleep(rng.random() * 0.002)

        await asyncio.gather(*(trader(name, 40) for name in feeds),
                             *(trader(name, 40) for name in feeds), direct(30))
        deadline = asyncio.get_running_loop().time() + 5
        while sink.pushes and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        return book, sink, feeds, batchers

    book, sink, feeds, batchers = asyncio.run(scenario())
    head = book.engine.next_seq
    for name, feed in feeds.items():
        events = feed.ring.after(0, 1_000_000)
        assert events is not None
        assert [event.seq for event in events] == list(range(1, head)), name
        assert feed.next_seq == head and feed.repairs == 0 and feed.gap_end is None
        # own batches never pushed: every push it got came from another origin
        assert sink.skipped[name] == batchers[name].batches_sent
        assert feed.pushed_batches == sink.sent[name] == book.batches - sink.skipped[name]


def test_a_batch_whose_reply_was_lost_reaches_the_feed_from_the_journal(tmp_path: Path) -> None:
    """The shard applied a batch but the gateway never saw the answer (a timeout): the book
    did not push it either (this gateway was its origin), so the gateway reads it from the
    journal right after the failure; the execution stream then delivers every report once."""
    instruments = [Instrument(symbol="AAPL")]
    book = BookActor(0, instruments, client_order_id_window=1000,
                     log_factory=ShardStorageFactory(shard_directory(str(tmp_path), 0),
                                                     FsyncPolicy()))
    core = GatewayCore("gateway-0", GatewayConfig(), namespace="unit", shard_map=ShardMap(1),
                       instruments=instruments, data_dir=str(tmp_path),
                       client_order_id_window=1000)
    lose = {"lost"}

    async def send(payload: bytes) -> bytes:
        reply = book.apply_batch_with_ends(payload, "gateway-0")
        if any(getattr(c, "client_order_id", "") in lose for c in decode_commands(payload)):
            raise ShardUnavailableError(0, "apply_batch_with_ends took longer than 10 s")
        return reply

    class Pinged:
        async def wait(self, timeout_s: float | None = None) -> tuple[str, int]:
            return book.ping()

    class Book:
        def ping(self) -> Pinged:
            return Pinged()

    core.links[0].book = Book()  # type: ignore[assignment]
    core.batchers[0] = ShardBatcher(0, send, on_reply=core.feeds[0].offer,
                                    on_failure=functools.partial(core.on_batch_failed, 0))

    async def scenario() -> list[int]:
        feed = core.feeds[0]
        view = core.histories[0].view()
        core.ids.load(0, view.client_order_ids)
        feed.start(view.next_seq, view.books, view.halted_symbols, view.killed_accounts)
        stream = follow_executions({0: feed}, {"alice"}, {0: 0}, core.notifier,
                                   StreamSettings(heartbeat_s=0.05))
        await anext(stream)
        await core.route_to_shard(buy("before"))
        with pytest.raises(ShardUnavailableError):
            await core.route_to_shard(buy("lost"))
        seen: list[int] = []
        deadline = asyncio.get_running_loop().time() + 5
        while feed.next_seq < book.engine.next_seq:
            assert asyncio.get_running_loop().time() < deadline, "the lost batch never came"
            await asyncio.sleep(0.01)
        assert feed.repairs == 1 and feed.pushed_batches == 0
        await core.route_to_shard(buy("after"))
        while not seen or seen[-1] < book.engine.next_seq - 1:
            chunk = await anext(stream)
            seen.extend(event.seq for _, events in chunk.parts for event in events)
            if chunk.cursor[0] >= book.engine.next_seq - 1:
                break
        await stream.aclose()
        await core.stop()
        return seen

    seen = asyncio.run(scenario())
    accepted = [event.seq for events in core.histories[0].events(1) for event in events
                if isinstance(event, OrderAccepted)]
    assert len(accepted) == 3
    assert seen == [seq for events in core.histories[0].events(1) for event in events
                    if concerns(event, {"alice"}) for seq in [event.seq]]
