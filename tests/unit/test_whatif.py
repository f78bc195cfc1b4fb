"""What-if replays (cluster.research.whatif) against journals written by live book actors.

The journals are real: in-process book actors (no Ray) on temporary data dirs, fed the seeded
flow in batches of 50. A variant that changes nothing must give the live run's events and
state hashes exactly; each setting a variant changes must change what it should, and nothing
else; and every variant must conserve: positions sum to zero per symbol.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

from actors.book_actor import BookActor
from cluster.config import ShardMap
from cluster.research.flow import FlowConfig, demo_instruments, generate_flow
from cluster.research.whatif import (
    RECORDED,
    Recording,
    Variant,
    VariantResult,
    load_recording,
    main,
    parse_variant,
    run_variant,
    what_if,
)
from cluster.storage import layout
from cluster.storage.journal import FsyncPolicy
from cluster.storage.shard import ShardStorageFactory, replay_events, shard_directory
from protocols.errors import ConfigError
from protocols.messages import (
    CancelOrder,
    Command,
    Event,
    Instrument,
    NewOrder,
    OrderAccepted,
    OrderRejected,
    RejectCode,
    ReplaceOrder,
    RequestKind,
    RiskLimitsConfig,
    SelfTradePrevention,
    Trade,
    decode_events,
    encode,
)

BATCH = 50


class Written(msgspec.Struct, kw_only=True):
    """A data dir written by live book actors, and what they answered."""

    data_dir: Path
    instruments: list[Instrument]
    commands: list[Command]
    events: dict[int, list[list[Event]]]
    """Each shard's events, batch by batch, as the live actor answered them."""
    hashes: dict[int, dict[str, str]]
    """Each live actor's state hashes at the end."""


def write_run(data_dir: Path, instruments: list[Instrument], shards: int) -> Written:
    layout.write_manifest(data_dir, shards)
    shard_map = ShardMap(shards)
    commands = generate_flow(instruments, FlowConfig(operations=2000, seed=3),
                             shard_map.shard_of)
    actors = {
        shard: BookActor(shard, [i for i in instruments if shard_map.shard_of(i.symbol) == shard],
                         log_factory=ShardStorageFactory(shard_directory(data_dir, shard),
                                                         FsyncPolicy(mode="none")))
        for shard in range(shards)
    }
    per_shard: dict[int, list[Command]] = defaultdict(list)
    for command in commands:
        per_shard[shard_map.shard_of(command.symbol)].append(command)  # type: ignore[union-attr]
    events: dict[int, list[list[Event]]] = defaultdict(list)
    for shard, mine in per_shard.items():
        for index in range(0, len(mine), BATCH):
            payload = actors[shard].apply_batch(encode(mine[index : index + BATCH]))
            events[shard].append(decode_events(payload))
    hashes = {shard: actor.state_hashes() for shard, actor in actors.items()}
    for actor in actors.values():
        actor.log.close()  # type: ignore[union-attr]
    return Written(data_dir=data_dir, instruments=instruments, commands=commands,
                   events=dict(events), hashes=hashes)


@pytest.fixture(scope="module")
def one_shard(tmp_path_factory: pytest.TempPathFactory) -> Written:
    return write_run(tmp_path_factory.mktemp("one"), demo_instruments(4), 1)


@pytest.fixture(scope="module")
def two_shards(tmp_path_factory: pytest.TempPathFactory) -> Written:
    return write_run(tmp_path_factory.mktemp("two"), demo_instruments(6), 2)  # 2 + 4 symbols


@pytest.fixture(scope="module")
def recording(one_shard: Written) -> Recording:
    return load_recording(one_shard.data_dir, one_shard.instruments, progress=False)


@pytest.fixture(scope="module")
def recording_of_two(two_shards: Written) -> Recording:
    return load_recording(two_shards.data_dir, two_shards.instruments, progress=False)


def replay(recording: Recording, variant: Variant
           ) -> tuple[VariantResult, dict[int, list[list[Event]]]]:
    """Run a variant; return its result and its events, shard by shard, batch by batch."""
    events: dict[int, list[list[Event]]] = defaultdict(list)
    result = run_variant(recording, variant,
                         on_events=lambda shard, batch: events[shard].append(batch))
    return result, dict(events)


def flat(batches: Sequence[list[Event]]) -> list[Event]:
    return [event for batch in batches for event in batch]


def trades_per_symbol(events: dict[int, list[list[Event]]]
                      ) -> dict[str, list[tuple[object, ...]]]:
    """Each symbol's trades in order, without the order ids and sequence numbers."""
    found: dict[str, list[tuple[object, ...]]] = defaultdict(list)
    for batches in events.values():
        for event in flat(batches):
            if isinstance(event, Trade):
                found[event.symbol].append((
                    event.price, event.quantity, event.aggressor_side, event.maker_account,
                    event.maker_client_order_id, event.taker_account,
                    event.taker_client_order_id, event.maker_leaves, event.taker_leaves))
    return dict(found)


# ------------------------------------------------------------------------------ as recorded


def test_the_recording_is_the_live_run(one_shard: Written, recording: Recording) -> None:
    """Loading a recording replays the journal to the live actor's events and state."""
    live = flat(one_shard.events[0])
    assert recording.commands == len(one_shard.commands)
    assert recording.result.events == len(live)
    assert recording.result.fills == sum(isinstance(event, Trade) for event in live)
    assert recording.shards[0].state_hashes == one_shard.hashes[0]
    assert recording.result.same_events


@pytest.mark.parametrize("variant", [Variant(name="same"), Variant(name="one", shards=1)])
def test_a_variant_that_changes_nothing_reproduces_the_run_exactly(
        one_shard: Written, recording: Recording, variant: Variant) -> None:
    """Same events batch by batch as the live actor and as `replay_events`, same state
    hashes, same positions and PnL."""
    result, events = replay(recording, variant)
    journal = list(replay_events(shard_directory(one_shard.data_dir, 0), 0,
                                 one_shard.instruments))
    assert events[0] == one_shard.events[0] == journal
    assert result.state_hashes == {0: one_shard.hashes[0]}
    assert result.same_events
    assert result.positions_hash == recording.result.positions_hash
    assert result.pnl == recording.result.pnl


def test_two_shards_are_reproduced_exactly(two_shards: Written,
                                           recording_of_two: Recording) -> None:
    """Each shard of a two-shard run replays to its live events and hashes."""
    result, events = replay(recording_of_two, Variant(name="same", shards=2))
    for shard in (0, 1):
        journal = list(replay_events(shard_directory(two_shards.data_dir, shard), shard,
                                     [i for i in two_shards.instruments
                                      if ShardMap(2).shard_of(i.symbol) == shard]))
        assert events[shard] == two_shards.events[shard] == journal
        assert result.state_hashes[shard] == two_shards.hashes[shard]
    assert result.same_events


def test_the_same_variant_twice_gives_the_same_result(recording: Recording) -> None:
    """Determinism: a variant replayed twice gives equal hashes and figures."""
    variant = Variant(limits=RiskLimitsConfig(max_open_orders=4), shards=3)
    first, second = run_variant(recording, variant), run_variant(recording, variant)
    assert msgspec.structs.replace(first, wall_s=0) == msgspec.structs.replace(second, wall_s=0)


# ------------------------------------------------------------------------------ limits


def test_a_tighter_order_quantity_limit_rejects_every_larger_order(
        one_shard: Written, recording: Recording) -> None:
    """With max_order_quantity=50 every new order above 50 is rejected with
    RISK_MAX_ORDER_QUANTITY (the recording rejected none), no accepted order is above 50,
    and a cancel of an order the variant never accepted names order 0 (UNKNOWN_ORDER)."""
    result, events = replay(recording, Variant(limits=RiskLimitsConfig(max_order_quantity=50)))
    larger = sum(isinstance(c, NewOrder) and c.quantity > 50 for c in one_shard.commands)
    everything = flat(events[0])
    new_order_rejects = [e for e in everything if isinstance(e, OrderRejected)
                         and e.code is RejectCode.RISK_MAX_ORDER_QUANTITY
                         and e.request is RequestKind.NEW_ORDER]
    assert larger > 0 and len(new_order_rejects) == larger
    assert result.rejects["RISK_MAX_ORDER_QUANTITY"] >= larger
    assert "RISK_MAX_ORDER_QUANTITY" not in recording.result.rejects
    assert all(e.quantity <= 50 for e in everything if isinstance(e, OrderAccepted))
    unknown = [e for e in everything
               if isinstance(e, OrderRejected) and e.code is RejectCode.UNKNOWN_ORDER]
    assert unknown and all(e.order_id == 0 for e in unknown)
    assert result.fills < recording.result.fills
    assert not result.same_events


def test_per_account_limits_hold_only_that_account(recording: Recording) -> None:
    """max_open_orders=1 for ACC001 alone: every RISK_MAX_OPEN_ORDERS reject is ACC001's."""
    limits = RiskLimitsConfig(max_open_orders=1)
    result, events = replay(recording, Variant(account_limits={"ACC001": limits}))
    rejected = [e for e in flat(events[0]) if isinstance(e, OrderRejected)
                and e.code is RejectCode.RISK_MAX_OPEN_ORDERS]
    assert rejected and {e.account for e in rejected} == {"ACC001"}
    assert result.rejects["RISK_MAX_OPEN_ORDERS"] == len(rejected)


def test_a_run_that_set_limits_keeps_the_variants_fields(tmp_path: Path) -> None:
    """A run journaled with default limits (a cluster's ``default_limits``): the variant's
    field wins over the run's, the run's other fields still hold."""
    instruments = demo_instruments(2)
    layout.write_manifest(tmp_path, 1)
    actor = BookActor(0, instruments,
                      default_limits=RiskLimitsConfig(max_order_quantity=80),
                      log_factory=ShardStorageFactory(shard_directory(tmp_path, 0),
                                                      FsyncPolicy(mode="none")))
    commands = generate_flow(instruments, FlowConfig(operations=600, seed=4))
    for index in range(0, len(commands), BATCH):
        actor.apply_batch(encode(commands[index : index + BATCH]))
    actor.log.close()  # type: ignore[union-attr]
    recording = load_recording(tmp_path, instruments, progress=False)
    assert recording.result.rejects["RISK_MAX_ORDER_QUANTITY"] > 0
    tighter = RiskLimitsConfig(max_order_quantity=30)
    _, events = replay(recording, Variant(limits=tighter))
    accepted = [e for e in flat(events[0]) if isinstance(e, OrderAccepted)]
    assert accepted and max(e.quantity for e in accepted) <= 30
    wider = run_variant(recording, Variant(limits=RiskLimitsConfig(max_open_orders=10_000)))
    assert wider.rejects["RISK_MAX_ORDER_QUANTITY"] == (
        recording.result.rejects["RISK_MAX_ORDER_QUANTITY"])


# ------------------------------------------------------------------------------ STP and fees


def test_cancel_resting_prevents_every_self_trade(recording: Recording) -> None:
    """STP forced to CANCEL_RESTING: the recording's self-trades are gone, STP cancels
    appear instead."""
    result = run_variant(recording, Variant(stp=SelfTradePrevention.CANCEL_RESTING))
    assert recording.result.self_trades > 0 and recording.result.stp_cancels == 0
    assert result.self_trades == 0 and result.stp_cancels > 0
    assert not result.same_events


def test_fees_change_money_and_nothing_else(recording: Recording) -> None:
    """Other fee rates: the same events, fills and positions; PnL gross of fees is equal,
    and each account's PnL moves by exactly its change of fees."""
    result = run_variant(recording, Variant(fee_bps=(0, 10)))
    base = recording.result
    assert result.same_events and result.fills == base.fills
    assert result.positions == base.positions and result.fees > base.fees
    for account, pnl in result.pnl.items():
        assert pnl + result.account_fees[account] == (
            base.pnl[account] + base.account_fees[account])


# ------------------------------------------------------------------------------ re-sharding


@pytest.mark.parametrize("shards", [2, 3])
def test_resharding_one_shard_keeps_every_symbols_trades(
        one_shard: Written, recording: Recording, shards: int) -> None:
    """Re-sharded without account-wide limits: every symbol trades exactly as recorded
    (prices, quantities, accounts, leaves), so volume, positions and PnL are equal; order ids
    carry their new shard."""
    result, events = replay(recording, Variant(shards=shards))
    assert result.shards == shards and not result.same_events
    assert trades_per_symbol(events) == trades_per_symbol(one_shard.events)
    assert result.symbol_volume == recording.result.symbol_volume
    assert result.positions == recording.result.positions
    assert result.pnl == recording.result.pnl
    assert result.commands == recording.commands
    for shard, batches in events.items():
        for event in flat(batches):
            if isinstance(event, OrderAccepted):
                assert event.order_id >> 40 == shard


@pytest.mark.parametrize("shards", [1, 3])
def test_resharding_two_shards_merges_their_logs(two_shards: Written,
                                                 recording_of_two: Recording,
                                                 shards: int) -> None:
    """Two recorded shards merged into one (or dealt to three): every symbol's trades are the
    recording's, every cancel and replace found its order (no UNKNOWN_ORDER)."""
    result, events = replay(recording_of_two, Variant(shards=shards))
    assert trades_per_symbol(events) == trades_per_symbol(two_shards.events)
    assert result.positions == recording_of_two.result.positions
    assert "UNKNOWN_ORDER" not in result.rejects
    assert result.rejects == recording_of_two.result.rejects


def test_cancels_of_orders_made_in_the_same_batch_are_mapped(one_shard: Written,
                                                             recording: Recording) -> None:
    """The flow cancels and replaces orders entered earlier in the same batch (their new ids
    are learned on a scratch copy): re-sharded, they still reach their orders, so every
    reject and fill is as recorded."""
    same_batch = 0
    for index in range(0, len(one_shard.commands), BATCH):
        made = set()
        for command in one_shard.commands[index : index + BATCH]:
            if isinstance(command, NewOrder):
                made.add((command.account, command.client_order_id, command.symbol))
            elif isinstance(command, CancelOrder | ReplaceOrder):
                same_batch += recording.creators.get(command.order_id) in made
    assert same_batch > 0, "the flow no longer cancels within a batch: this tests nothing"
    result = run_variant(recording, Variant(shards=2))
    assert result.rejects == recording.result.rejects
    assert result.fills == recording.result.fills


# ------------------------------------------------------------------------------ conservation


def test_positions_sum_to_zero_per_symbol_in_every_variant(one_shard: Written) -> None:
    """In every variant (and the recording) each symbol's positions sum to zero, and PnL
    summed over the accounts is minus the fees (trading is zero-sum before fees)."""
    variants = [
        Variant(stp=SelfTradePrevention.CANCEL_BOTH),
        Variant(limits=RiskLimitsConfig(max_position=60, max_order_quantity=70)),
        Variant(fee_bps=(-1, 3), shards=3),
        Variant(name="tight", limits=RiskLimitsConfig(max_orders_per_second=20_000),
                stp=SelfTradePrevention.CANCEL_AGGRESSING, shards=2),
    ]
    report = what_if(one_shard.data_dir, variants, one_shard.instruments, local=True,
                     progress=False)
    for row in report.rows:
        per_symbol: dict[str, int] = defaultdict(int)
        for positions in row.positions.values():
            for symbol, quantity in positions.items():
                per_symbol[symbol] += quantity
        assert all(total == 0 for total in per_symbol.values()), (row.name, per_symbol)
        assert sum(row.pnl.values()) == -row.fees, row.name


# ------------------------------------------------------------------------------ the report


def test_the_table_compares_every_variant_with_the_recording(one_shard: Written) -> None:
    """One row per variant after the recording's; a column per reject code any row has."""
    variants = [Variant(name="same"), Variant(stp=SelfTradePrevention.CANCEL_RESTING),
                Variant(limits=RiskLimitsConfig(max_order_quantity=50))]
    report = what_if(one_shard.data_dir, variants, one_shard.instruments, local=True,
                     progress=False)
    table = report.table()
    assert [row["variant"] for row in table] == [
        RECORDED, "same", "stp=cancel_resting", "max_order_quantity=50"]
    assert table[1] == {**table[0], "variant": "same"}
    assert table[3]["RISK_MAX_ORDER_QUANTITY"] == report.results[2].rejects[
        "RISK_MAX_ORDER_QUANTITY"]
    assert table[0]["RISK_MAX_ORDER_QUANTITY"] == 0
    assert [row["same_events"] for row in table] == [True, True, False, False]
    text = report.format()
    assert "RISK_MAX_ORDER_QUANTITY" in text and "ACC000" in text and "stp=cancel_resting" in text
    accounts = {row["account"] for row in report.pnl_table()}
    assert accounts == set(report.recorded.pnl)


def test_without_ray_the_tasks_run_here_and_agree(one_shard: Written) -> None:
    """``local=False`` without a Ray in this process: `map_tasks` runs the variants here,
    through the encoded recording, and the table is the local one."""
    variants = [Variant(shards=2), Variant(stp=SelfTradePrevention.CANCEL_BOTH)]
    tasks = what_if(one_shard.data_dir, variants, one_shard.instruments, progress=False)
    here = what_if(one_shard.data_dir, variants, one_shard.instruments, local=True,
                   progress=False)
    assert tasks.table() == here.table()


def test_variant_names_must_be_unique(one_shard: Written) -> None:
    with pytest.raises(ConfigError, match="unique"):
        what_if(one_shard.data_dir, [Variant(shards=2), Variant(shards=2)],
                one_shard.instruments, local=True, progress=False)
    with pytest.raises(ConfigError, match="shards must be at least 1"):
        what_if(one_shard.data_dir, [Variant(shards=0)], one_shard.instruments, local=True,
                progress=False)


def test_not_a_data_dir_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a raytrade data dir"):
        load_recording(tmp_path, demo_instruments(1), progress=False)


# ------------------------------------------------------------------------------ command line


def test_a_variant_spec_reads_as_it_is_written() -> None:
    variant = parse_variant("name=t stp=cancel_resting max_order_quantity=100,shards=4 "
                            "fee_bps=0:2")
    assert variant == Variant(name="t", stp=SelfTradePrevention.CANCEL_RESTING,
                              limits=RiskLimitsConfig(max_order_quantity=100), shards=4,
                              fee_bps=(0, 2))
    assert parse_variant("account=ACC001 max_open_orders=3").account_limits == {
        "ACC001": RiskLimitsConfig(max_open_orders=3)}
    assert parse_variant("fee_bps=3").fee_bps == (3, 3)
    for bad in ("stp=sometimes", "colour=red", "shards=x", "max_open_orders", "account=A"):
        with pytest.raises(ConfigError):
            parse_variant(bad)


def test_main_prints_the_report(one_shard: Written, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``raytrade what-if`` with the run's instruments: a variant per option, in process."""
    instruments = one_shard.data_dir.parent / "instruments.toml"
    instruments.write_text("".join(
        f'[[instrument]]\nsymbol = "{i.symbol}"\nreference_price = {i.reference_price}\n'
        f"taker_fee_bps = {i.taker_fee_bps}\n\n" for i in one_shard.instruments))
    status = main(["--data-dir", str(one_shard.data_dir), "--instruments", str(instruments),
                   "--stp", "cancel_resting", "--limits", "max_order_quantity=100",
                   "--shards", "2", "--no-progress", "--no-positions"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "stp=cancel_resting" in out and "max_order_quantity=100" in out
    assert "shards=2" in out and "final positions" not in out
    assert main(["--data-dir", str(one_shard.data_dir)]) == 2
    assert "no variant" in capsys.readouterr().err
