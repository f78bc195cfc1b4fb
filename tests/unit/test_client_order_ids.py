"""Client order ids: unique per account across every shard, and a reuse names the original.

The shard's engine refuses an id it remembers and says what the original request was (an
order, a cancel, a replace); the gateway's `AccountWideIds` sends a reuse of an id from another
shard to the shard that holds it, so that shard answers it the same way. These tests run the
pure pieces, then the gateway core over in-process book actors on real journal files, with a
"restart" being a new object on the same folder.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.book_actor import BookActor
from actors.core.engine import EngineState, MatchingEngine, client_order_id_uses
from actors.core.shard import build_shard
from cluster.config import ShardMap
from cluster.gateway.batching import ShardBatcher
from cluster.gateway.config import GatewayConfig
from cluster.gateway.core import AccountWideIds, GatewayCore
from cluster.storage.journal import FsyncPolicy
from cluster.storage.shard import ShardStorageFactory, shard_directory
from protocols.errors import ShardUnavailableError
from protocols.messages import (
    Command,
    Event,
    Instrument,
    OrderAccepted,
    OrderRejected,
    RejectCode,
    RequestKind,
)
from tests.unit.matching_dsl import INSTRUMENT, cancel, replace, sell
from tests.unit.test_matching_properties import INSTRUMENTS as FLOW_INSTRUMENTS
from tests.unit.test_matching_properties import command_from_bytes

# ------------------------------------------------------------------ the engine's answer


def reuse(command: Any, client_order_id: str) -> Command:
    """Return ``command`` with another client order id."""
    replaced: Command = msgspec.structs.replace(command, client_order_id=client_order_id)
    return replaced


@pytest.mark.parametrize(
    ("original", "again", "named", "order_id"),
    [
        ("new", "new", "for an order, which became order 2", 2),
        ("rejected", "cancel", "for an order, which was rejected", 0),
        ("cancel", "new", "for a cancel of order 1", 1),
        ("replace", "cancel", "for a replace of order 1", 1),
        ("cancel", "replace", "for a cancel of order 1", 1),
    ],
)
def test_a_duplicate_reject_names_what_the_original_request_was(
    original: str, again: str, named: str, order_id: int
) -> None:
    """New orders, cancels and replaces share one id space (as in FIX); a reuse is refused
    whatever its kind, and the text names the original request's kind and its order."""
    engine = MatchingEngine([INSTRUMENT], client_order_id_window=10)
    engine.apply([sell(10, 100)])  # order 1
    requests = {"new": sell(10, 105), "rejected": sell(15, 100), "cancel": cancel(1),
                "replace": replace(1, 100, 5)}
    engine.apply([reuse(requests[original], "k")])
    (rejected, *_) = engine.apply([reuse(requests[again], "k")])
    assert isinstance(rejected, OrderRejected)
    assert rejected.code == RejectCode.DUPLICATE_CLIENT_ORDER_ID
    assert rejected.text == f"client order id 'k' was already used by account 'A' {named}"
    assert rejected.order_id == order_id


def test_the_window_keeps_request_kinds_through_a_snapshot_and_reads_older_ones() -> None:
    """The kind of each remembered request is part of the snapshot; a snapshot written
    before kinds were kept still decodes, its reuses answered as an earlier request."""
    engine = MatchingEngine([INSTRUMENT], client_order_id_window=10)
    engine.apply([reuse(sell(10, 100), "o"), reuse(cancel(1), "c")])
    state = engine.state()
    restored = MatchingEngine.from_state([INSTRUMENT], state, client_order_id_window=10)
    assert restored.remembered() == engine.remembered() == [
        ("A", "o", RequestKind.NEW_ORDER, 1), ("A", "c", RequestKind.CANCEL, 1)]
    assert restored.state_hash() == engine.state_hash()
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=EngineState)
    again = MatchingEngine.from_state([INSTRUMENT], decoded, client_order_id_window=10)
    assert again.remembered() == engine.remembered()
    # written column by column (before window_keys), with and without the kinds
    remembered = engine.remembered()
    columns = msgspec.structs.replace(
        state, window_keys=[], window_values=[],
        window_accounts=[entry[0] for entry in remembered],
        window_client_order_ids=[entry[1] for entry in remembered],
        window_order_ids=[entry[3] for entry in remembered],
        window_requests=[entry[2] for entry in remembered])
    restored_columns = MatchingEngine.from_state([INSTRUMENT], columns, client_order_id_window=10)
    assert restored_columns.remembered() == engine.remembered()
    old = msgspec.structs.replace(columns, window_requests=[])
    older = MatchingEngine.from_state([INSTRUMENT], old, client_order_id_window=10)
    (rejected,) = older.apply([reuse(sell(10, 100), "c")])
    assert isinstance(rejected, OrderRejected)
    assert rejected.text.endswith("for an earlier request (order 1)")


# ------------------------------------------------------------------ reading ids from events

def commands_with_few_ids() -> st.SearchStrategy[Command]:
    """The property tests' random commands, their client order ids drawn from a small pool
    so that reuses (of every kind by every kind) are common."""
    return st.tuples(st.binary(min_size=10, max_size=10), st.integers(0, 11)).map(
        lambda drawn: reuse(command_from_bytes(drawn[0]), f"id{drawn[1]}")
    )


@settings(max_examples=300)
@given(st.lists(st.lists(commands_with_few_ids(), min_size=1, max_size=12), min_size=1,
                max_size=10), st.sampled_from([3, 1000]))
def test_the_ids_read_from_events_are_the_engines_window(
    flow: list[list[Command]], window: int
) -> None:
    """Reading a shard's events (`client_order_id_uses`) gives exactly the requests its
    engine remembers, in order; a gateway mirroring them forgets what the shard forgets."""
    _, engine = build_shard(0, FLOW_INSTRUMENTS, client_order_id_window=window)
    mirror = AccountWideIds(1, window)
    mirror.load(0, ())
    uses: list[tuple[str, str, int, int]] = []
    for batch in flow:
        events = engine.apply(batch)
        uses.extend(client_order_id_uses(events))
        mirror.observe(0, events)
    assert uses[-window:] == engine.remembered()[-window:]
    if window > len(uses):
        assert uses == engine.remembered()
    remembered = {(account, client_order_id) for account, client_order_id, _, _
                  in engine.remembered()}
    assert {key for key in remembered if mirror.shard_of(*key) == 0} == remembered
    assert len(mirror) == len(remembered)


# ------------------------------------------------------------------ the gateway's window


def test_a_reused_id_goes_to_the_shard_that_used_it() -> None:
    """The first use of an id fixes its shard; a reuse for any other shard is sent there."""
    ids = AccountWideIds(3, 10)
    for shard in range(3):
        ids.load(shard, ())
    assert ids.destination("A", "k", 1) == 1
    assert ids.destination("A", "k", 2) == 1  # reuse for another shard's symbol
    assert ids.destination("A", "k", 1) == 1  # a retry: the shard itself answers
    assert ids.destination("B", "k", 2) == 2  # ids are per account
    assert ids.destination("A", "", 0) == 0  # no id, nothing to check


def test_ids_other_gateways_used_are_learned_from_the_feeds() -> None:
    """An id seen in a shard's events (another gateway's or a direct client's request) routes
    a later reuse to that shard; a duplicate's reject is not a use."""
    ids = AccountWideIds(2, 10)
    ids.load(0, [("A", "old")])
    ids.load(1, ())
    accepted = OrderAccepted(seq=1, ts_ns=0, symbol="X", order_id=7, account="A",
                             client_order_id="fresh", side=1, order_type=1,  # type: ignore[arg-type]
                             time_in_force=1, price=100, quantity=1)  # type: ignore[arg-type]
    duplicate = OrderRejected(seq=2, ts_ns=0, symbol="X", account="A", client_order_id="dup",
                              request=RequestKind.NEW_ORDER,
                              code=RejectCode.DUPLICATE_CLIENT_ORDER_ID, text="", order_id=7)
    ids.observe(1, [accepted, duplicate])
    assert ids.destination("A", "fresh", 0) == 1
    assert ids.destination("A", "old", 1) == 0
    assert ids.shard_of("A", "dup") is None


def test_the_window_forgets_per_shard_oldest_first() -> None:
    """Like each shard, the gateway remembers the last ``window`` ids per shard."""
    ids = AccountWideIds(2, 2)
    ids.load(0, [("A", "a"), ("A", "b")])
    ids.load(1, [("A", "z")])
    ids.observe(0, [])
    assert ids.destination("A", "c", 0) == 0  # pushes ("A", "a") out of shard 0's window
    assert ids.shard_of("A", "a") is None
    assert [ids.shard_of("A", key) for key in "bcz"] == [0, 0, 1]


def test_until_every_shards_ids_are_read_new_ids_are_unavailable() -> None:
    """A gateway that has not read a shard's journal yet cannot tell a reuse of its ids, so it
    answers UNAVAILABLE (retry safe) instead of guessing; known ids still route."""
    ids = AccountWideIds(2, 10)
    ids.load(0, [("A", "known")])
    with pytest.raises(ShardUnavailableError, match="shard 1"):
        ids.destination("A", "new", 0)
    assert ids.destination("A", "known", 1) == 0
    ids.load(1, ())
    assert ids.destination("A", "new", 0) == 0


# ------------------------------------------------------------------ the gateway over two shards

SHARDED = [Instrument(symbol="AAPL"), Instrument(symbol="MSFT"), Instrument(symbol="BTC-USD")]
PINS = {"AAPL": 0, "MSFT": 1, "BTC-USD": 0}


def shard_book(data_dir: Path, shard: int) -> BookActor:
    directory = shard_directory(str(data_dir), shard)
    return BookActor(shard, [i for i in SHARDED if PINS[i.symbol] == shard],
                     log_factory=ShardStorageFactory(directory, FsyncPolicy()),
                     client_order_id_window=1000)


def gateway(data_dir: Path, books: list[BookActor]) -> GatewayCore:
    """A gateway core over in-process book actors, its id window read from the journals as a
    started gateway reads it."""
    core = GatewayCore("gateway-test", GatewayConfig(), namespace="unit",
                       shard_map=ShardMap(2, pins=PINS), instruments=SHARDED,
                       data_dir=str(data_dir), client_order_id_window=1000)
    for shard, book in enumerate(books):
        async def send(payload: bytes, book: BookActor = book) -> bytes:
            return book.apply_batch_with_ends(payload)

        core.batchers[shard] = ShardBatcher(shard, send, on_reply=core.feeds[shard].offer)
        core.ids.load(shard, core.histories[shard].view().client_order_ids)
    return core


def order(symbol: str, client_order_id: str, price: int = 100) -> Command:
    return reuse(msgspec.structs.replace(sell(1, price), symbol=symbol), client_order_id)


def submit(core: GatewayCore, command: Command) -> tuple[int, list[Event]]:
    return asyncio.run(core.route_to_shard(command))


def test_an_id_used_on_one_shard_is_a_duplicate_on_every_other(tmp_path: Path) -> None:
    """The issue's case: an id accepted on AAPL (shard 0) was accepted again on MSFT (shard 1);
    now MSFT's request is answered by shard 0 as a duplicate naming the AAPL order, as
    BTC-USD's (shard 0) already was, and again after the gateway and both book actors
    restart (new objects on the same journals)."""
    books = [shard_book(tmp_path, 0), shard_book(tmp_path, 1)]
    core = gateway(tmp_path, books)
    shard, (accepted, *_) = submit(core, order("AAPL", "same"))
    assert shard == 0 and isinstance(accepted, OrderAccepted)
    for attempt in range(2):
        for symbol in ("MSFT", "BTC-USD", "AAPL"):
            shard, (rejected, *_) = submit(core, order(symbol, "same"))
            assert shard == 0, (attempt, symbol)
            assert isinstance(rejected, OrderRejected)
            assert rejected.code == RejectCode.DUPLICATE_CLIENT_ORDER_ID
            assert rejected.order_id == accepted.order_id
            assert "for an order, which became order" in rejected.text
        books = [shard_book(tmp_path, 0), shard_book(tmp_path, 1)]  # restart everything
        core = gateway(tmp_path, books)
    assert [len(b.engine.books[s].orders) for b, s in zip(books, ("AAPL", "MSFT"),
                                                           strict=True)] == [1, 0]


def test_a_batch_reusing_an_id_across_shards_enters_it_once(tmp_path: Path) -> None:
    """In one SubmitOrders batch, a second order with the same id for another shard's symbol
    goes to the first one's shard and is its duplicate."""
    books = [shard_book(tmp_path, 0), shard_book(tmp_path, 1)]
    core = gateway(tmp_path, books)
    commands = [order("MSFT", "twice"), order("AAPL", "twice"), order("AAPL", "once")]
    results = asyncio.run(core.route_many(commands, [1, 0, 0]))
    assert [shard for shard, _ in results] == [1, 1, 0]
    assert isinstance(results[0][1][0], OrderAccepted)
    second = results[1][1][0]
    assert isinstance(second, OrderRejected)
    assert second.code == RejectCode.DUPLICATE_CLIENT_ORDER_ID
    assert isinstance(results[2][1][0], OrderAccepted)
