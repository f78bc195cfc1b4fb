"""The gateway's maintenance loop: a quiet shard is pinged every ``quiet_check_s``, any other
shard every ``health_check_s`` (issue 10: an idle gateway cost 4 pings a second).

A real in-process `BookActor` (with a journal) stands behind a fake book handle that counts
pings and says what Ray's view of the actor would (``alive``); no Ray.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from actors.book_actor import BookActor
from cluster.config import ShardMap
from cluster.gateway.config import GatewayConfig
from cluster.gateway.core import GatewayCore
from cluster.storage.journal import FsyncPolicy
from cluster.storage.shard import ShardStorageFactory, shard_directory
from protocols.messages import Instrument, NewOrder, Side, encode

INSTRUMENTS = [Instrument(symbol="AAPL")]
HEALTH_CHECK_S = 0.01
QUIET_CHECK_S = 0.25


class Sink:
    """Where the book publishes its batches (the pushes a gateway would get)."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, int, bytes]] = []

    def publish(self, first_seq: int, last_seq: int, payload: bytes, origin: str = "") -> None:
        self.batches.append((first_seq, last_seq, payload))


class Answer:
    def __init__(self, value: Any) -> None:
        self.value = value

    async def wait(self, timeout_s: float | None = None) -> Any:
        return self.value

    def __await__(self) -> Any:
        return self.wait().__await__()


class FakeBook:
    """The gateway's handle of the book: pings answered by the real book, Ray's view faked."""

    def __init__(self, book: BookActor) -> None:
        self.book = book
        self.pings = 0
        self.readers = 0
        self.state: bool | None = True

    def ping(self) -> Answer:
        self.pings += 1
        return Answer(self.book.ping())

    def add_reader(self, name: str, feed: object) -> Answer:
        self.readers += 1
        return Answer(None)

    def alive(self) -> bool | None:
        return self.state


def gateway(tmp_path: Path) -> tuple[GatewayCore, FakeBook, BookActor, Sink]:
    sink = Sink()
    book = BookActor(0, INSTRUMENTS, client_order_id_window=1000, sink_factory=lambda: sink,
                     log_factory=ShardStorageFactory(shard_directory(str(tmp_path), 0),
                                                     FsyncPolicy()))
    core = GatewayCore("gateway-0", GatewayConfig(health_check_s=HEALTH_CHECK_S,
                                                  quiet_check_s=QUIET_CHECK_S),
                       namespace="unit", shard_map=ShardMap(1), instruments=INSTRUMENTS,
                       data_dir=str(tmp_path), client_order_id_window=1000)
    fake = FakeBook(book)
    core.links[0].book = fake  # type: ignore[assignment]
    return core, fake, book, sink


def pings_over(core: GatewayCore, fake: FakeBook, seconds: float,
               during: Any = None) -> int:
    """Run the gateway for ``seconds`` (``during`` runs alongside); return the pings made."""

    async def scenario() -> int:
        await core.start(lambda shard: None)
        before = fake.pings
        if during is not None:
            await asyncio.gather(asyncio.sleep(seconds), during())
        else:
            await asyncio.sleep(seconds)
        pinged = fake.pings - before
        await core.stop()
        return pinged

    return asyncio.run(scenario())


def test_a_quiet_shard_is_pinged_every_quiet_check(tmp_path: Path) -> None:
    """Up, attached, no gap, no lag, no new event and alive in Ray's view: over 1 s, about four
    pings (one per 0.25 s) instead of about a hundred (one per 0.01 s tick)."""
    core, fake, _, _ = gateway(tmp_path)
    pinged = pings_over(core, fake, 1.0)
    assert 2 <= pinged <= 6, pinged
    assert core.serving


def test_a_shard_ray_does_not_hold_alive_is_pinged_every_tick(tmp_path: Path) -> None:
    """Restarting or dead in Ray's view (False), or not known (None): every health check
    pings, as before the gateway learned to skip."""
    for state in (False, None):
        core, fake, _, _ = gateway(tmp_path / str(state))
        fake.state = state
        assert pings_over(core, fake, 0.5) >= 20


def test_a_shard_whose_events_move_is_pinged_every_tick(tmp_path: Path) -> None:
    """Events arriving since the last check (a shard in use) keep the health-check cadence, so
    a push lost meanwhile is found by the lag check as quickly as before."""
    core, fake, book, sink = gateway(tmp_path)

    async def trade() -> None:
        for index in range(40):
            book.apply_batch(encode([NewOrder(
                account="alice", client_order_id=f"order-{index}", symbol="AAPL",
                side=Side.BUY, quantity=1, price=100)]))
            core.on_events(0, sink.batches)
            sink.batches.clear()
            await asyncio.sleep(HEALTH_CHECK_S)

    assert pings_over(core, fake, 0.5, during=trade) >= 20
    assert core.feeds[0].next_seq == book.engine.next_seq


def test_a_restart_seen_in_rays_view_subscribes_the_gateway_again(tmp_path: Path) -> None:
    """A book actor that Ray restarted (seen restarting, then alive with a new incarnation) is
    pinged at the next tick and subscribed to again, without waiting for quiet_check_s."""
    core, fake, book, _ = gateway(tmp_path)

    async def restart() -> None:
        await asyncio.sleep(0.1)
        fake.state = False  # Ray marks it restarting
        book.incarnation = "restarted"
        await asyncio.sleep(0.05)
        fake.state = True

    pings_over(core, fake, 0.2, during=restart)
    assert fake.readers == 2  # the first attach, and again for the new incarnation
    assert core.serving
