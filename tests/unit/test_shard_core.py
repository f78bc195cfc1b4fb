"""The pure shard (actors.core.shard): one way to build a shard and replay its journal.

Every replay (book actor recovery, projections, gateway history, researchers) goes through
`build_shard` and `replay_batch`, so these rules hold for all of them.
"""

from __future__ import annotations

import msgspec
import pytest

from actors.core.shard import (
    ReplayDivergedError,
    ShardState,
    build_shard,
    replay_batch,
    shard_state,
    state_hashes,
)
from cluster.research.flow import FlowConfig, demo_instruments, generate_flow
from protocols.journal_format import CommandBatch
from protocols.messages import Command

INSTRUMENTS = demo_instruments(2)


def journal(commands: list[Command], batch: int = 50) -> list[CommandBatch]:
    """Run ``commands`` through a live shard; return the batches as its journal records them."""
    _, engine = build_shard(0, INSTRUMENTS)
    batches = []
    for index in range(0, len(commands), batch):
        first_seq = engine.next_seq
        chunk = commands[index : index + batch]
        if engine.apply(chunk):
            batches.append(CommandBatch(epoch=1, first_seq=first_seq,
                                        last_seq=engine.next_seq - 1, commands=chunk))
    return batches


def flow(operations: int = 1_500, seed: int = 11) -> list[Command]:
    return generate_flow(INSTRUMENTS, FlowConfig(operations=operations, seed=seed, accounts=4))


def test_replaying_the_same_journal_twice_gives_the_same_state_hashes() -> None:
    """Determinism: two replays of one journal end in equal books, engine and risk hashes."""
    batches = journal(flow())
    hashes = []
    for _ in range(2):
        risk, engine = build_shard(0, INSTRUMENTS)
        for batch in batches:
            replay_batch(engine, batch, "test")
        engine.check_invariants()
        risk.check_invariants()
        hashes.append(state_hashes(risk, engine))
    assert hashes[0] == hashes[1]
    assert engine.next_seq == batches[-1].last_seq + 1


def test_a_shard_built_from_its_state_replays_the_tail_like_the_full_replay() -> None:
    """A snapshot (the shard's state, encoded as the snapshot store keeps it) plus the batches
    after it reach the state a replay from the start reaches."""
    batches = journal(flow())
    middle = len(batches) // 2
    risk, engine = build_shard(0, INSTRUMENTS)
    for batch in batches[:middle]:
        replay_batch(engine, batch, "test")
    snapshot = msgspec.msgpack.decode(
        msgspec.msgpack.encode(shard_state(risk, engine)), type=ShardState
    )
    resumed_risk, resumed_engine = build_shard(0, INSTRUMENTS, snapshot)
    for batch in batches[middle:]:
        replay_batch(engine, batch, "test")
        replay_batch(resumed_engine, batch, "test")
    resumed_engine.check_invariants()
    resumed_risk.check_invariants()
    assert state_hashes(resumed_risk, resumed_engine) == state_hashes(risk, engine)


@pytest.mark.parametrize("seed", [3, 11, 29])
def test_the_risk_gate_is_restored_from_the_books_or_from_an_older_snapshots_list(
    seed: int,
) -> None:
    """A shard's snapshot leaves the gate's open orders out (they are the books' resting
    orders): the restored gate equals the original, open orders, exposures and all; so does one
    restored from a snapshot that still lists them (written before this change)."""
    risk, engine = build_shard(0, INSTRUMENTS)
    for batch in journal(flow(seed=seed)):
        replay_batch(engine, batch, "test")
    assert risk.open_orders(), "the flow leaves orders resting"
    state = shard_state(risk, engine)
    assert state.risk.open_orders == []
    older = msgspec.structs.replace(state, risk=risk.state())
    for snapshot in (state, older):
        decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(snapshot), type=ShardState)
        restored_risk, restored_engine = build_shard(0, INSTRUMENTS, decoded)
        restored_risk.check_invariants()
        assert restored_risk.state() == risk.state()
        assert state_hashes(restored_risk, restored_engine) == state_hashes(risk, engine)


def test_a_batch_that_does_not_start_where_the_replay_is_is_a_gap() -> None:
    """A journal gap raises `ReplayDivergedError` naming where, and applies nothing."""
    batches = journal(flow(300))
    _, engine = build_shard(0, INSTRUMENTS)
    with pytest.raises(ReplayDivergedError, match=r"shard 7: journal batch starts at event"):
        replay_batch(engine, batches[1], "shard 7")
    assert engine.next_seq == 1


def test_a_batch_that_replays_to_another_range_is_not_deterministic() -> None:
    """A batch whose recorded range differs from what the replay produced raises (the replay
    decided otherwise than the live run); it is a `RuntimeError` for callers that catch those."""
    first = journal(flow(300))[0]
    tampered = msgspec.structs.replace(first, last_seq=first.last_seq + 1)
    _, engine = build_shard(0, INSTRUMENTS)
    with pytest.raises(RuntimeError, match="replay is not deterministic") as raised:
        replay_batch(engine, tampered, "here")
    assert isinstance(raised.value, ReplayDivergedError)
