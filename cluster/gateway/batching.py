"""Coalescing of concurrent requests into one command batch per shard.

A Ray call costs about a millisecond whatever it carries, and matching one order costs a few
microseconds, so the gateway must never make one Ray call per order. Each shard gets a
`ShardBatcher`: requests that arrive while the shard is busy wait together and go out as one
batch (``BookActor.apply_batch_with_ends``), and the reply is split back per request by the
``ends`` the shard returns.

When to send:

* the shard is idle: at once (on the next turn of the event loop, so requests that arrived in
  the same turn share the call) — an idle gateway adds no waiting to a lone order;
* a batch is in flight: when it returns, or after ``linger_s`` if fewer than
  ``max_in_flight`` batches are out, or as soon as ``max_batch_commands`` are waiting;
* beyond ``max_queued`` waiting commands the batcher refuses new ones (`QueueFullError`):
  backpressure instead of unbounded memory.

The reply carries every event of the batch (the same ones the shard publishes), so an
``on_reply`` hook hands them to the gateway's feed at once; the shard does not push them to
this gateway as well. A call that failed may still have been applied (a timeout, a lost
answer), so an ``on_failure`` hook lets the gateway catch its feed up from the journal.

Ray runs one caller's calls to an actor in the order they were made, so batches to a shard
apply in order and a client's cancel never overtakes its order.

The send function is injected (the Ray call lives in `cluster.gateway.shards`), so this
module is tested without Ray.

It refuses with `protocols.errors.QueueFullError` and fails a batch the shard did not answer
with `protocols.errors.ShardUnavailableError` (retrying it is safe; the tree is drawn there).

The batcher decides by no clock: the linger is a timer of the event loop (``call_later``),
which decides only when a batch leaves, never what is in it or what it answers. An optional
`BatchObserver` (the gateway's metrics) is told how long requests waited and how long each
call took, by its own clock.

Traces: `enqueue` runs inside the RPC's handler, where the gateway's server span is current.
With a ``traceparent`` hook set (`GatewayCore.trace_batches`; `actors.tracing`), each request
keeps the W3C ``traceparent`` of its span, and a batch is sent with those of its requests
(deduplicated, at most `MAX_TRACEPARENTS`), so the shard's batch span links to every
request's. Without the hook (tracing off) nothing is captured and the send gets the payload
alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import msgspec

from actors.book_actor import decode_with_ends
from protocols.convert import WireRow
from protocols.errors import QueueFullError, ShardUnavailableError
from protocols.messages import Command, Event

log = logging.getLogger(__name__)

_encoder = msgspec.msgpack.Encoder()


MAX_TRACEPARENTS = 128
"""Trace contexts a batch carries at most: OpenTelemetry's default limit of links per span."""


class Send(Protocol):
    """Send an encoded command batch to the shard; return ``apply_batch_with_ends``' reply.

    ``traceparents`` are the W3C trace contexts of the batch's requests; a batch without any
    is sent with the payload alone, so a send for an untraced gateway may take only that.
    """

    def __call__(self, payload: bytes, traceparents: Sequence[str] = ()) -> Awaitable[bytes]:
        ...


class BatchObserver(Protocol):
    """Told what each batch did (the gateway's metrics); must be cheap and never raise."""

    def now(self) -> float:
        """Return the observer's clock, in seconds."""
        ...

    def sent(self, shard: int, commands: int, waited_s: Sequence[float]) -> None:
        """A batch of ``commands`` left; its requests waited ``waited_s`` each."""
        ...

    def answered(self, shard: int, call_s: float, failed: bool) -> None:
        """The shard answered a batch (or the call failed) after ``call_s``."""
        ...


class _Request:
    __slots__ = ("commands", "future", "queued_at", "traceparent")

    def __init__(
        self, commands: Sequence[Command | WireRow], future: asyncio.Future[list[list[Event]]],
        queued_at: float, traceparent: str | None,
    ) -> None:
        self.commands = commands
        self.future = future
        self.queued_at = queued_at
        self.traceparent = traceparent


class ShardBatcher:
    """Coalesce one shard's requests into batches; answer each request with its events."""

    def __init__(
        self,
        shard: int,
        send: Send,
        *,
        max_batch_commands: int = 20_000,
        max_in_flight: int = 2,
        max_queued: int = 200_000,
        linger_s: float = 0.001,
        on_reply: Callable[[list[Event]], None] | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
        observer: BatchObserver | None = None,
    ) -> None:
        self.shard = shard
        self.observer = observer
        """Told what each batch did (set later by `GatewayCore.observe_batches`)."""
        self.traceparent: Callable[[], str | None] | None = None
        """Return the caller's W3C traceparent (None: no span is current); None: tracing is
        off (set by `GatewayCore.trace_batches`)."""
        self._send = send
        self._on_reply = on_reply
        self._on_failure = on_failure
        self.max_batch_commands = max_batch_commands
        self.max_in_flight = max_in_flight
        self.max_queued = max_queued
        self.linger_s = linger_s
        self._pending: deque[_Request] = deque()
        self._queued = 0
        self._in_flight = 0
        self._scheduled: asyncio.Handle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches_sent = 0
        self.commands_sent = 0
        self.failed_batches = 0
        """Batches whose call failed (the shard may have applied them all the same)."""

    @property
    def queued(self) -> int:
        """Commands waiting to be sent."""
        return self._queued

    @property
    def in_flight(self) -> int:
        """Batches sent and not yet answered."""
        return self._in_flight

    async def enqueue(self, commands: Sequence[Command | WireRow]) -> list[list[Event]]:
        """Send commands (in order) with whatever else is waiting; return each one's events.

        A command may be a wire row that encodes as one (see `protocols.convert.WireRow`).

        Raise `QueueFullError` if too much waits already, `ShardUnavailableError` if the
        shard does not answer. If the caller is cancelled before the batch leaves, its
        commands are not sent.
        """
        if not commands:
            return []
        if self._queued + len(commands) > self.max_queued and self._queued:
            raise QueueFullError(
                f"{self._queued} commands already wait for shard {self.shard} at this gateway"
            )
        future: asyncio.Future[list[list[Event]]] = asyncio.get_running_loop().create_future()
        queued_at = self.observer.now() if self.observer is not None else 0.0
        traceparent = self.traceparent() if self.traceparent is not None else None
        self._pending.append(_Request(commands, future, queued_at, traceparent))
        self._queued += len(commands)
        self._wake()
        return await future

    # ---------------------------------------------------------------- scheduling

    def _wake(self) -> None:
        if self._in_flight >= self.max_in_flight or self._scheduled is not None:
            return
        loop = asyncio.get_running_loop()
        if self._in_flight == 0:
            self._scheduled = loop.call_soon(self._flush)
        elif self._queued >= self.max_batch_commands:
            self._flush()
        else:
            self._scheduled = loop.call_later(self.linger_s, self._flush)

    def _flush(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        while self._pending and self._in_flight < self.max_in_flight:
            batch = self._take()
            if batch:
                self._in_flight += 1
                task = asyncio.get_running_loop().create_task(self._call(batch))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[_Request]:
        """Take waiting requests, whole, up to the batch size (at least one)."""
        taken: list[_Request] = []
        size = 0
        pending = self._pending
        while pending:
            count = len(pending[0].commands)
            if taken and size + count > self.max_batch_commands:
                break
            request = pending.popleft()
            self._queued -= count
            if request.future.done():  # cancelled by its caller (deadline, disconnect)
                continue
            taken.append(request)
            size += count
        return taken

    async def _call(self, batch: list[_Request]) -> None:
        try:
            commands: list[Command | WireRow] = []
            for request in batch:
                commands.extend(request.commands)
            self.batches_sent += 1
            self.commands_sent += len(commands)
            observer = self.observer
            if observer is not None:
                sent_at = observer.now()
                observer.sent(self.shard, len(commands),
                              [sent_at - request.queued_at for request in batch])
            try:
                traceparents = _traceparents(batch) if self.traceparent is not None else None
                if traceparents:
                    reply = await self._send(_encoder.encode(commands), traceparents)
                else:
                    reply = await self._send(_encoder.encode(commands))
                ends, events = decode_with_ends(reply)
                if observer is not None:
                    observer.answered(self.shard, observer.now() - sent_at, False)
            except asyncio.CancelledError:
                error: BaseException = ShardUnavailableError(self.shard, "the gateway is stopping")
                self._fail(batch, error)
                raise
            except Exception as failure:  # every caller must get an answer
                if observer is not None:
                    observer.answered(self.shard, observer.now() - sent_at, True)
                self._fail(batch, failure)
                self.failed_batches += 1
                if self._on_failure is not None:
                    try:
                        self._on_failure(failure)
                    except Exception:  # the batcher must outlive its hook
                        log.exception("shard %d: the failure hook failed", self.shard)
                return
            if self._on_reply is not None and events:
                self._on_reply(events)
            if len(ends) != len(commands):
                self._fail(batch, RuntimeError(
                    f"shard {self.shard} answered {len(ends)} commands of {len(commands)}"
                ))
                return
            position = 0
            start = 0
            for request in batch:
                per_command: list[list[Event]] = []
                for _ in request.commands:
                    end = ends[position]
                    per_command.append(events[start:end])
                    start = end
                    position += 1
                if not request.future.done():
                    request.future.set_result(per_command)
        finally:
            self._in_flight -= 1
            if self._pending:
                self._flush()

    @staticmethod
    def _fail(batch: list[_Request], error: BaseException) -> None:
        for request in batch:
            if not request.future.done():
                request.future.set_exception(error)

    async def close(self) -> None:
        """Fail whatever waits and stop the calls in flight."""
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        waiting, self._pending = list(self._pending), deque()
        self._queued = 0
        self._fail(waiting, ShardUnavailableError(self.shard, "the gateway is stopping"))
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _traceparents(batch: Sequence[_Request]) -> list[str]:
    """Return the batch's distinct traceparents, in arrival order, at most MAX_TRACEPARENTS."""
    found: dict[str, None] = {}
    for request in batch:
        traceparent = request.traceparent
        if traceparent is not None and traceparent not in found:
            found[traceparent] = None
            if len(found) == MAX_TRACEPARENTS:
                break
    return list(found)
