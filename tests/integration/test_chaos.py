"""Chaos: SIGKILL shard actors during a seeded flow; nothing acknowledged is lost.

A client sends a bounded, seeded flow in batches and, when a shard is unavailable, resends
the same batch (same client order ids) until it is answered. Meanwhile the test kills the
worker processes of book and reader actors for real (``SIGKILL``) at seeded points.
Afterwards:

* every order acknowledged to the client (accepted, or recognised as a duplicate of an
  accepted order) is an order of the fault-free run, and every order of that run was
  acknowledged;
* the trades in the journals equal the fault-free run's trades, one for one (no duplicate);
* books, risk state (in the book actor and in the reader) and positions hash-equal those
  of the same flow run in-process without faults.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from actors.book_actor import BookActor
from actors.core.positions import PositionLedger
from actors.core.risk import RiskLimits
from cluster.clients.ray_client import Client, ShardUnavailableError
from cluster.config import ClusterConfig, InstrumentRegistry, ShardMap, shard_instruments
from cluster.edge.wiring import Cluster, book_name, reader_name, start_cluster
from cluster.research.flow import FlowConfig, demo_instruments, generate_flow
from cluster.storage.shard import replay_events, shard_directory
from protocols.messages import (
    Command,
    Event,
    OrderAccepted,
    OrderRejected,
    RejectCode,
    RequestKind,
    Trade,
    decode_events,
    encode,
)

pytestmark = [pytest.mark.ray, pytest.mark.chaos, pytest.mark.slow]

SEED = 20261122
OPERATIONS = 30_000
BATCH = 250
KILLS = 10
INSTRUMENTS = demo_instruments(6)


@pytest.fixture(scope="module")
def chaos_cluster(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    config = ClusterConfig(
        shards=2,
        namespace="test-chaos",
        data_dir=str(tmp_path_factory.mktemp("chaos")),
        snapshot_every_events=8_000,
        restart_max=100,
    )
    running = start_cluster(config, InstrumentRegistry(tuple(INSTRUMENTS)))
    yield running
    running.stop()


def fault_free(flow: list[Command], shard_map: ShardMap) -> dict[str, Any]:
    """Run the flow through in-process book actors, batch for batch, without faults."""
    grouped = shard_instruments(InstrumentRegistry(tuple(INSTRUMENTS)), shard_map)
    books = {shard: BookActor(shard, members) for shard, members in grouped.items()}
    events: dict[int, list[Event]] = {shard: [] for shard in books}
    for index in range(0, len(flow), BATCH):
        parts: dict[int, list[Command]] = {}
        for command in flow[index : index + BATCH]:
            parts.setdefault(shard_map.shard_of(command.symbol), []).append(command)  # type: ignore[union-attr]
        for shard, part in parts.items():
            events[shard].extend(decode_events(books[shard].apply_batch(encode(part))))
    return {"books": books, "events": events}


def answer(cluster: Cluster, name: str, method: str) -> Any:
    """Call an actor's method, waiting (bounded) while it is restarting: a restarted actor
    recovers its state, which is what the test compares."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return ray.get(getattr(cluster.handle(name), method).remote(), timeout=30)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
            assert time.monotonic() < deadline, f"{name} did not come back within a minute"
            time.sleep(0.2)


def kill(cluster: Cluster, name: str) -> None:
    """SIGKILL the actor's worker process (waiting for it if it is still restarting)."""
    os.kill(answer(cluster, name, "pid"), signal.SIGKILL)


def submit_until_answered(client: Client, batch: list[Command]) -> list[Event]:
    deadline = time.monotonic() + 120
    while True:
        try:
            return client.submit_async(batch).result(timeout_s=60)
        except ShardUnavailableError:
            assert time.monotonic() < deadline, "a shard stayed unavailable for 2 minutes"
            time.sleep(0.2)


def test_kills_lose_nothing_acknowledged_and_duplicate_nothing(chaos_cluster: Cluster) -> None:
    """Seeded SIGKILLs of book and reader actors: zero acknowledged orders lost, zero
    duplicate trades, and the final state equals the fault-free run's."""
    client = Client(chaos_cluster)
    shard_map = chaos_cluster.shard_map
    flow = generate_flow(INSTRUMENTS, FlowConfig(operations=OPERATIONS, seed=SEED, accounts=8),
                         shard_map.shard_of)
    rng = random.Random(SEED)
    batches = [flow[index : index + BATCH] for index in range(0, len(flow), BATCH)]
    kill_at = dict.fromkeys(sorted(rng.sample(range(3, len(batches) - 3), KILLS)))
    for number in kill_at:
        kill_at[number] = rng.choice([book_name, reader_name])(rng.randrange(2))

    acknowledged: dict[tuple[str, str], int] = {}
    retried = 0
    for number, batch in enumerate(batches):
        pending = client.submit_async(batch)
        victim = kill_at.get(number)
        if victim is not None:
            kill(chaos_cluster, victim)  # while the batch may be in flight
        try:
            events = pending.result(timeout_s=60)
        except ShardUnavailableError:
            retried += 1
            events = submit_until_answered(client, batch)
        for event in events:
            # an order is acknowledged by its acceptance, or by a duplicate reject naming it
            duplicate_of_accepted = (
                type(event) is OrderRejected
                and event.request == RequestKind.NEW_ORDER
                and event.code == RejectCode.DUPLICATE_CLIENT_ORDER_ID
                and event.order_id
            )
            if type(event) is OrderAccepted or duplicate_of_accepted:
                acknowledged[(event.account, event.client_order_id)] = event.order_id  # type: ignore[union-attr]

    assert retried >= 1, "no kill hit a batch in flight: the retry path went untested"
    reference = fault_free(flow, shard_map)
    expected_acks = {
        (event.account, event.client_order_id): event.order_id
        for events in reference["events"].values() for event in events
        if type(event) is OrderAccepted
    }
    assert acknowledged == expected_acks

    client.wait_for_readers(timeout_s=120)
    data_dir = Path(chaos_cluster.topology.config.data_dir)
    grouped = shard_instruments(InstrumentRegistry(tuple(INSTRUMENTS)), shard_map)
    for shard in range(2):
        journal_trades = [
            event
            for batch in replay_events(shard_directory(data_dir, shard), shard, grouped[shard])
            for event in batch
            if type(event) is Trade
        ]
        expected_trades = [e for e in reference["events"][shard] if type(e) is Trade]
        strip = lambda t: (t.price, t.quantity, t.maker_order_id, t.taker_order_id)  # noqa: E731
        assert [strip(t) for t in journal_trades] == [strip(t) for t in expected_trades]

        book: BookActor = reference["books"][shard]
        live = answer(chaos_cluster, book_name(shard), "state_hashes")
        assert live["books"] == book.state_hashes()["books"]
        assert live["risk"] == book.risk.state_hash()
        risk_projection = RiskLimits(grouped[shard])
        ledger = PositionLedger(grouped[shard])
        risk_projection.observe(reference["events"][shard], 0)
        ledger.observe(reference["events"][shard], 0)
        assert answer(chaos_cluster, reader_name(shard), "state_hashes") == {
            "risk": risk_projection.state_hash(), "positions": ledger.state_hash(),
        }
    restarts = sum(
        child.restarts
        for status in chaos_cluster.supervision()[1:]
        for child in status.children
    )
    assert restarts >= 1, "the supervisors should have seen the killed actors come back"
