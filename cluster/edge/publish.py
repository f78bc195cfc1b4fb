"""Publication of a shard's events from its book actor to the shard's readers.

The book actor hands each batch's encoded events to a `ReaderFanout` and returns its reply at
once; a background thread sends the batches to every reader actor with fire-and-forget Ray
calls. It lingers ``linger_s`` after the first pending batch before sending: submitting a Ray
call costs the book actor's process CPU and the GIL, and sending while the reply is still on
its way out added ~1 ms to a single order's round trip here; lingering also coalesces the
batches of a busy shard into one call per reader. The read models linger 50 ms (each push
costs the book actor ~0.5-1 ms of CPU, so at a few hundred single orders a second unlingered
pushes dominated its work); gateways, which stream to people, linger 5 ms. Per reader, at
most ``max_in_flight`` calls are outstanding; whatever piles up meanwhile goes out in the next
call, so a slow reader costs fewer calls, not more.

A batch is not sent to its origin: a gateway names itself (its reader name) with each batch
it sends, and already holds the batch's events in the reply, so a push back to it would cost
the book a Ray call (and the gateway another) for nothing. A gateway that lost the reply
(a timeout) catches up from the journal, as a reader does after a dropped batch.

Memory is bounded: past ``max_pending_bytes`` of unsent events for a reader, the oldest are
dropped and the reader, seeing a gap in the sequence, catches up from the journal. A dead
reader is logged and skipped; its supervisor restarts it and it recovers from the journal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Protocol

from cluster.edge.handles import Call, wait_any

log = logging.getLogger(__name__)

Batch = tuple[int, int, bytes]


class Reader(Protocol):
    """Where a reader's batches go: `cluster.edge.handles.ReaderHandle` or `GatewayFeed`."""

    def push(self, batches: Sequence[Batch]) -> Call[int]:
        """Send batches to the reader; return the call in flight."""
        ...


class _Reader:
    def __init__(self, name: str, reader: Reader, linger_s: float) -> None:
        self.name = name
        self.reader = reader
        self.linger_s = linger_s
        self.since = 0.0
        """When the oldest pending batch was queued (monotonic seconds)."""
        self.pending: deque[Batch] = deque()
        self.pending_bytes = 0
        self.in_flight: list[Call[int]] = []
        self.dropped = 0
        self.sent = 0
        """Batches handed to the reader's pushes."""
        self.skipped = 0
        """Batches not sent because this reader was their origin (it has them in the reply)."""


class ReaderFanout:
    """Send event batches to reader actors from a background thread (an `EventSink`)."""

    def __init__(
        self,
        readers: Mapping[str, Reader],
        *,
        max_in_flight: int = 2,
        max_pending_bytes: int = 64 << 20,
        linger_s: float = 0.05,
    ) -> None:
        self._readers = [_Reader(name, handle, linger_s) for name, handle in readers.items()]
        self._max_in_flight = max_in_flight
        self._max_pending_bytes = max_pending_bytes
        self._wake = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="reader-fanout", daemon=True)
        self._thread.start()

    def publish(self, first_seq: int, last_seq: int, payload: bytes, origin: str = "") -> None:
        """Queue a batch for every reader but ``origin`` (the reader that sent the batch and
        has its events in the reply; empty: none); never blocks on the readers."""
        with self._wake:
            now = time.monotonic()
            for reader in self._readers:
                if reader.name == origin:
                    reader.skipped += 1
                    continue
                if not reader.pending:
                    reader.since = now
                reader.pending.append((first_seq, last_seq, payload))
                reader.pending_bytes += len(payload)
                while reader.pending_bytes > self._max_pending_bytes and len(reader.pending) > 1:
                    dropped = reader.pending.popleft()
                    reader.pending_bytes -= len(dropped[2])
                    reader.dropped += 1
                    if reader.dropped == 1 or reader.dropped % 1000 == 0:
                        log.warning("reader %s is slow: %d batches dropped so far; it will "
                                    "catch up from the journal", reader.name, reader.dropped)
            self._wake.notify()

    def add_reader(self, name: str, reader: Reader, linger_s: float = 0.005) -> None:
        """Start publishing to another reader (from the next batch on).

        Gateways stream executions and market data to people, so they linger less than the
        read models (risk, positions), which tolerate tens of milliseconds of lag.
        """
        with self._wake:
            self._readers = [reader for reader in self._readers if reader.name != name]
            self._readers.append(_Reader(name, reader, linger_s))

    def stats(self) -> dict[str, dict[str, int]]:
        """Return per reader: batches pending, calls in flight, batches dropped, sent, and
        skipped (the reader was their origin)."""
        with self._wake:
            return {
                reader.name: {
                    "pending": len(reader.pending),
                    "in_flight": len(reader.in_flight),
                    "dropped": reader.dropped,
                    "sent": reader.sent,
                    "skipped": reader.skipped,
                }
                for reader in self._readers
            }

    def close(self) -> None:
        """Stop the thread (pending batches are abandoned; readers catch up on their own)."""
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopped and not any(r.pending for r in self._readers):
                    self._wake.wait()
                if self._stopped:
                    return
                now = time.monotonic()
                due = [r for r in self._readers if r.pending and now - r.since >= r.linger_s]
                if not due:
                    wait = min(r.since + r.linger_s for r in self._readers if r.pending) - now
                    self._wake.wait(timeout=max(wait, 0.001))
                    continue
            for reader in due:
                try:
                    self._send(reader)
                except Exception:  # the thread must survive anything a reader does
                    log.exception("publishing to reader %s failed", reader.name)

    def _send(self, reader: _Reader) -> None:
        if reader.in_flight:
            still: list[Call[int]] = []
            for call in reader.in_flight:
                if not call.done():
                    still.append(call)
                    continue
                try:
                    call.result()
                except Exception as error:  # the reader catches up from the journal
                    log.warning("reader %s failed a batch: %s", reader.name, error)
            reader.in_flight = still
        if len(reader.in_flight) >= self._max_in_flight:
            wait_any(reader.in_flight, 0.05)
            return
        with self._wake:
            batches = list(reader.pending)
            reader.pending.clear()
            reader.pending_bytes = 0
            # counted with the clearing, under the lock: `stats` never sees a batch neither
            # pending nor sent (the push below can take a millisecond to hand to Ray)
            reader.sent += len(batches)
        if batches:
            reader.in_flight.append(reader.reader.push(batches))


class FanoutFactory:
    """Build a `ReaderFanout` inside the book actor's process (threads do not pickle)."""

    def __init__(self, readers: Mapping[str, Reader]) -> None:
        self.readers = dict(readers)

    def __call__(self) -> ReaderFanout:
        return ReaderFanout(self.readers)
