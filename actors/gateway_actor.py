"""The gateway actor: the Ray shell around a gRPC gateway server.

A gateway is an async Ray actor: its event loop runs the ``grpc.aio`` server, the gateway's
calls to the shards, and the event batches the shards push to it. Everything a gateway does
is built by an injected factory (``cluster.gateway.server.GatewayServerFactory``), so this
layer stays free of the cluster package and the shell stays thin:

* the constructor builds the server and starts it on the actor's running loop (so a restart
  by Ray, which runs the constructor again, serves again with no one calling ``start``);
* ``on_shard_events`` takes a shard's pushed events: the injected ``feeds`` make, per shard,
  the reader a book actor publishes to (``cluster.edge.handles.GatewayFeed``, which calls
  ``on_shard_events`` of this actor by name);
* ``ping`` answers the gateway supervisor: the incarnation (new with every process) and the
  gateway's position in the shards' logs, or an error if the server failed to start.

Like the other actors, the class is plain Python; cluster wiring applies ``ray.remote``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from actors.tuning import tune_gc


class GatewayServerLike(Protocol):
    """What the shell needs of a gateway server."""

    async def start(self, subscriber: Callable[[int], Any]) -> int:
        """Follow the shards and serve; return the bound port."""
        ...

    async def stop(self, grace_s: float | None = None) -> None: ...

    def on_events(self, shard: int, batches: Sequence[tuple[int, int, bytes]]) -> int: ...

    def offset(self) -> int: ...

    def status(self) -> dict[str, Any]: ...


class GatewayActor:
    """Run a gateway server in this actor's event loop."""

    def __init__(
        self,
        name: str,
        server_factory: Callable[[str], GatewayServerLike],
        feeds: Callable[[int], Any],
    ) -> None:
        tune_gc()
        self.name = name
        self.incarnation = f"{os.getpid()}-{time.time_ns()}"
        """Changes with every start, so the supervisor sees a restart it did not witness."""
        self.server = server_factory(name)
        # Ray runs an async actor's constructor on its event loop: start serving from here, so
        # a restart (which only runs the constructor) serves again
        self._started: asyncio.Task[int] = asyncio.get_running_loop().create_task(
            self.server.start(feeds)
        )

    async def ready(self) -> int:
        """Wait until the server serves; return its port (raise if it failed to start)."""
        return await asyncio.shield(self._started)

    async def on_shard_events(
        self, shard: int, batches: Sequence[tuple[int, int, bytes]]
    ) -> int:
        """Take a shard's published event batches; return the next seq expected from it."""
        return self.server.on_events(shard, batches)

    async def ping(self) -> tuple[str, int]:
        """Answer a health check: the incarnation and the gateway's position in the logs."""
        if self._started.done() and self._started.exception() is not None:
            raise RuntimeError(f"gateway {self.name} failed to start: {self._started.exception()}")
        return self.incarnation, self.server.offset()

    async def status(self) -> dict[str, Any]:
        """Return the server's address, health and counters."""
        return {"incarnation": self.incarnation, **self.server.status()}

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop serving (the actor stays; kill it to end the process)."""
        await self.server.stop(grace_s)

    async def pid(self) -> int:
        """Return this actor's process id (tests kill it for real)."""
        return os.getpid()
