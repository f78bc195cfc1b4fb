"""Journals replayed into numpy arrays (cluster.research.arrays) say what the shard did.

Real journals are written by in-process book actors (no Ray) on temporary data dirs; the arrays
are checked against the events the live actors answered with, against `replay_events`, and the
top of book against a naive fold of the level changes and the live books' ``l1()``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from itertools import pairwise
from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.book_actor import BookActor
from actors.core.shard import ReplayDivergedError
from cluster.config import InstrumentRegistry, ShardMap
from cluster.research.arrays import (
    ARRAY_NAMES,
    CANCEL_DTYPE,
    LEVEL_DTYPE,
    ORDER_DTYPE,
    REJECT_DTYPE,
    REPLACE_DTYPE,
    TOP_DTYPE,
    TRADE_DTYPE,
    Chunk,
    Run,
    iter_chunks,
    load_run,
)
from cluster.research.flow import FlowConfig, demo_instruments, generate_flow
from cluster.storage import layout
from cluster.storage.journal import FsyncPolicy
from cluster.storage.shard import ShardStorageFactory, replay_events, shard_directory
from protocols.errors import ConfigError
from protocols.messages import (
    Command,
    Event,
    Instrument,
    LevelChanged,
    NewOrder,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderReplaced,
    RejectCode,
    SetSymbolHalt,
    Side,
    SymbolHaltSet,
    Trade,
    decode_events,
    encode,
)

ARRAY_OF = {OrderAccepted: "orders", Trade: "trades", OrderCancelled: "cancels",
            OrderReplaced: "replaces", OrderRejected: "rejects", LevelChanged: "levels"}


class Written(msgspec.Struct, kw_only=True):
    """A data dir written by live book actors, and what they answered."""

    data_dir: Path
    instruments: list[Instrument]
    actors: dict[int, BookActor]
    events: dict[int, list[Event]]
    """Each shard's events, as the live actor answered them."""


def write_run(data_dir: Path, instruments: list[Instrument], shards: int, operations: int,
              extra: Sequence[Command] = ()) -> Written:
    """Journal the seeded flow (with ``extra`` in the middle) into a data dir of ``shards``."""
    layout.write_manifest(data_dir, shards)
    shard_map = ShardMap(shards)
    commands = generate_flow(instruments, FlowConfig(operations=operations, seed=5, accounts=5),
                             shard_map.shard_of)
    middle = len(commands) // 2
    commands[middle:middle] = extra
    actors = {
        shard: BookActor(shard, [i for i in instruments if shard_map.shard_of(i.symbol) == shard],
                         snapshot_every_events=500,  # snapshots must not cut the arrays short
                         log_factory=ShardStorageFactory(shard_directory(data_dir, shard),
                                                         FsyncPolicy(mode="none")))
        for shard in range(shards)
    }
    per_shard: dict[int, list[Command]] = {shard: [] for shard in range(shards)}
    for command in commands:
        per_shard[shard_map.shard_of(getattr(command, "symbol", "") or "SYM0")].append(command)
    events: dict[int, list[Event]] = {shard: [] for shard in range(shards)}
    for shard, mine in per_shard.items():
        for index in range(0, len(mine), 40):
            payload = actors[shard].apply_batch(encode(mine[index : index + 40]))
            events[shard].extend(decode_events(payload))
    for actor in actors.values():
        actor.log.close()  # type: ignore[union-attr]
    return Written(data_dir=data_dir, instruments=instruments, actors=actors, events=events)


EXTRA: list[Command] = [
    # a symbol and an account no instrument or order names: the tables grow
    NewOrder(account="GHOST", client_order_id="x1", symbol="NOPE", side=Side.BUY, price=100,
             quantity=1, ts_ns=1),
    SetSymbolHalt(symbol="SYM0", halted=True, client_order_id="x2", ts_ns=2),
    NewOrder(account="ACC000", client_order_id="x3", symbol="SYM0", side=Side.SELL,
             price=10_000, quantity=3, ts_ns=3),
    SetSymbolHalt(symbol="SYM0", halted=False, client_order_id="x4", ts_ns=4),
]


@pytest.fixture(scope="module")
def one_shard(tmp_path_factory: pytest.TempPathFactory) -> Written:
    return write_run(tmp_path_factory.mktemp("one"), demo_instruments(3), 1, 3_000, EXTRA)


@pytest.fixture(scope="module")
def two_shards(tmp_path_factory: pytest.TempPathFactory) -> Written:
    return write_run(tmp_path_factory.mktemp("two"), demo_instruments(6), 2, 2_000)


@pytest.fixture(scope="module")
def run(one_shard: Written) -> Run:
    return load_run(one_shard.data_dir, instruments=one_shard.instruments, progress=False)


def concatenated(chunks: Iterator[Chunk]) -> tuple[dict[str, np.ndarray], list[Chunk]]:
    kept = list(chunks)
    return {name: np.concatenate([getattr(chunk, name) for chunk in kept])
            for name in ARRAY_NAMES}, kept


# ------------------------------------------------------------------------------ agreement


def test_every_event_lands_in_its_array_and_nowhere_else(one_shard: Written, run: Run) -> None:
    """Counts per type equal the live events' and the replay's; admin events are counted; the
    arrays (not the derived top) plus the admin count add up to every event."""
    live = Counter(type(event) for event in one_shard.events[0])
    replayed = Counter(type(event) for batch in replay_events(
        shard_directory(one_shard.data_dir, 0), 0, one_shard.instruments) for event in batch)
    assert live == replayed
    for kind, name in ARRAY_OF.items():
        assert len(getattr(run, name)) == live[kind], name
    assert run.admin_events == live[SymbolHaltSet] == 2
    assert run.events == len(one_shard.events[0])
    assert sum(len(getattr(run, name)) for name in ARRAY_OF.values()) + run.admin_events \
        == run.events
    assert all(live[kind] for kind in ARRAY_OF), "the flow exercises every array"


def test_the_arrays_have_the_declared_dtypes(run: Run) -> None:
    """One dtype per array, declared once in the module."""
    declared = {"orders": ORDER_DTYPE, "trades": TRADE_DTYPE, "cancels": CANCEL_DTYPE,
                "replaces": REPLACE_DTYPE, "rejects": REJECT_DTYPE, "levels": LEVEL_DTYPE,
                "top": TOP_DTYPE}
    assert {name: getattr(run, name).dtype for name in ARRAY_NAMES} == declared


def test_every_trade_is_the_live_trade(one_shard: Written, run: Run) -> None:
    """Price, quantity, sides, order ids, accounts and leaves of every trade, in order."""
    trades = [event for event in one_shard.events[0] if type(event) is Trade]
    accounts = np.array(run.accounts, dtype=object)
    rows = run.trades
    assert rows["seq"].tolist() == [trade.seq for trade in trades]
    assert rows["ts_ns"].tolist() == [trade.ts_ns for trade in trades]
    assert rows["price"].tolist() == [trade.price for trade in trades]
    assert rows["quantity"].tolist() == [trade.quantity for trade in trades]
    assert rows["aggressor_side"].tolist() == [trade.aggressor_side for trade in trades]
    assert rows["maker_order_id"].tolist() == [trade.maker_order_id for trade in trades]
    assert rows["taker_order_id"].tolist() == [trade.taker_order_id for trade in trades]
    assert rows["maker_leaves"].tolist() == [trade.maker_leaves for trade in trades]
    assert rows["taker_leaves"].tolist() == [trade.taker_leaves for trade in trades]
    assert accounts[rows["maker_account"]].tolist() == [trade.maker_account for trade in trades]
    assert accounts[rows["taker_account"]].tolist() == [trade.taker_account for trade in trades]
    assert np.array(run.symbols)[rows["symbol"]].tolist() == [trade.symbol for trade in trades]
    assert (rows["shard"] == 0).all()


def test_orders_cancels_replaces_and_rejects_are_the_live_ones(
    one_shard: Written, run: Run
) -> None:
    """Order ids and the fields of each kind match the live events row for row."""
    live = one_shard.events[0]
    accounts = np.array(run.accounts, dtype=object)
    symbols = np.array(run.symbols, dtype=object)

    def rows(kind: type[Event], fields: list[str]) -> list[tuple[object, ...]]:
        return [tuple(getattr(event, field) for field in fields)
                for event in live if type(event) is kind]

    def columns(array: np.ndarray, fields: list[str]) -> list[tuple[object, ...]]:
        table = {"account": accounts, "symbol": symbols}
        values = [table[f][array[f]] if f in table else array[f] for f in fields]
        return list(zip(*(column.tolist() for column in values), strict=True))

    order_fields = ["seq", "ts_ns", "symbol", "order_id", "account", "side", "order_type",
                    "time_in_force", "price", "quantity"]
    assert columns(run.orders, order_fields) == rows(OrderAccepted, order_fields)
    cancel_fields = ["seq", "symbol", "order_id", "account", "side", "price", "quantity",
                     "reason"]
    assert columns(run.cancels, cancel_fields) == rows(OrderCancelled, cancel_fields)
    replace_fields = ["seq", "order_id", "account", "side", "old_price", "old_quantity",
                      "price", "quantity", "priority_kept"]
    assert columns(run.replaces, replace_fields) == rows(OrderReplaced, replace_fields)
    reject_fields = ["seq", "symbol", "order_id", "account", "request", "code"]
    assert columns(run.rejects, reject_fields) == rows(OrderRejected, reject_fields)
    level_fields = ["seq", "symbol", "side", "price", "quantity", "order_count"]
    assert columns(run.levels, level_fields) == rows(LevelChanged, level_fields)


def test_names_beyond_the_instruments_are_appended_to_the_tables(run: Run) -> None:
    """The symbol table starts as the instruments; a rejected order's unknown symbol and a
    new account are appended, and the reject codes say what happened."""
    assert run.symbols == ("SYM0", "SYM1", "SYM2", "NOPE")
    assert run.symbol_index("NOPE") == 3
    assert "GHOST" in run.accounts
    codes = {int(code) for code in run.rejects["code"]}
    assert {RejectCode.UNKNOWN_SYMBOL, RejectCode.RISK_SYMBOL_HALTED} <= codes
    with pytest.raises(KeyError, match="ZZZ"):
        run.symbol_index("ZZZ")


def test_prices_convert_to_currency_units_by_price_scale(run: Run) -> None:
    """`Run.decimal` divides by 10**price_scale of each row's instrument (2 here)."""
    assert np.allclose(run.decimal(run.trades), run.trades["price"] / 100)


# ------------------------------------------------------------------------------ top of book


def reference_top(written: Written, shard: int, instruments: Sequence[Instrument],
                  symbols: Sequence[str]) -> list[tuple[int, ...]]:
    """Fold each batch's level changes naively; after the batch, a symbol's top of book is
    the max bid and min ask of its levels; write a row where it changed."""
    levels: dict[str, dict[Side, dict[int, tuple[int, int]]]] = {}
    last: dict[str, tuple[int, ...]] = {}
    rows = []
    for batch in replay_events(shard_directory(written.data_dir, shard), shard, instruments):
        touched: dict[str, LevelChanged] = {}
        for event in batch:
            if type(event) is LevelChanged:
                sides = levels.setdefault(event.symbol, {Side.BUY: {}, Side.SELL: {}})
                if event.quantity:
                    sides[event.side][event.price] = (event.quantity, event.order_count)
                else:
                    del sides[event.side][event.price]
                touched[event.symbol] = event
        for symbol, event in touched.items():
            bids, asks = levels[symbol][Side.BUY], levels[symbol][Side.SELL]
            bid = (max(bids), *bids[max(bids)]) if bids else (0, 0, 0)
            ask = (min(asks), *asks[min(asks)]) if asks else (0, 0, 0)
            if last.get(symbol, (0,) * 6) != bid + ask:
                last[symbol] = bid + ask
                rows.append((event.seq, event.ts_ns, shard, symbols.index(symbol), *bid, *ask))
    return rows


def test_top_of_book_is_the_naive_fold_of_the_level_changes(one_shard: Written, run: Run) -> None:
    """Every row of ``top`` is where a symbol's best bid or ask changed, as a naive fold of
    the L2 deltas says, with the seq of the symbol's last level change in the batch."""
    assert run.top.tolist() == reference_top(one_shard, 0, one_shard.instruments, run.symbols)
    assert len(run.top) > 100


def test_the_last_top_of_book_is_the_live_books_l1(one_shard: Written, run: Run) -> None:
    """At the journal's end each symbol's last row is its live book's ``l1()``; an empty side
    is price 0 and quantity 0."""
    for instrument in one_shard.instruments:
        rows = run.top[run.top["symbol"] == run.symbol_index(instrument.symbol)]
        bid, ask = one_shard.actors[0].engine.books[instrument.symbol].l1()
        last = rows[-1]
        assert (int(last["bid_price"]), int(last["bid_quantity"])) == (bid or (0, 0))
        assert (int(last["ask_price"]), int(last["ask_quantity"])) == (ask or (0, 0))


# ------------------------------------------------------------------------------ chunking


def check_chunks(written: Written, chunk_events: int, whole: Run) -> None:
    arrays, chunks = concatenated(iter_chunks(written.data_dir, instruments=written.instruments,
                                              chunk_events=chunk_events, progress=False))
    for name in ARRAY_NAMES:
        assert np.array_equal(arrays[name], getattr(whole, name)), name
    assert chunks[-1].symbols == whole.symbols and chunks[-1].accounts == whole.accounts
    assert all(chunk.events <= chunk_events for chunk in chunks)
    assert sum(chunk.events for chunk in chunks) == whole.events
    assert sum(chunk.admin_events for chunk in chunks) == whole.admin_events
    for shard in whole.shards:
        mine = [chunk for chunk in chunks if chunk.shard == shard]
        assert mine[0].first_seq == 1
        assert all(a.last_seq + 1 == b.first_seq for a, b in pairwise(mine))
        assert all(chunk.events == chunk_events for chunk in mine[:-1])


@pytest.mark.parametrize("chunk_events", [1, 2, 39, 1_000, 10**9])
def test_any_chunk_size_gives_the_same_arrays_and_tables(
    one_shard: Written, run: Run, chunk_events: int
) -> None:
    """Chunks are exactly ``chunk_events`` long (a shard's last one may be shorter), follow each
    other without a gap, and concatenate to the whole run: arrays, tables and counts."""
    check_chunks(one_shard, chunk_events, run)


@settings(max_examples=25, deadline=None)
@given(chunk_events=st.integers(min_value=1, max_value=5_000))
def test_property_chunking_never_changes_the_result(
    one_shard: Written, run: Run, chunk_events: int
) -> None:
    """For any chunk size in 1..N the concatenation of the chunks is the same."""
    check_chunks(one_shard, chunk_events, run)


# ------------------------------------------------------------------------------ data dirs


def test_a_multi_shard_data_dir_replays_every_shard(two_shards: Written) -> None:
    """Each shard replays with its own instruments (grouped by the shard map as the cluster
    does); rows come shard by shard, and one shard's folder selects that shard."""
    whole = load_run(two_shards.data_dir, instruments=two_shards.instruments, progress=False)
    assert whole.shards == (0, 1)
    for shard in (0, 1):
        live = two_shards.events[shard]
        assert live, "both shards trade"
        mine = whole.trades[whole.trades["shard"] == shard]
        trades = [event for event in live if type(event) is Trade]
        assert mine["maker_order_id"].tolist() == [trade.maker_order_id for trade in trades]
        assert (mine["maker_order_id"] >> 40 == shard).all()  # order ids carry the shard
        assert len(whole.orders[whole.orders["shard"] == shard]) == sum(
            type(event) is OrderAccepted for event in live)
        alone = load_run(shard_directory(two_shards.data_dir, shard),
                         instruments=two_shards.instruments, progress=False)
        assert alone.shards == (shard,) and alone.events == len(live)
        assert alone.trades["maker_order_id"].tolist() == mine["maker_order_id"].tolist()
    assert whole.events == sum(len(events) for events in two_shards.events.values())
    assert np.all(np.diff(whole.trades["shard"]) >= 0)
    check_chunks(two_shards, 333, whole)


def test_instruments_default_to_the_registry_and_pins_are_honoured(tmp_path: Path) -> None:
    """With no instruments argument the packaged registry is used, its pins included."""
    registry = InstrumentRegistry.load()
    written = write_run(tmp_path, list(registry.instruments), 1, 300)
    run = load_run(tmp_path, progress=False)
    assert run.symbols[: len(registry.instruments)] == tuple(registry.symbols)
    assert run.events == len(written.events[0])


def test_an_empty_journal_gives_empty_arrays_of_the_declared_dtypes(tmp_path: Path) -> None:
    """A shard that journaled nothing, and a data dir with only its manifest, give no chunks
    and empty arrays."""
    layout.write_manifest(tmp_path / "started", 2)
    for shard in (0, 1):
        actor = BookActor(shard, demo_instruments(2), log_factory=ShardStorageFactory(
            shard_directory(tmp_path / "started", shard)))
        actor.log.close()  # type: ignore[union-attr]
    layout.write_manifest(tmp_path / "fresh", 1)
    for data_dir in (tmp_path / "started", tmp_path / "fresh"):
        assert list(iter_chunks(data_dir, instruments=demo_instruments(2), progress=False)) == []
        run = load_run(data_dir, instruments=demo_instruments(2), progress=False)
        assert run.events == 0 and run.accounts == ()
        for name, dtype in [("orders", ORDER_DTYPE), ("trades", TRADE_DTYPE),
                            ("top", TOP_DTYPE), ("rejects", REJECT_DTYPE)]:
            assert getattr(run, name).dtype == dtype and len(getattr(run, name)) == 0
    assert not (tmp_path / "fresh" / "shard-0").exists(), "reading creates nothing"


def test_a_bad_data_dir_or_argument_is_refused_with_a_message(
    tmp_path: Path, one_shard: Written
) -> None:
    """Each refusal is a `ConfigError` (a ValueError) that says what is wrong."""
    instruments = one_shard.instruments
    with pytest.raises(ConfigError, match="does not exist"):
        iter_chunks(tmp_path / "missing")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is not a folder"):
        iter_chunks(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a raytrade data dir"):
        load_run(tmp_path / "empty")
    with pytest.raises(ConfigError, match="there is no shard 3"):
        iter_chunks(one_shard.data_dir, shards=[0, 3], instruments=instruments)
    with pytest.raises(ConfigError, match="chunk_events must be at least 1"):
        iter_chunks(one_shard.data_dir, chunk_events=0, instruments=instruments)
    with pytest.raises(ConfigError, match="names others"):
        iter_chunks(shard_directory(one_shard.data_dir, 0), shards=[1])
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / layout.MANIFEST).write_text("{")
    with pytest.raises(ConfigError, match="damaged"):
        load_run(tmp_path / "damaged")
    assert not list((tmp_path / "empty").iterdir()), "reading creates nothing"


def test_replaying_with_other_instruments_says_so(one_shard: Written) -> None:
    """Instruments other than the run's make the replay diverge; the error names the likely
    cause."""
    with pytest.raises(ReplayDivergedError, match="instrument set"):
        load_run(one_shard.data_dir, instruments=demo_instruments(2), progress=False)


def test_the_progress_bar_is_shown_unless_turned_off(
    one_shard: Written, capsys: pytest.CaptureFixture[str]
) -> None:
    """tqdm writes a bar of events on stderr with ``progress=True`` only."""
    load_run(one_shard.data_dir, instruments=one_shard.instruments, progress=False)
    assert capsys.readouterr().err == ""
    run = load_run(one_shard.data_dir, instruments=one_shard.instruments, progress=True)
    err = capsys.readouterr().err
    assert "replaying" in err and "100%" in err and "event" in err
    assert run.events_per_s > 0 and run.wall_s > 0
