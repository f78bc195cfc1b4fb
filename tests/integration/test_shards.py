"""The sharded system on a real local Ray: routing, risk, admin, positions, idempotency."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import pytest

from cluster.clients.ray_client import Client
from cluster.config import ClusterConfig, InstrumentRegistry
from cluster.edge.wiring import Cluster, connect, start_cluster
from cluster.research.flow import FlowConfig, generate_flow
from protocols.messages import (
    CancelReason,
    Instrument,
    KillSwitchSet,
    NewOrder,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderReplaced,
    RejectCode,
    RiskLimitsConfig,
    Side,
    Trade,
)

pytestmark = [pytest.mark.ray]

INSTRUMENTS = (
    Instrument(symbol="AAA", tick_size=1, lot_size=1, reference_price=10_000, taker_fee_bps=1),
    Instrument(symbol="BBB", tick_size=5, lot_size=10, reference_price=20_000),
    Instrument(symbol="CCC", tick_size=1, lot_size=1, reference_price=5_000),
)
PINS = {"AAA": 0, "BBB": 1, "CCC": 1}


@pytest.fixture(scope="module")
def cluster(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    config = ClusterConfig(
        shards=2, namespace="test-shards", data_dir=str(tmp_path_factory.mktemp("shards"))
    )
    running = start_cluster(config, InstrumentRegistry(INSTRUMENTS, PINS))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(cluster: Cluster) -> Client:
    return Client(cluster)


def order(account: str, client_order_id: str, symbol: str, side: Side, quantity: int,
          price: int) -> NewOrder:
    return NewOrder(account=account, client_order_id=client_order_id, symbol=symbol, side=side,
                    quantity=quantity, price=price)


def first(events: list, kind: type, **fields: object):  # type: ignore[no-untyped-def]
    for event in events:
        if type(event) is kind and all(getattr(event, k) == v for k, v in fields.items()):
            return event
    raise AssertionError(f"no {kind.__name__} with {fields} in {events}")


def test_a_batch_spanning_shards_goes_to_each_owning_shard(client: Client) -> None:
    """One batch is split by shard; each shard numbers its own events and order ids."""
    events = client.submit([
        order("routing", "r1", "AAA", Side.BUY, 5, 9_000),
        order("routing", "r2", "BBB", Side.BUY, 10, 19_000),
        order("routing", "r3", "CCC", Side.SELL, 5, 6_000),
    ])
    accepted = {event.client_order_id: event for event in events if type(event) is OrderAccepted}
    assert set(accepted) == {"r1", "r2", "r3"}
    assert accepted["r1"].order_id >> 40 == 0
    assert accepted["r2"].order_id >> 40 == 1 and accepted["r3"].order_id >> 40 == 1
    for shard in (0, 1):
        numbers = [e.seq for e in events if getattr(e, "symbol", "") in
                   {s for s, k in PINS.items() if k == shard}]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))


def test_cancel_and_replace_reach_the_owning_shard(client: Client) -> None:
    """Cancels and replaces find the order in its symbol's shard; a query finds it by id."""
    placed = first(client.submit([order("mover", "m1", "BBB", Side.SELL, 20, 25_000)]),
                   OrderAccepted)
    assert client.order(placed.order_id).open_quantity == 20  # type: ignore[union-attr]
    replaced = first(client.replace("mover", "BBB", placed.order_id, 25_005, 10), OrderReplaced)
    assert replaced.priority_kept is False and replaced.quantity == 10
    cancelled = first(client.cancel("mover", "BBB", placed.order_id), OrderCancelled)
    assert cancelled.reason == CancelReason.USER and cancelled.quantity == 10
    assert client.order(placed.order_id) is None
    again = first(client.cancel("mover", "BBB", placed.order_id), OrderRejected)
    assert again.code == RejectCode.ORDER_NOT_OPEN


def test_risk_limits_reject_with_their_codes(client: Client) -> None:
    """Limits set at run time apply at once; rejects carry the precise code and a text."""
    events = client.set_limits("limited", RiskLimitsConfig(max_order_quantity=10))
    assert len(events) == 2  # one RiskLimitsSet per shard: account-wide limits go everywhere
    client.set_limits("limited", RiskLimitsConfig(max_order_quantity=100), symbol="CCC")
    too_big = first(client.submit([order("limited", "l1", "AAA", Side.BUY, 11, 9_000)]),
                    OrderRejected)
    assert too_big.code == RejectCode.RISK_MAX_ORDER_QUANTITY and "10" in too_big.text
    first(client.submit([order("limited", "l2", "CCC", Side.BUY, 50, 4_000)]), OrderAccepted)
    client.set_limits("limited", RiskLimitsConfig(price_collar_bps=500), symbol="AAA")
    collared = first(client.submit([order("limited", "l3", "AAA", Side.BUY, 5, 5_000)]),
                     OrderRejected)
    assert collared.code == RejectCode.RISK_PRICE_COLLAR
    invalid = first(client.set_limits("limited", RiskLimitsConfig(max_position=-1)),
                    OrderRejected)
    assert invalid.code == RejectCode.RISK_INVALID_LIMITS


def test_kill_switch_cancels_everywhere_and_blocks_new_orders(client: Client) -> None:
    """A kill switch cancels the account's resting orders on every shard and blocks new
    orders until released; cancels stay allowed."""
    client.submit([order("reckless", "k1", "AAA", Side.BUY, 5, 9_100),
                   order("reckless", "k2", "BBB", Side.BUY, 10, 19_100)])
    events = client.kill_switch("reckless")
    assert sum(1 for e in events if type(e) is KillSwitchSet) == 2
    cancels = [e for e in events if type(e) is OrderCancelled]
    assert {e.client_order_id for e in cancels} == {"k1", "k2"}
    assert all(e.reason == CancelReason.KILL_SWITCH for e in cancels)
    blocked = first(client.submit([order("reckless", "k3", "AAA", Side.BUY, 5, 9_100)]),
                    OrderRejected)
    assert blocked.code == RejectCode.RISK_ACCOUNT_KILLED
    client.wait_for_readers()
    assert all(row.killed for row in client.exposure("reckless"))
    client.kill_switch("reckless", engaged=False)
    first(client.submit([order("reckless", "k4", "AAA", Side.BUY, 5, 9_100)]), OrderAccepted)


def test_halt_blocks_one_symbol_until_resumed(client: Client) -> None:
    """A halted symbol refuses new orders; other symbols trade; resume lifts it."""
    client.halt("CCC")
    halted = first(client.submit([order("halter", "h1", "CCC", Side.BUY, 5, 4_000)]),
                   OrderRejected)
    assert halted.code == RejectCode.RISK_SYMBOL_HALTED
    first(client.submit([order("halter", "h2", "BBB", Side.BUY, 10, 19_000)]), OrderAccepted)
    client.halt("CCC", halted=False)
    first(client.submit([order("halter", "h3", "CCC", Side.BUY, 5, 4_000)]), OrderAccepted)


def test_a_resubmitted_order_is_recognised_not_entered_twice(client: Client) -> None:
    """The same (account, client order id) again is answered with a duplicate reject that
    names the original order; nothing else happens."""
    original = first(client.submit([order("retry", "same", "AAA", Side.SELL, 5, 12_000)]),
                     OrderAccepted)
    again = client.submit([order("retry", "same", "AAA", Side.SELL, 5, 12_000)])
    assert len(again) == 1 and type(again[0]) is OrderRejected
    assert again[0].code == RejectCode.DUPLICATE_CLIENT_ORDER_ID
    assert again[0].order_id == original.order_id
    assert [o.order_id for o in client.open_orders("retry")] == [original.order_id]


def test_positions_after_a_flow_equal_those_computed_from_the_trades(client: Client) -> None:
    """After a seeded flow, the readers' net and traded quantities equal a naive
    count over the trade events, and net quantities sum to zero per symbol."""
    flow = generate_flow(
        INSTRUMENTS, FlowConfig(operations=6_000, seed=11, accounts=6), client.shard_map.shard_of
    )
    # the cluster already holds other tests' orders, so the flow's cancels and replaces may
    # name other ids than the generator predicted; the trades are what this test counts
    events = []
    for index in range(0, len(flow), 500):
        events.extend(client.submit(flow[index : index + 500]))
    trades = [e for e in events if type(e) is Trade]
    assert trades, "the flow should trade"
    net: dict[tuple[str, str], int] = defaultdict(int)
    volume: dict[tuple[str, str], int] = defaultdict(int)
    for trade in trades:
        buyer, seller = ((trade.taker_account, trade.maker_account)
                         if trade.aggressor_side == Side.BUY
                         else (trade.maker_account, trade.taker_account))
        net[(buyer, trade.symbol)] += trade.quantity
        net[(seller, trade.symbol)] -= trade.quantity
        volume[(buyer, trade.symbol)] += trade.quantity
        volume[(seller, trade.symbol)] += trade.quantity
    client.wait_for_readers()
    rows = {(r.account, r.symbol): r for r in client.all_positions()
            if r.account.startswith("ACC")}
    # other tests' accounts rest orders the flow may hit: compare the flow's accounts
    ours = {key: value for key, value in net.items() if key[0].startswith("ACC")}
    assert {key: row.net_quantity for key, row in rows.items()} == ours
    for key, row in rows.items():
        assert row.traded_quantity == volume[key]
    everyone = client.all_positions()
    for symbol in {symbol for _, symbol in rows}:
        assert sum(r.net_quantity for r in everyone if r.symbol == symbol) == 0


def test_named_actors_are_found_by_another_lookup(cluster: Cluster) -> None:
    """Any driver in the namespace finds the shards by name and gets the same topology."""
    found = connect(namespace="test-shards")
    assert found.topology == cluster.topology
    assert Client(found).status()[1].symbols == ["BBB", "CCC"]
