"""A book actor recovers from snapshot + journal on real files; zombies are fenced.

These run the book actor class in-process (its Ray shell adds nothing to recovery): the
constructor is the recovery path, so "restart" here is building a new one on the same folder.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from actors.book_actor import BookActor
from actors.core.shard import ReplayDivergedError, state_hashes
from actors.projections import ShardReader
from cluster.research.flow import FlowConfig, demo_instruments, generate_flow
from cluster.storage.journal import FsyncPolicy, JournalFenced
from cluster.storage.shard import (
    ProjectionStorageFactory,
    ShardReplay,
    ShardStorageFactory,
    replay_events,
)
from protocols.messages import (
    Command,
    Event,
    NewOrder,
    OrderRejected,
    RejectCode,
    Side,
    decode_events,
    encode,
)

INSTRUMENTS = demo_instruments(3)


def flow(operations: int = 3_000, seed: int = 3) -> list[Command]:
    return generate_flow(INSTRUMENTS, FlowConfig(operations=operations, seed=seed, accounts=5))


def book(directory: Path, **options: object) -> BookActor:
    return BookActor(0, INSTRUMENTS, log_factory=ShardStorageFactory(directory, FsyncPolicy()),
                     **options)  # type: ignore[arg-type]


def events_for(actor: BookActor, commands: list[Command]) -> list[Event]:
    return decode_events(actor.apply_batch(encode(commands)))


def feed(actor: BookActor, commands: list[Command], batch: int = 100) -> None:
    for index in range(0, len(commands), batch):
        actor.apply_batch(encode(commands[index : index + batch]))


@pytest.mark.parametrize("snapshot_every_events", [10**9, 1_000])
def test_a_new_incarnation_recovers_the_same_state(
    tmp_path: Path, snapshot_every_events: int
) -> None:
    """Startup and crash recovery share one path: newest snapshot, then the journal after it;
    the state hashes equal the live ones."""
    commands = flow()
    live = book(tmp_path, snapshot_every_events=snapshot_every_events)
    feed(live, commands)
    expected = live.state_hashes()
    recovered = book(tmp_path, snapshot_every_events=snapshot_every_events)
    assert recovered.state_hashes() == expected
    assert recovered.engine.next_seq == live.engine.next_seq


def test_a_corrupt_snapshot_falls_back_to_the_journal(tmp_path: Path) -> None:
    """A damaged snapshot is skipped (an optimisation, never a source of truth)."""
    live = book(tmp_path, snapshot_every_events=500)
    feed(live, flow())
    expected = live.state_hashes()
    for snapshot in (tmp_path / "snapshots").glob("*.snap"):
        data = bytearray(snapshot.read_bytes())
        data[-5] ^= 0xFF
        snapshot.write_bytes(bytes(data))
    assert book(tmp_path).state_hashes() == expected


def test_replay_of_the_journal_gives_the_live_events(tmp_path: Path) -> None:
    """Determinism: the journal replayed through a fresh engine gives the very events the
    live shard produced, from any starting point."""
    live = book(tmp_path, snapshot_every_events=700)
    events = []
    commands = flow()
    for index in range(0, len(commands), 100):
        events.extend(events_for(live, commands[index : index + 100]))
    replayed = [e for batch in replay_events(tmp_path, 0, INSTRUMENTS) for e in batch]
    assert replayed == events
    middle = events[len(events) // 2].seq
    tail = [e for batch in replay_events(tmp_path, 0, INSTRUMENTS, middle) for e in batch]
    assert tail == [e for e in events if e.seq >= middle]


def test_a_replay_of_a_range_gives_exactly_its_events(tmp_path: Path) -> None:
    """``replay_events(from_seq, to_seq)`` yields the events of that range and no other,
    whether the range ends inside a batch or on its boundaries."""
    live = book(tmp_path, snapshot_every_events=700)
    events = []
    commands = flow()
    batch_ends = []
    for index in range(0, len(commands), 100):
        events.extend(events_for(live, commands[index : index + 100]))
        batch_ends.append(events[-1].seq)
    inside = events[len(events) // 3].seq
    cases = [
        (1, batch_ends[0]),
        (batch_ends[0] + 1, batch_ends[2]),
        (inside, inside),
        (inside, batch_ends[-2] - 7),
        (batch_ends[1] + 1, None),
    ]
    for from_seq, to_seq in cases:
        batches = list(replay_events(tmp_path, 0, INSTRUMENTS, from_seq, to_seq))
        assert all(batches)
        expected = [
            e for e in events if e.seq >= from_seq and (to_seq is None or e.seq <= to_seq)
        ]
        assert [e for batch in batches for e in batch] == expected, (from_seq, to_seq)


def test_resubmitted_orders_survive_a_restart_as_duplicates(tmp_path: Path) -> None:
    """The idempotency window is part of the recovered state: a retry after a crash is
    recognised, not entered twice."""
    live = book(tmp_path)
    order = NewOrder(account="A", client_order_id="once", symbol="SYM0", side=Side.BUY,
                     price=9_000, quantity=5, ts_ns=1)
    accepted = events_for(live, [order])[0]
    again = events_for(book(tmp_path), [order])
    assert len(again) == 1 and isinstance(again[0], OrderRejected)
    assert again[0].code == RejectCode.DUPLICATE_CLIENT_ORDER_ID
    assert again[0].order_id == accepted.order_id  # type: ignore[union-attr]


def test_a_zombie_incarnation_cannot_acknowledge_anything(tmp_path: Path) -> None:
    """Once a newer incarnation opened the journal, the old one's next batch raises instead
    of answering, and it refuses every batch after that."""
    zombie = book(tmp_path)
    feed(zombie, flow(500))
    successor = book(tmp_path)
    with pytest.raises(JournalFenced):
        zombie.apply_batch(encode(flow(600)[500:]))
    with pytest.raises(RuntimeError, match="stopped serving"):
        zombie.apply_batch(encode(flow(600)[500:]))
    feed(successor, flow(600)[500:])
    assert book(tmp_path).state_hashes() == successor.state_hashes()


def test_a_fenced_incarnation_reports_its_failure_once(tmp_path: Path) -> None:
    """The failure hook (the wiring's ends the process) hears why, once, before the raise;
    what the zombie applied in memory never reaches the journal."""
    reasons: list[str] = []
    zombie = book(tmp_path, on_journal_failure=reasons.append)
    feed(zombie, flow(300))
    successor = book(tmp_path)
    with pytest.raises(JournalFenced):
        zombie.apply_batch(encode(flow(400)[300:]))
    with pytest.raises(RuntimeError, match="stopped serving"):
        zombie.ping()
    assert len(reasons) == 1 and "JournalFenced" in reasons[0], reasons
    assert book(tmp_path).state_hashes() == successor.state_hashes()


def test_projections_recover_from_their_snapshot_and_the_journal(tmp_path: Path) -> None:
    """A reader rebuilds from its own snapshot plus the shard's replayed events and agrees
    with one that folded every event live, in both its models."""
    live_book = book(tmp_path, snapshot_every_events=800)
    storage = ProjectionStorageFactory(tmp_path, 0, INSTRUMENTS)
    live = ShardReader(0, INSTRUMENTS, log_factory=storage, snapshot_every_events=500)
    commands = flow()
    for index in range(0, len(commands), 100):
        first_seq = live_book.engine.next_seq
        payload = live_book.apply_batch(encode(commands[index : index + 100]))
        live.on_events([(first_seq, live_book.engine.next_seq - 1, payload)])
    restarted = ShardReader(0, INSTRUMENTS, log_factory=storage)
    assert restarted.next_seq == live.next_seq
    assert restarted.state_hashes() == live.state_hashes()
    assert restarted.state_hashes()["risk"] == live_book.risk.state_hash()  # the gate's fold
    # a gap in what is pushed is repaired from the journal
    behind = ShardReader(0, INSTRUMENTS, log_factory=storage)
    behind.next_seq = 1
    behind.model = type(behind.model)(INSTRUMENTS)
    next_payload = live_book.apply_batch(encode(flow(3_100)[3_000:]))
    behind.on_events([(live.next_seq, live_book.engine.next_seq - 1, next_payload)])
    live.on_events([(live.next_seq, live_book.engine.next_seq - 1, next_payload)])
    assert behind.state_hashes() == live.state_hashes() and behind.gaps_repaired == 1


def test_snapshot_sequence_never_runs_ahead_of_the_journal(tmp_path: Path) -> None:
    """A snapshot newer than the journal's end (a lost unsynced tail) is not used."""
    live = book(tmp_path)
    feed(live, flow(1_000))
    state = live.state()
    live.log.save_snapshot(live.engine.next_seq + 50, state)  # type: ignore[union-attr]
    recovered = book(tmp_path)
    assert recovered.engine.next_seq == live.engine.next_seq
    assert msgspec.msgpack.encode(recovered.state()) == msgspec.msgpack.encode(live.state())


def test_a_storage_replay_reaches_the_live_shards_state(tmp_path: Path) -> None:
    """The replay projections, gateways and researchers use (`ShardReplay`) builds and feeds
    the shard as the book actor's recovery does: same state hashes as the live shard."""
    live = book(tmp_path, snapshot_every_events=900)
    feed(live, flow())
    replay = ShardReplay(tmp_path, 0, INSTRUMENTS)
    for _ in replay.batches():
        pass
    assert state_hashes(replay.risk, replay.engine) == live.state_hashes()


def test_a_replay_with_another_client_order_id_window_diverges_loudly(tmp_path: Path) -> None:
    """A replay that decides otherwise than the live run raises instead of serving another
    state: with a smaller idempotency window, a resubmission the live shard rejected as a
    duplicate (one event) is entered again (more events) and the recorded range no longer fits."""
    live = book(tmp_path, client_order_id_window=10)
    first = NewOrder(account="A", client_order_id="c0", symbol="SYM0", side=Side.BUY,
                     price=9_000, quantity=5, ts_ns=1)
    later = [msgspec.structs.replace(first, client_order_id=f"c{n}") for n in range(1, 5)]
    events_for(live, [first, *later])
    events_for(live, [first])  # remembered within the window of 10: a DUPLICATE reject
    replay = ShardReplay(tmp_path, 0, INSTRUMENTS, client_order_id_window=2)
    with pytest.raises(ReplayDivergedError):
        for _ in replay.batches():
            pass
