"""The gRPC API's validation and conversion (protocols.requests and protocols.reports, joined
as protocols.convert's `Converter`), without a server.

One rule per test. A request that converts is one a shard can take; one that does not names
its field and says why.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core.engine import MatchingEngine
from protocols import errors, generate
from protocols.convert import Converter, InvalidFieldError, OrderBatch, check_id, check_seq
from protocols.generated import trading_pb2 as pb
from protocols.messages import (
    INT64_MAX,
    CancelReason,
    Instrument,
    LevelChanged,
    MassCancel,
    NewOrder,
    OrderType,
    RejectCode,
    RequestKind,
    SelfTradePrevention,
    Side,
    TimeInForce,
    Trade,
    encode,
)
from protocols.requests import PackedOrder
from protocols.rows import (
    GatewayShardRow,
    OrderRow,
    ShardStatusRow,
    SupervisedChildRow,
    SupervisorStatusRow,
)

INSTRUMENTS = [
    Instrument(symbol="AAPL", tick_size=1, lot_size=1, price_scale=2),
    Instrument(symbol="ESZ6", tick_size=25, lot_size=1, price_scale=2, min_price=400000,
               max_price=700000),
    Instrument(symbol="EURUSD", tick_size=1, lot_size=1000, price_scale=5),
]
SHARDS = {"AAPL": 0, "ESZ6": 1, "EURUSD": 1}


@pytest.fixture
def converter() -> Converter:
    return Converter(INSTRUMENTS, SHARDS)


def order(**fields: object) -> pb.NewOrderRequest:
    values: dict[str, object] = {
        "account": "alice", "client_order_id": "c-1", "symbol": "AAPL",
        "side": pb.SIDE_BUY, "order_type": pb.ORDER_TYPE_LIMIT, "quantity": 10, "price": 18950,
    }
    values.update(fields)
    return pb.NewOrderRequest(**values)  # type: ignore[arg-type]


def invalid(converter: Converter, request: pb.NewOrderRequest, default: str | None = None
            ) -> InvalidFieldError:
    with pytest.raises(InvalidFieldError) as caught:
        converter.new_order(request, default, 1)
    return caught.value


# ------------------------------------------------------------------------------ the stubs


def test_committed_stubs_match_the_proto() -> None:
    """protocols/generated is exactly what `python -m protocols.generate` makes now."""
    assert generate.differences() == []


@pytest.mark.parametrize(
    ("internal", "wrapper", "prefix"),
    [
        (Side, pb.Side, "SIDE_"),
        (OrderType, pb.OrderType, "ORDER_TYPE_"),
        (TimeInForce, pb.TimeInForce, "TIME_IN_FORCE_"),
        (SelfTradePrevention, pb.SelfTradePrevention, "SELF_TRADE_PREVENTION_"),
        (CancelReason, pb.CancelReason, "CANCEL_REASON_"),
        (RequestKind, pb.RequestKind, "REQUEST_KIND_"),
        (RejectCode, pb.RejectCode, "REJECT_CODE_"),
    ],
)
def test_protobuf_enums_mirror_the_internal_ones(internal: type, wrapper: object,
                                                 prefix: str) -> None:
    """Every internal enum member has a protobuf twin with the same name and number."""
    for member in internal:  # type: ignore[attr-defined]
        assert wrapper.Value(prefix + member.name) == member.value  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------ new orders


def test_a_well_formed_limit_order_converts(converter: Converter) -> None:
    """Every field maps to the internal order; the ingress time is stamped."""
    command = converter.new_order(order(post_only=True,
                                        self_trade_prevention=pb.SELF_TRADE_PREVENTION_CANCEL_BOTH),
                                  None, 123)
    assert command == NewOrder(
        account="alice", client_order_id="c-1", symbol="AAPL", side=Side.BUY, quantity=10,
        price=18950, order_type=OrderType.LIMIT, time_in_force=TimeInForce.GTC, post_only=True,
        self_trade_prevention=SelfTradePrevention.CANCEL_BOTH, ts_ns=123,
    )


def test_time_in_force_defaults_by_order_type(converter: Converter) -> None:
    """Unset time in force is GTC for a limit order and IOC for a market order."""
    assert converter.new_order(order(), None, 1).time_in_force is TimeInForce.GTC
    market = converter.new_order(order(order_type=pb.ORDER_TYPE_MARKET, price=0), None, 1)
    assert market.time_in_force is TimeInForce.IOC and market.price == 0


def test_empty_account_means_the_tokens_only_account(converter: Converter) -> None:
    """An empty account is the token's single account; with several it is required."""
    assert converter.new_order(order(account=""), "bob", 1).account == "bob"
    error = invalid(converter, order(account=""))
    assert error.field == "account" and "several accounts" in error.reason


def test_price_decimal_converts_exactly(converter: Converter) -> None:
    """'189.50' at price scale 2 is 18950; more decimals than the scale are refused."""
    assert converter.new_order(order(price=0, price_decimal="189.50"), None, 1).price == 18950
    error = invalid(converter, order(price=0, price_decimal="189.505"))
    assert error.field == "price_decimal" and "decimal places" in error.reason


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"symbol": ""}, "symbol", "required"),
        ({"symbol": "NOPE"}, "symbol", "unknown symbol"),
        ({"symbol": "X" * 5000}, "symbol", "longer than 32"),
        ({"client_order_id": ""}, "client_order_id", "required"),
        ({"client_order_id": "x" * 65}, "client_order_id", "longer than 64"),
        ({"client_order_id": "has space"}, "client_order_id", "printable ASCII"),
        ({"client_order_id": "é"}, "client_order_id", "printable ASCII"),
        ({"account": "a" * 100}, "account", "longer than 64"),
        ({"side": 0}, "side", "required"),
        ({"side": 7}, "side", "unknown value 7"),
        ({"order_type": 0}, "order_type", "required"),
        ({"order_type": 99}, "order_type", "unknown value 99"),
        ({"time_in_force": 9}, "time_in_force", "unknown value 9"),
        ({"self_trade_prevention": 4}, "self_trade_prevention", "unknown value 4"),
        ({"quantity": 0}, "quantity", "must be positive"),
        ({"quantity": -5}, "quantity", "must be positive"),
        ({"price": 0}, "price", "must be positive"),
        ({"price": -1}, "price", "must be positive"),
        ({"price": 1, "price_decimal": "1"}, "price_decimal", "not both"),
        ({"price": 0, "price_decimal": "abc"}, "price_decimal", "not a decimal"),
        ({"price": 0, "price_decimal": "NaN"}, "price_decimal", "not a decimal"),
        ({"price": 0, "price_decimal": "1e400"}, "price_decimal", "exponent"),
        ({"price": 0, "price_decimal": "9e999999"}, "price_decimal", "exponent"),
        ({"price": 0, "price_decimal": "1_89.50"}, "price_decimal", "not a decimal"),
        ({"price": 0, "price_decimal": "+189.5"}, "price_decimal", "sign"),
        ({"price": 0, "price_decimal": "-189.5"}, "price_decimal", "negative"),
        ({"price": 0, "price_decimal": "\uff11\uff18\uff19"}, "price_decimal", "ASCII"),
        ({"price": 0, "price_decimal": "0"}, "price_decimal", "must be positive"),
        ({"price": 0, "price_decimal": "99999999999999999999"}, "price_decimal", "64-bit"),
        ({"post_only": True, "time_in_force": pb.TIME_IN_FORCE_IOC}, "post_only", "GTC"),
        ({"order_type": pb.ORDER_TYPE_MARKET}, "price", "market order carries no price"),
        ({"order_type": pb.ORDER_TYPE_MARKET, "price": 0, "post_only": True}, "post_only",
         "cannot be post-only"),
    ],
)
def test_each_malformed_field_is_named(converter: Converter, fields: dict[str, object],
                                       field: str, words: str) -> None:
    """A malformed order raises InvalidFieldError naming the field and the reason."""
    error = invalid(converter, order(**fields))
    assert error.field == field
    assert words in error.reason
    assert len(str(error)) < 300  # a huge input is not echoed back whole


def test_off_tick_and_out_of_band_prices_are_refused(converter: Converter) -> None:
    """ESZ6 trades in ticks of 25 within [400000, 700000]."""
    assert converter.new_order(order(symbol="ESZ6", price=560025), None, 1).price == 560025
    assert "tick size 25" in invalid(converter, order(symbol="ESZ6", price=560010)).reason
    assert "price band" in invalid(converter, order(symbol="ESZ6", price=399975)).reason
    assert "price band" in invalid(converter, order(symbol="ESZ6", price=700025)).reason


def test_off_lot_quantities_are_refused(converter: Converter) -> None:
    """EURUSD trades in lots of 1000."""
    assert converter.new_order(order(symbol="EURUSD", quantity=3000), None, 1).quantity == 3000
    error = invalid(converter, order(symbol="EURUSD", quantity=1500))
    assert error.field == "quantity" and "lot size 1000" in error.reason


def test_extreme_integers_are_handled(converter: Converter) -> None:
    """The int64 extremes are valid or refused cleanly, never an overflow."""
    assert converter.new_order(order(quantity=INT64_MAX), None, 1).quantity == INT64_MAX
    assert converter.new_order(order(price=INT64_MAX), None, 1).price == INT64_MAX
    assert invalid(converter, order(price=-INT64_MAX - 1)).field == "price"


ANY_ORDER = st.builds(
    pb.NewOrderRequest,
    account=st.sampled_from(["", "alice", "has space", "x" * 65, "é"]),
    client_order_id=st.sampled_from(["", "c-1", "x" * 64, "x" * 65, "tab\t", "~!"]),
    symbol=st.sampled_from(["AAPL", "ESZ6", "EURUSD", "NOPE", ""]),
    side=st.integers(-1, 3), order_type=st.integers(0, 3), time_in_force=st.integers(0, 4),
    quantity=st.sampled_from([-1, 0, 1, 1000, 1500, 2**63 - 1, -2**63]),
    price=st.sampled_from([0, -25, 1, 25, 560000, 560010, 400000, 700025, 2**63 - 1]),
    price_decimal=st.sampled_from(["", "5600.25", "1.5", "1e3", "+5600.25", "5600.250"]),
    post_only=st.booleans(), self_trade_prevention=st.integers(0, 4),
)
"""Well-formed and malformed new orders: every field near its limits."""


@settings(max_examples=300, deadline=None)
@given(request=ANY_ORDER)
def test_the_batch_path_accepts_exactly_what_the_single_path_accepts(
    request: pb.NewOrderRequest,
) -> None:
    """A batch row encodes exactly as the single path's NewOrder, or both refuse alike."""
    converter = Converter(INSTRUMENTS, SHARDS)
    try:
        single: NewOrder | InvalidFieldError = converter.new_order(request, "dflt", 9,
                                                                   "orders[0].")
    except InvalidFieldError as error:
        single = error
    try:
        batch = converter.new_orders([request], "dflt", 9, max_orders=10)
    except InvalidFieldError as error:
        assert isinstance(single, InvalidFieldError) and str(error) == str(single)
        return
    assert isinstance(single, NewOrder)
    assert encode(batch.rows) == encode([single])
    assert (batch.accounts, batch.symbols, batch.shards) == (
        [single.account], [single.symbol], [SHARDS[single.symbol]])


def test_a_batch_names_the_index_of_the_bad_order(converter: Converter) -> None:
    """Validation is whole-batch: the first bad order refuses the call, by index."""
    requests = [order(client_order_id=f"c-{i}") for i in range(5)]
    requests[3] = order(client_order_id="c-3", quantity=0)
    with pytest.raises(InvalidFieldError) as caught:
        converter.new_orders(requests, None, 1, max_orders=100)
    assert caught.value.field == "orders[3].quantity"


def test_batch_size_limits(converter: Converter) -> None:
    """An empty batch and one beyond the limit are refused."""
    with pytest.raises(InvalidFieldError, match="at least one"):
        converter.new_orders([], None, 1, max_orders=10)
    with pytest.raises(InvalidFieldError, match="exceed the limit of 2"):
        converter.new_orders([order()] * 3, None, 1, max_orders=2)


def packed(*requests: pb.NewOrderRequest) -> bytes:
    """Return typed orders as ``packed_orders`` (each NewOrderRequest field in number order)."""
    fields = [field.name for field in pb.NewOrderRequest.DESCRIPTOR.fields]
    return msgspec.msgpack.encode(
        [[getattr(request, name) for name in fields] for request in requests])


def test_packed_fields_are_new_order_request_fields_in_number_order() -> None:
    """The packed row is NewOrderRequest field by field: the proto's numbers define it."""
    numbered = sorted(pb.NewOrderRequest.DESCRIPTOR.fields, key=lambda field: field.number)
    assert PackedOrder.__struct_fields__ == tuple(field.name for field in numbered)
    assert [field.number for field in numbered] == list(range(1, len(numbered) + 1))


@settings(max_examples=300, deadline=None)
@given(request=ANY_ORDER)
def test_packed_orders_convert_exactly_as_typed_orders(request: pb.NewOrderRequest) -> None:
    """The same order packed and typed gives the same rows, or the same refusal of the same
    field (``packed_orders[0].x`` for ``orders[0].x``)."""
    converter = Converter(INSTRUMENTS, SHARDS)
    try:
        typed: OrderBatch | InvalidFieldError = converter.new_orders(
            [request, order(client_order_id="next")], "dflt", 9, max_orders=10, origin="o")
    except InvalidFieldError as error:
        typed = error
    try:
        fast = converter.new_orders_packed(packed(request, order(client_order_id="next")),
                                           "dflt", 9, max_orders=10, origin="o")
    except InvalidFieldError as error:
        assert isinstance(typed, InvalidFieldError), error
        assert error.field == "packed_" + typed.field and error.reason == typed.reason
        return
    assert isinstance(typed, OrderBatch)
    assert encode(fast.rows) == encode(typed.rows)
    assert (fast.accounts, fast.symbols, fast.shards) == (
        typed.accounts, typed.symbols, typed.shards)


def test_trailing_packed_fields_may_be_left_out(converter: Converter) -> None:
    """A row may stop after order_type: the rest take NewOrderRequest's defaults."""
    short = msgspec.msgpack.encode([["alice", "c-1", "AAPL", 1, 2]])  # a market buy of 0
    with pytest.raises(InvalidFieldError) as caught:
        converter.new_orders_packed(short, None, 1, max_orders=10)
    assert caught.value.field == "packed_orders[0].quantity"
    rows = msgspec.msgpack.encode([["alice", "c-1", "AAPL", 1, 1, 0, 10, 18950]])
    batch = converter.new_orders_packed(rows, None, 1, max_orders=10)
    assert encode(batch.rows) == encode([converter.new_order(order(), None, 1)])


@pytest.mark.parametrize(("data", "field", "reason"), [
    (b"\xc1", "packed_orders", "is not MessagePack"),
    (msgspec.msgpack.encode({"a": 1}), "packed_orders", "expected `array`, got `object`"),
    (msgspec.msgpack.encode([5]), "packed_orders[0]", "expected `array`, got `int`"),
    (msgspec.msgpack.encode([["alice", "c-1", "AAPL"]]), "packed_orders[0]",
     "expected `array` of at least length 5, got 3"),
    (msgspec.msgpack.encode([["alice", "c-1", "AAPL", 1, 1, 0, 10, 18950, "", False, 0, 7]]),
     "packed_orders[0]", "expected `array` of at most length 11, got 12"),
    (msgspec.msgpack.encode([["alice", "c-1", "AAPL", 1, 1, 0, "10", 18950]]),
     "packed_orders[0].quantity", "expected `int`, got `str`"),
    (msgspec.msgpack.encode([["alice", "c-1", "AAPL", 1, 1, 0, 10, 2**64 - 1]]),
     "packed_orders[0].price", "expected `int` <= 9223372036854775807"),
    (msgspec.msgpack.encode([["alice", "c-1", "AAPL", 2**40, 1]]),
     "packed_orders[0].side", "expected `int` <= 2147483647"),
    (msgspec.msgpack.encode([]), "packed_orders", "must hold at least one order"),
])
def test_malformed_packed_orders_name_the_field(converter: Converter, data: bytes, field: str,
                                                reason: str) -> None:
    """What msgspec refuses while decoding is named like every other invalid field."""
    with pytest.raises(InvalidFieldError) as caught:
        converter.new_orders_packed(data, None, 1, max_orders=10)
    assert caught.value.field == field
    assert caught.value.reason.startswith(reason), caught.value.reason


PRICE_TEXTS = ["5600.25", "5600.5", "5600.50", "5600.10", "5600.255", "5600.250", "1e999997",
               "9e999999", "+5600.25", " 5600.25", "5_600.25",
               "\u0665\u0666\u0660\u0660", "0", "-5600"]


@pytest.mark.parametrize("text", PRICE_TEXTS)
def test_every_rpc_with_a_price_shares_one_parser(converter: Converter, text: str) -> None:
    """SubmitOrder, SubmitOrders and ReplaceOrder accept the same price strings as the same
    integer and refuse the others for the same reason, each naming its own field."""
    def outcome(call: Callable[[], int], field: str) -> tuple[str, int | str]:
        try:
            price = call()
        except InvalidFieldError as error:
            assert error.field == field
            return "refused", error.reason
        return "accepted", price

    fields = {"symbol": "ESZ6", "price": 0, "price_decimal": text}
    single = outcome(lambda: converter.new_order(order(**fields), None, 1).price, "price_decimal")
    batch = outcome(lambda: converter.new_orders(
        [order(client_order_id=f"c-{i}") for i in range(3)] + [order(**fields)], None, 1,
        max_orders=10).rows[3][6], "orders[3].price_decimal")
    replace = outcome(lambda: converter.replace(pb.ReplaceOrderRequest(
        client_order_id="r", symbol="ESZ6", order_id=9, price_decimal=text, quantity=2,
    ), "alice", 7).price, "price_decimal")
    assert single == batch == replace
    assert (single[0] == "accepted") == (text in ("5600.25", "5600.5", "5600.50"))


# ------------------------------------------------------------------------------ other requests


def test_cancel_replace_and_mass_cancel(converter: Converter) -> None:
    """Cancels and replaces need an order id; a mass cancel may name no symbol."""
    cancel = converter.cancel(pb.CancelOrderRequest(client_order_id="k", symbol="AAPL",
                                                    order_id=5), "alice", 7)
    assert (cancel.account, cancel.order_id, cancel.ts_ns) == ("alice", 5, 7)
    with pytest.raises(InvalidFieldError, match="order_id: is required"):
        converter.cancel(pb.CancelOrderRequest(client_order_id="k", symbol="AAPL"), "alice", 7)
    with pytest.raises(InvalidFieldError, match=r"order_id: .* beyond"):
        converter.cancel(pb.CancelOrderRequest(client_order_id="k", symbol="AAPL",
                                               order_id=2**64 - 1), "alice", 7)
    replace = converter.replace(pb.ReplaceOrderRequest(
        client_order_id="r", symbol="ESZ6", order_id=9, price_decimal="5600.25", quantity=2,
    ), "alice", 7)
    assert (replace.price, replace.quantity) == (560025, 2)
    everything = converter.mass_cancel(pb.MassCancelRequest(client_order_id="m"), "alice", 7)
    assert everything == MassCancel(account="alice", client_order_id="m", symbol="", ts_ns=7)


def test_risk_limits_must_be_positive(converter: Converter) -> None:
    """A set limit is 1..2**63-1; an unset one means no limit."""
    command = converter.risk_limits(pb.SetRiskLimitsRequest(
        account="*", limits=pb.RiskLimits(max_order_quantity=100)), "admin-1", 1)
    assert command.limits.max_order_quantity == 100 and command.limits.max_position is None
    with pytest.raises(InvalidFieldError, match=r"limits\.max_position: 0 must be positive"):
        converter.risk_limits(pb.SetRiskLimitsRequest(
            account="alice", limits=pb.RiskLimits(max_position=0)), "admin-1", 1)


def test_ids_and_sequences() -> None:
    """Ids are 1..64 printable ASCII; sequence cursors fit in 63 bits."""
    assert check_id("account", "desk-7_A") == "desk-7_A"
    assert check_seq("after_seq[0]", 0) == 0
    with pytest.raises(InvalidFieldError):
        check_seq("after_seq[0]", 2**63)


def test_book_depth(converter: Converter) -> None:
    """Depth 0 means 10; more than 1000 is refused."""
    assert converter.book_depth(0) == 10 and converter.book_depth(1) == 1
    with pytest.raises(InvalidFieldError, match="depth"):
        converter.book_depth(1001)


# ------------------------------------------------------------------------------ reports


def trade_flow() -> tuple[MatchingEngine, list[list[object]]]:
    engine = MatchingEngine(INSTRUMENTS, 0, client_order_id_window=100)
    orders = [
        NewOrder(account="alice", client_order_id="a1", symbol="AAPL", side=Side.SELL,
                 quantity=5, price=100, ts_ns=1),
        NewOrder(account="bob", client_order_id="b1", symbol="AAPL", side=Side.BUY,
                 quantity=8, price=100, ts_ns=2),
        NewOrder(account="bob", client_order_id="b1", symbol="AAPL", side=Side.BUY,
                 quantity=8, price=100, ts_ns=3),
    ]
    ends: list[int] = []
    events = engine.apply(orders, ends)
    per_order = [events[(ends[i - 1] if i else 0):ends[i]] for i in range(len(orders))]
    return engine, per_order  # type: ignore[return-value]


def test_reports_show_each_account_its_own_side_of_a_trade(converter: Converter) -> None:
    """A trade is a MAKER fill for the resting account and a TAKER fill for the aggressor."""
    _, per_order = trade_flow()
    bob = converter.reports(per_order[1], 0, ("bob",))  # type: ignore[arg-type]
    assert [report.type for report in bob] == [pb.EXECUTION_TYPE_ACCEPTED,
                                               pb.EXECUTION_TYPE_FILL]
    assert bob[1].liquidity == pb.LIQUIDITY_TAKER and bob[1].leaves_quantity == 3
    alice = converter.reports(per_order[1], 0, ("alice",))  # type: ignore[arg-type]
    assert [(r.type, r.liquidity, r.side, r.leaves_quantity) for r in alice] == [
        (pb.EXECUTION_TYPE_FILL, pb.LIQUIDITY_MAKER, pb.SIDE_SELL, 0)
    ]
    assert {report.shard for report in bob + alice} == {0}


def test_a_duplicate_is_a_rejected_report_naming_the_original(converter: Converter) -> None:
    """Resubmitting a client order id gives REJECTED DUPLICATE_CLIENT_ORDER_ID + order id."""
    _, per_order = trade_flow()
    (report,) = converter.reports(per_order[2], 0, ("bob",))  # type: ignore[arg-type]
    assert report.type == pb.EXECUTION_TYPE_REJECTED
    assert report.reject_code == pb.REJECT_CODE_DUPLICATE_CLIENT_ORDER_ID
    assert report.order_id == converter.reports(per_order[1], 0, ("bob",))[0].order_id  # type: ignore[arg-type]


def test_batch_answers_come_in_columns(converter: Converter) -> None:
    """SubmitOrders answers order ids, filled and open quantities per index; rejects sparse."""
    _, per_order = trade_flow()
    response = converter.submit_orders_response(per_order)  # type: ignore[arg-type]
    assert list(response.filled_quantities) == [0, 5, 0]
    assert list(response.open_quantities) == [5, 3, 0]
    assert response.order_ids[2] == 0 and response.order_ids[1] != 0
    (rejection,) = response.rejections
    assert rejection.index == 2 and rejection.order_id == response.order_ids[1]


def test_market_data_updates(converter: Converter) -> None:
    """Level changes and trades carry the seq of the symbol's previous update."""
    level = LevelChanged(7, 1, "AAPL", Side.SELL, 100, 0, 0)
    update = converter.market_update(level, 5)
    assert (update.seq, update.previous_seq, update.level.quantity) == (7, 5, 0)
    trade = Trade(8, 1, "AAPL", 100, 5, Side.BUY, 1, "a", "a1", 0, 2, "b", "b1", 3)
    update = converter.market_update(trade, 7)
    assert update.WhichOneof("update") == "trade" and update.trade.aggressor_side == pb.SIDE_BUY


def test_an_order_row_converts_field_by_field(converter: Converter) -> None:
    """A book actor's order row becomes the API's `Order`, its side mapped to the API enum."""
    row = OrderRow(order_id=42, account="alice", client_order_id="c1", symbol="AAPL",
                   side=Side.SELL, price=15_000, open_quantity=7)
    assert converter.order(row) == pb.Order(
        order_id=42, account="alice", client_order_id="c1", symbol="AAPL", side=pb.SIDE_SELL,
        price=15_000, open_quantity=7,
    )


def test_status_reports_each_shard_up_or_down(converter: Converter) -> None:
    """A shard that answered shows the book actor's figures; one that did not, its error."""
    book = ShardStatusRow(shard=0, incarnation="1-2", symbols=["AAPL"], next_seq=9, batches=3,
                          commands=4, resting_orders=2, failed=None)
    shards = [
        GatewayShardRow(shard=0, up=True, gateway_next_seq=8, halted_symbols=["AAPL"],
                        book=book),
        GatewayShardRow(shard=1, up=False, error="shard 1 is restarting",
                        killed_accounts=["bob"]),
    ]
    supervisor = SupervisorStatusRow(
        name="sup", state="running", strategy="one_for_one", max_restarts=5, within_s=60.0,
        recent_failures=0, history=[],
        children=[SupervisedChildRow(name="book-0", state="up", up=True, restarts=1, offset=0,
                                     last_error="x")],
    )
    response = converter.status("gw", shards, [supervisor])
    up, down = response.shards
    assert (up.up, list(up.symbols), up.next_seq, up.resting_orders) == (True, ["AAPL"], 9, 2)
    assert (up.gateway_next_seq, list(up.halted_symbols)) == (8, ["AAPL"])
    assert (down.up, down.error, down.next_seq, list(down.symbols)) == (
        False, "shard 1 is restarting", 0, [],
    )
    assert list(down.killed_accounts) == ["bob"]
    (child,) = response.supervisors[0].children
    assert (child.name, child.up, child.restarts) == ("book-0", True, 1)


def test_the_converter_raises_the_one_invalid_field_error(converter: Converter) -> None:
    """Validation raises `protocols.errors.InvalidFieldError`, a `ValueError` the gateway
    answers with INVALID_ARGUMENT."""
    assert InvalidFieldError is errors.InvalidFieldError
    with pytest.raises(errors.InvalidFieldError) as raised:
        converter.book_depth(10_000)
    assert isinstance(raised.value, ValueError) and raised.value.field == "depth"
    assert raised.value.status == "INVALID_ARGUMENT"
