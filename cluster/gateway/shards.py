"""The gateway's view of one shard: async calls to its book actor and its reader.

The rest of the gateway (batching, streams, the gRPC services) sees plain async methods and
two outcomes: an answer, or `ShardUnavailableError` (retryable). The calls go through the
typed handles of `cluster.edge.handles`, the one module that calls Ray, which also decides
what a Ray failure means; a handle looks its actor up again after any failure, so a shard
that its supervisor rebuilt (a new actor under the old name) is found again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from actors.core.positions import Position
from cluster.edge.handles import BookHandle, GatewayFeed, ReaderHandle, SupervisorHandle
from protocols.errors import RaytradeError
from protocols.rows import OrderRow, ShardStatusRow, SupervisorStatusRow

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 5.0


class ShardLink:
    """Async calls to one shard's book actor and its read models."""

    def __init__(self, shard: int, namespace: str, *, timeout_s: float = 10.0,
                 origin: str = "") -> None:
        self.shard = shard
        self.origin = origin
        """The gateway's reader name, sent with each batch: the book does not push that
        batch's events back to this gateway, which has them in the reply."""
        self.book = BookHandle(shard, namespace, timeout_s=timeout_s)
        self.reader = ReaderHandle(shard, namespace, timeout_s=timeout_s)

    # ---------------------------------------------------------------- book actor

    async def apply_batch(self, payload: bytes, traceparents: Sequence[str] = ()) -> bytes:
        """Apply an encoded command batch (its requests' W3C ``traceparents``, if traced);
        return ``apply_batch_with_ends``' reply."""
        return await self.book.apply_batch_with_ends(payload, self.origin, traceparents)

    async def ping(self) -> tuple[str, int]:
        """Return the book actor's incarnation and next sequence number."""
        return await self.book.ping().wait(HEALTH_TIMEOUT_S)

    def book_alive(self) -> bool | None:
        """Tell, without a call, whether Ray holds the book actor alive (None: not known)."""
        return self.book.alive()

    async def add_reader(self, name: str, feed: GatewayFeed) -> None:
        """Have the book actor push its events to the gateway's ``feed`` from now on."""
        await self.book.add_reader(name, feed)

    async def l2(
        self, symbol: str, depth: int
    ) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """Return up to ``depth`` levels per side of a symbol's book."""
        return await self.book.l2(symbol, depth)

    async def order(self, order_id: int) -> OrderRow | None:
        """Return an open order's row, or None."""
        return await self.book.order(order_id)

    async def open_orders(self, account: str, symbol: str) -> list[OrderRow]:
        """Return an account's open orders in this shard (in one symbol, or all)."""
        return await self.book.open_orders(account, symbol)

    async def status(self) -> ShardStatusRow:
        """Return the book actor's status row."""
        return await self.book.status().wait(HEALTH_TIMEOUT_S)

    # ---------------------------------------------------------------- read models

    async def positions(self, account: str) -> list[Position]:
        """Return an account's positions in this shard's symbols."""
        return await self.reader.positions(account)


async def supervisor_statuses(namespace: str, trees: Sequence[str]
                              ) -> list[SupervisorStatusRow]:
    """Return the status of every supervisor in the named supervision trees that answer (the
    others are left out)."""

    async def one(tree: str) -> list[SupervisorStatusRow]:
        try:
            rows: list[SupervisorStatusRow] = await SupervisorHandle(tree, namespace).statuses(
            ).wait(HEALTH_TIMEOUT_S)
            return rows
        except RaytradeError as error:
            log.info("supervision tree %s did not answer: %s", tree, error)
            return []

    found = await asyncio.gather(*(one(tree) for tree in trees))
    return [row for rows in found for row in rows]
