"""The audit trail: commands carry their origin into the journal, and an order's life (or an
account's) reads back from it exactly, including journals written before the origin existed.

No Ray: a real book actor journals into tmp_path, and the audit replays those files.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from actors.book_actor import BookActor
from actors.core.shard import build_shard
from cluster.research.audit import (
    AuditEntry,
    account_history,
    describe,
    main,
    order_history,
)
from cluster.storage.journal import read_batches
from cluster.storage.shard import ShardStorage, ShardStorageFactory, shard_directory
from protocols.convert import Converter
from protocols.generated import trading_pb2 as pb
from protocols.journal_format import CommandBatch, decode_record, encode_frame
from protocols.messages import (
    CancelOrder,
    Command,
    Instrument,
    NewOrder,
    OrderType,
    ReplaceOrder,
    SelfTradePrevention,
    SetKillSwitch,
    Side,
    TimeInForce,
    decode_commands,
    encode,
    format_origin,
    parse_origin,
)

INSTRUMENTS = [Instrument(symbol="AAPL", price_scale=2)]
ERIN = format_origin("erin", "gateway-0", "ipv4:127.0.0.1:50001")
BOB = format_origin("bob", "gateway-1", "ipv4:10.0.0.7:40404")
OPS = format_origin("ops", "gateway-0", "ipv4:127.0.0.1:50002")


def new_order(account: str, client_order_id: str, side: Side, quantity: int, price: int,
              ts_ns: int, origin: str) -> NewOrder:
    return NewOrder(account=account, client_order_id=client_order_id, symbol="AAPL", side=side,
                    quantity=quantity, price=price, ts_ns=ts_ns, origin=origin)


def journal(data_dir: Path, batches: list[list[Command]]) -> BookActor:
    """Apply each batch to a real book actor journaling into ``data_dir``'s shard 0."""
    book = BookActor(0, INSTRUMENTS,
                     log_factory=ShardStorageFactory(shard_directory(data_dir, 0)))
    for batch in batches:
        book.apply_batch(encode(batch))
    return book


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An order of erin's is accepted, partly filled by bob, replaced, then cancelled; another
    is rejected; and ops engages erin's kill switch."""
    journal(tmp_path, [
        [new_order("erin", "e-1", Side.BUY, 100, 10_000, 1_000, ERIN)],
        [new_order("bob", "b-1", Side.SELL, 40, 10_000, 2_000, BOB)],
        [ReplaceOrder(account="erin", client_order_id="e-r1", symbol="AAPL", order_id=1,
                      price=10_001, quantity=50, ts_ns=3_000, origin=ERIN)],
        # bob tries to cancel erin's order: answered as an order that is not open
        [CancelOrder(account="bob", client_order_id="b-k1", symbol="AAPL", order_id=1,
                     ts_ns=3_500, origin=BOB)],
        [CancelOrder(account="erin", client_order_id="e-k1", symbol="AAPL", order_id=1,
                     ts_ns=4_000, origin=ERIN)],
        [new_order("erin", "e-2", Side.BUY, 0, 10_000, 5_000, ERIN)],  # quantity 0: rejected
        [SetKillSwitch(account="erin", engaged=True, client_order_id="admin-ops-1",
                       ts_ns=6_000, origin=OPS)],
    ])
    return tmp_path


def steps(entries: list[AuditEntry]) -> list[tuple[str, int, int]]:
    return [(entry.step, entry.ts_ns, entry.order_id) for entry in entries]


def test_every_journaled_command_keeps_its_origin(data_dir: Path) -> None:
    """What the shard journals is the command as sent, with its principal, gateway and peer."""
    commands = [command for batch in read_batches(shard_directory(data_dir, 0) / "journal")
                for command in batch.commands]
    assert [parse_origin(command.origin).principal for command in commands] == [
        "erin", "bob", "erin", "bob", "erin", "erin", "ops"]
    assert parse_origin(commands[0].origin) == parse_origin(ERIN)
    assert parse_origin(ERIN).gateway == "gateway-0"
    assert parse_origin(ERIN).peer == "ipv4:127.0.0.1:50001"


def test_an_orders_whole_life_reads_back_from_the_journal(data_dir: Path) -> None:
    """Received (who, via which gateway, from where, when), accepted, each fill, the amend,
    a stranger's refused cancel, the cancel, in the shard's sequence; the counterparty's own
    order shows only as the fill's counterparty id."""
    entries = order_history(data_dir, 1, instruments=INSTRUMENTS)
    assert steps(entries) == [
        ("received", 1_000, 0), ("accepted", 1_000, 1),
        ("fill", 2_000, 1),
        ("received", 3_000, 1), ("replaced", 3_000, 1),
        ("received", 3_500, 1), ("rejected", 3_500, 1),
        ("received", 4_000, 1), ("cancelled", 4_000, 1),
    ]
    received = entries[0]
    assert (received.principal, received.gateway, received.peer) == (
        "erin", "gateway-0", "ipv4:127.0.0.1:50001")
    assert (received.account, received.client_order_id, received.symbol) == (
        "erin", "e-1", "AAPL")
    assert received.details["side"] == "BUY" and received.details["quantity"] == 100
    assert entries[1].details["price"] == 10_000
    fill = entries[2]
    assert fill.details == {"price": 10_000, "quantity": 40, "aggressor_side": "SELL",
                            "liquidity": "maker", "leaves": 60, "counterparty_order_id": 2}
    replaced = entries[4]
    assert replaced.details["old_quantity"] == 60 and replaced.details["old_price"] == 10_000
    assert replaced.details["quantity"] == 50 and replaced.details["price"] == 10_001
    assert replaced.details["request_id"] == "e-r1"
    stranger, refused = entries[5], entries[6]
    assert stranger.principal == "bob" and stranger.peer == "ipv4:10.0.0.7:40404"
    assert refused.details["code"] == "ORDER_NOT_OPEN"
    cancelled = entries[8]
    assert cancelled.details["reason"] == "USER" and cancelled.details["quantity"] == 50
    assert cancelled.details["request_id"] == "e-k1"
    assert [entry.seq for entry in entries] == sorted(entry.seq for entry in entries)


def test_the_same_life_by_account_and_client_order_id(data_dir: Path) -> None:
    """An order is also found by its client id, with the same entries."""
    by_key = order_history(data_dir, account="erin", client_order_id="e-1",
                           instruments=INSTRUMENTS)
    assert by_key == order_history(data_dir, 1, instruments=INSTRUMENTS)


def test_a_rejected_order_shows_who_sent_it_and_why(data_dir: Path) -> None:
    """A refused new order has no order id; by its client id it reads back with its code."""
    entries = order_history(data_dir, account="erin", client_order_id="e-2",
                            instruments=INSTRUMENTS)
    assert steps(entries) == [("received", 5_000, 0), ("rejected", 5_000, 0)]
    assert entries[0].principal == "erin"
    assert entries[1].details["code"] == "INVALID_QUANTITY"
    assert entries[1].details["code_value"] == 302
    assert entries[1].details["text"]


def test_an_account_range_holds_its_requests_and_its_orders_steps(data_dir: Path) -> None:
    """``[start_ns, end_ns)``: erin's fill (bob's order is bob's), her replace, the refusal of
    bob's cancel (it names her order but is bob's), not her later cancel."""
    entries = account_history(data_dir, "erin", 2_000, 4_000, instruments=INSTRUMENTS)
    assert steps(entries) == [("fill", 2_000, 1), ("received", 3_000, 1),
                              ("replaced", 3_000, 1)]
    everything = account_history(data_dir, "erin", instruments=INSTRUMENTS)
    assert [entry.step for entry in everything][-2:] == ["received", "kill_switch"]
    assert everything[-2].principal == "ops"
    assert {entry.account for entry in everything} == {"erin"}
    bob = account_history(data_dir, "bob", instruments=INSTRUMENTS)
    assert [entry.step for entry in bob] == ["received", "accepted", "fill", "received",
                                             "rejected"]


def test_a_journal_written_before_the_origin_existed_still_reads(tmp_path: Path) -> None:
    """Commands encoded with the old field list (no trailing ``origin``) decode, as a frame,
    as a batch and through a whole audit, with an empty origin."""

    class OldNewOrder(msgspec.Struct, frozen=True, kw_only=True, tag="NewOrder",
                      array_like=True):
        account: str
        client_order_id: str
        symbol: str
        side: Side
        quantity: int
        price: int = 0
        order_type: OrderType = OrderType.LIMIT
        time_in_force: TimeInForce = TimeInForce.GTC
        post_only: bool = False
        self_trade_prevention: SelfTradePrevention = SelfTradePrevention.NONE
        ts_ns: int = 0

    class OldCancelOrder(msgspec.Struct, frozen=True, kw_only=True, tag="CancelOrder",
                         array_like=True):
        account: str
        client_order_id: str
        symbol: str
        order_id: int
        ts_ns: int = 0

    class OldCommandBatch(msgspec.Struct, frozen=True, kw_only=True, tag="CommandBatch",
                          array_like=True):
        epoch: int
        first_seq: int
        last_seq: int
        commands: list[OldNewOrder | OldCancelOrder]

    old = [OldNewOrder(account="erin", client_order_id="o-1", symbol="AAPL", side=Side.BUY,
                       quantity=5, price=10_000, ts_ns=7),
           OldCancelOrder(account="erin", client_order_id="o-k", symbol="AAPL", order_id=1,
                          ts_ns=8)]
    assert len(msgspec.msgpack.encode(old[0])) < len(msgspec.msgpack.encode(
        new_order("erin", "o-1", Side.BUY, 5, 10_000, 7, "")))
    # a frame as the old code wrote it
    frame = encode_frame(OldCommandBatch(epoch=1, first_seq=1, last_seq=3,  # type: ignore[arg-type]
                                         commands=old))
    record = decode_record(frame[8:])
    assert isinstance(record, CommandBatch)
    assert [type(command) for command in record.commands] == [NewOrder, CancelOrder]
    assert [command.origin for command in record.commands] == ["", ""]
    assert record.commands[0] == new_order("erin", "o-1", Side.BUY, 5, 10_000, 7, "")
    assert decode_commands(msgspec.msgpack.encode(old)) == record.commands
    # a journal whose batch holds the old bytes (the writer encodes what it is given)
    _, engine = build_shard(0, INSTRUMENTS)
    events = engine.apply(record.commands)
    storage = ShardStorage(shard_directory(tmp_path, 0))
    storage.load()
    storage.append(events[0].seq, events[-1].seq, old)  # type: ignore[arg-type]
    storage.close()
    entries = order_history(tmp_path, 1, instruments=INSTRUMENTS)
    assert [entry.step for entry in entries] == ["received", "accepted", "received",
                                                 "cancelled"]
    assert {(entry.principal, entry.gateway, entry.peer) for entry in entries} == {("", "", "")}


def test_origin_parts_round_trip_whatever_they_hold() -> None:
    """A ``|`` or ``%`` in a token name or peer is escaped, so the parts read back exactly."""
    for parts in [("erin", "gateway-0", "ipv4:127.0.0.1:1"), ("a|b", "g%7C", "unix:/x|y%"),
                  ("", "", ""), ("%25", "|", "%")]:
        origin = parse_origin(format_origin(*parts))
        assert (origin.principal, origin.gateway, origin.peer) == parts
    assert parse_origin("").principal == ""
    assert parse_origin("just-a-name").principal == "just-a-name"


def test_the_converter_stamps_every_command_with_the_callers_origin() -> None:
    """The gateway's conversion puts the origin on each command it builds, batch rows too."""
    converter = Converter(INSTRUMENTS, {"AAPL": 0})
    order = pb.NewOrderRequest(client_order_id="c", symbol="AAPL", side=pb.SIDE_BUY,
                               order_type=pb.ORDER_TYPE_LIMIT, quantity=1, price=100)
    assert converter.new_order(order, "erin", 1, origin=ERIN).origin == ERIN
    rows = converter.new_orders([order, order], "erin", 1, 10, origin=ERIN).rows
    assert [command.origin for command in decode_commands(encode(rows))] == [ERIN, ERIN]  # type: ignore[arg-type]
    cancel = pb.CancelOrderRequest(client_order_id="k", symbol="AAPL", order_id=1)
    assert converter.cancel(cancel, "erin", 1, origin=ERIN).origin == ERIN
    replace = pb.ReplaceOrderRequest(client_order_id="r", symbol="AAPL", order_id=1,
                                     price=100, quantity=1)
    assert converter.replace(replace, "erin", 1, origin=ERIN).origin == ERIN
    mass = pb.MassCancelRequest(client_order_id="m")
    assert converter.mass_cancel(mass, "erin", 1, origin=ERIN).origin == ERIN
    assert converter.halt(pb.HaltSymbolRequest(symbol="AAPL", halted=True), "h", 1,
                          origin=OPS).origin == OPS
    assert converter.kill_switch(pb.SetKillSwitchRequest(account="erin", engaged=True), "k", 1,
                                 origin=OPS).origin == OPS
    assert converter.risk_limits(pb.SetRiskLimitsRequest(account="erin"), "l", 1,
                                 origin=OPS).origin == OPS


def test_the_command_line_prints_a_timeline_or_json_lines(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``raytrade audit --order``: one readable line per step, decimals at the price scale;
    ``--json``: one object per line; nothing found: exit 1."""
    instruments = data_dir / "instruments.toml"
    instruments.write_text('[[instrument]]\nsymbol = "AAPL"\nprice_scale = 2\n')
    assert main(["--data-dir", str(data_dir), "--order", "1",
                 "--instruments", str(instruments)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 9
    assert "received new order 'e-1' (erin): BUY 100 AAPL @ 100.00 LIMIT GTC" in lines[0]
    assert "sent by erin via gateway-0 from ipv4:127.0.0.1:50001" in lines[0]
    assert lines[0].startswith("1970-01-01T00:00:00.000001000Z  shard 0 seq 1")
    assert "fill of order 1: 40 @ 100.00 as maker, leaves 60, against order 2" in lines[2]
    assert "60 @ 100.00 -> 50 @ 100.01 (priority lost)" in lines[4]
    assert "cancelled order 1: 50 @ 100.01 (USER)" in lines[8]
    assert main(["--data-dir", str(data_dir), "--account", "erin", "--from", "2000",
                 "--to", "4000", "--json", "--instruments", str(instruments)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["step"] for row in rows] == ["fill", "received", "replaced"]
    assert rows[1]["principal"] == "erin" and rows[1]["peer"] == "ipv4:127.0.0.1:50001"
    assert main(["--data-dir", str(data_dir), "--account", "nobody",
                 "--instruments", str(instruments)]) == 1
    assert "nothing" in capsys.readouterr().err
    assert main(["--data-dir", str(data_dir), "--order", "1", "--from", "1"]) == 2


def test_every_entry_describes_itself(data_dir: Path) -> None:
    """Each step kind has a readable line (no KeyError for any of them)."""
    for entry in account_history(data_dir, "erin", instruments=INSTRUMENTS):
        assert describe(entry, {"AAPL": 2})
    accepted = [entry for entry in order_history(data_dir, 1, instruments=INSTRUMENTS)
                if entry.step == "accepted"]
    assert "accepted order 1: BUY 100 AAPL @ 100.00 LIMIT GTC" in describe(accepted[0],
                                                                          {"AAPL": 2})
