"""Start a private raytrade cluster, trade through the Python client, print fills and positions.

    python examples/quickstart.py

It starts Ray on this machine (every port on loopback, 2 CPUs, no dashboard) and a 2-shard
cluster whose journals go to a temporary folder; alice quotes AAPL on both sides, bob takes
from her; the script prints each fill and both positions, then stops the cluster and Ray
(also on Ctrl-C or an error: nothing is left running, the folder is removed). Takes 5-15 s,
mostly Ray's start-up.
"""

from __future__ import annotations

from decimal import Decimal

from cluster.clients.ray_client import Client
from cluster.config import ClusterConfig, InstrumentRegistry
from cluster.edge.local_run import LocalRun
from protocols.messages import Event, OrderRejected, Trade
from protocols.prices import format_price

NAMESPACE = "quickstart"


def money(amount: int, scale: int) -> str:
    """Money (PnL, fees) is price units x quantity: in currency, divided by 10**scale."""
    return f"{Decimal(amount).scaleb(-scale):.{scale}f}"


def show(events: list[Event], scale: int) -> None:
    """Print the fills (and any rejection) among a command's events."""
    for event in events:
        if isinstance(event, Trade):
            buyer, seller = ((event.taker_account, event.maker_account)
                             if event.aggressor_side.name == "BUY"
                             else (event.maker_account, event.taker_account))
            print(f"  fill: {buyer} bought {event.quantity} {event.symbol} from {seller} "
                  f"at {format_price(event.price, scale)}")
        elif isinstance(event, OrderRejected):
            print(f"  rejected: {event.code.name}: {event.text}")


def main() -> None:
    """Start, trade, print, stop."""
    registry = InstrumentRegistry.load()  # the packaged demo instruments (AAPL, MSFT, ...)
    aapl = registry.get("AAPL")
    assert aapl is not None
    scale = aapl.price_scale  # prices are integers: 18950 with scale 2 is 189.50

    # LocalRun owns what it starts: close() stops the cluster and Ray, whatever happened
    run = LocalRun(verbose=False)
    try:
        data_dir = run.scratch_dir()
        run.start_ray(num_cpus=2, namespace=NAMESPACE)
        cluster = run.start_cluster(
            ClusterConfig(shards=2, namespace=NAMESPACE, data_dir=data_dir), registry)
        print(f"cluster up: {cluster.shards} shards, journals in {data_dir}")
        client = Client(cluster)

        # alice quotes: buy 100 at 189.45, sell 100 at 189.55 (limit orders rest in the book)
        client.buy("alice", "AAPL", 100, 18_945, client_order_id="alice-bid")
        client.sell("alice", "AAPL", 100, 18_955, client_order_id="alice-ask")
        print(f"AAPL book (price, quantity, orders): {client.l2('AAPL', 5)}")

        print("bob buys 40 at the market:")  # each call returns the events it caused
        show(client.buy("bob", "AAPL", 40, client_order_id="bob-1"), scale)
        print("bob sells 10 at 189.40 or better (it trades at alice's 189.45):")
        show(client.sell("bob", "AAPL", 10, 18_940, client_order_id="bob-2"), scale)

        client.mass_cancel("alice", "AAPL")  # take alice's rest out of the book
        client.wait_for_readers()  # positions are a read model of the journal: let it catch up
        print("positions (marked at the last trade):")
        for account in ("alice", "bob"):
            for position in client.positions(account):
                print(f"  {account} {position.symbol}: net {position.net_quantity:+d}, "
                      f"realized {money(position.realized_pnl, scale)}, "
                      f"unrealized {money(position.unrealized_pnl, scale)}, "
                      f"fees {money(position.fees, scale)}")
    finally:
        run.close()
    print("stopped")


if __name__ == "__main__":
    main()
