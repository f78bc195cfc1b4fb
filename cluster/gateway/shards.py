"""Every Ray call the gateway makes, in one thin wrapper per shard.

The rest of the gateway (batching, streams, the gRPC services) sees plain async methods and
two outcomes: an answer, or `ShardUnavailableError`. Keeping Ray here means everything else
is tested without a cluster, and the one place that knows how a Ray failure looks decides
what is retryable.

A cached actor handle is dropped after any failure and looked up again by name on the next
call, so a shard that its supervisor rebuilt (a new actor under the old name) is found again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import ray
from ray.exceptions import RayError

from cluster.edge.wiring import book_name, positions_name, risk_name
from cluster.gateway.batching import ShardUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")


class ShardLink:
    """Async calls to one shard's book, risk and position actors."""

    def __init__(self, shard: int, namespace: str, *, timeout_s: float = 10.0) -> None:
        self.shard = shard
        self.namespace = namespace
        self.timeout_s = timeout_s
        self._handles: dict[str, Any] = {}

    async def _handle(self, name: str) -> Any:
        handle = self._handles.get(name)
        if handle is None:
            try:
                handle = await asyncio.to_thread(ray.get_actor, name, namespace=self.namespace)
            except ValueError as error:  # no such actor: being rebuilt
                raise ShardUnavailableError(self.shard, f"{name} is not running") from error
            self._handles[name] = handle
        return handle

    async def _call(
        self, name: str, method: str, *args: Any, timeout_s: float | None = None
    ) -> Any:
        handle = await self._handle(name)
        try:
            reference = getattr(handle, method).remote(*args)
            # a concurrent future costs less CPU than awaiting the reference (measured)
            return await asyncio.wait_for(asyncio.wrap_future(reference.future()),
                                          timeout_s or self.timeout_s)
        except TimeoutError as error:
            self._handles.pop(name, None)
            raise ShardUnavailableError(
                self.shard, f"{name}.{method} took longer than {timeout_s or self.timeout_s} s"
            ) from error
        except RayError as error:
            self._handles.pop(name, None)
            raise ShardUnavailableError(
                self.shard, f"{name}.{method} failed: {_summary(error)}"
            ) from error

    # ---------------------------------------------------------------- book actor

    async def submit(self, payload: bytes) -> bytes:
        """Apply an encoded command batch; return ``submit_with_ends``' reply."""
        reply: bytes = await self._call(book_name(self.shard), "submit_with_ends", payload)
        return reply

    async def ping(self) -> tuple[str, int]:
        """Return the book actor's incarnation and next sequence number."""
        incarnation, next_seq = await self._call(book_name(self.shard), "ping", timeout_s=5.0)
        return str(incarnation), int(next_seq)

    async def add_reader(self, name: str, handle: Any) -> None:
        """Have the book actor push its events to ``handle.on_events`` from now on."""
        await self._call(book_name(self.shard), "add_reader", name, handle)

    async def l2(
        self, symbol: str, depth: int
    ) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """Return up to ``depth`` levels per side of a symbol's book."""
        bids, asks = await self._call(book_name(self.shard), "l2", symbol, depth)
        return [tuple(level) for level in bids], [tuple(level) for level in asks]

    async def order(self, order_id: int) -> dict[str, Any] | None:
        """Return an open order's row, or None."""
        row: dict[str, Any] | None = await self._call(book_name(self.shard), "order", order_id)
        return row

    async def open_orders(self, account: str, symbol: str) -> list[dict[str, Any]]:
        """Return an account's open orders in this shard (in one symbol, or all)."""
        rows: list[dict[str, Any]] = await self._call(
            book_name(self.shard), "open_orders", account, symbol
        )
        return rows

    async def status(self) -> dict[str, Any]:
        """Return the book actor's status row."""
        row: dict[str, Any] = await self._call(book_name(self.shard), "status", timeout_s=5.0)
        return row

    # ---------------------------------------------------------------- readers

    async def positions(self, account: str) -> list[dict[str, Any]]:
        """Return an account's positions in this shard's symbols."""
        rows: list[dict[str, Any]] = await self._call(
            positions_name(self.shard), "positions", account
        )
        return rows

    async def risk_status(self) -> dict[str, Any]:
        """Return the kill switches and halts the shard's risk actor has seen."""
        row: dict[str, Any] = await self._call(risk_name(self.shard), "status", timeout_s=5.0)
        return row


def _summary(error: RayError) -> str:
    """Return the last line of a Ray error: the remote exception's own message."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1] if lines else ''}"[:500]


async def _awaitable(reference: Awaitable[T]) -> T:
    return await reference


async def supervisor_statuses(namespace: str, names: Sequence[str]) -> list[dict[str, Any]]:
    """Return the status of the named supervisors that answer (the others are left out)."""

    async def one(name: str) -> dict[str, Any] | None:
        try:
            handle = await asyncio.to_thread(ray.get_actor, name, namespace=namespace)
            row: dict[str, Any] = await asyncio.wait_for(
                _awaitable(handle.status.remote()), 5.0
            )
            return row
        except (ValueError, RayError, TimeoutError) as error:
            log.info("supervisor %s did not answer: %s", name, error)
            return None

    rows = await asyncio.gather(*(one(name) for name in names))
    return [row for row in rows if row is not None]


def current_actor() -> Any:
    """Return the handle of the actor this code runs in (for subscriptions)."""
    return ray.get_runtime_context().current_actor
