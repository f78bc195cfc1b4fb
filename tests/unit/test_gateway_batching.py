"""Coalescing of concurrent requests into per-shard batches, against an in-process shard.

The fake shard is a real `BookActor` without storage, so the replies (``apply_batch_with_ends``)
are the real format; its send function counts calls and can be held open or made to fail.
"""

from __future__ import annotations

import asyncio

import pytest

from actors.book_actor import BookActor
from cluster.gateway.batching import ShardBatcher
from protocols.errors import QueueFullError, ShardUnavailableError
from protocols.messages import Event, Instrument, NewOrder, OrderAccepted, OrderRejected, Side

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
