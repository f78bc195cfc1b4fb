"""Trade through a raytrade gateway with the Python client: orders, executions, market data.

Start a local cluster with a gateway first (it prints a token per account)::

    raytrade up --dev-accounts alice bob

then, in another terminal, with the printed tokens::

    python examples/grpc_client.py --alice-token ... --bob-token ...

It follows alice's executions and the AAPL book in background threads, has alice quote and
bob take, then prints what the streams saw and the positions.
"""

from __future__ import annotations

import argparse
import threading
import time

from cluster.clients.grpc_client import LocalBook, TradingClient, new_order
from protocols.generated.trading_pb2 import ExecutionType


def main() -> None:
    """Run the walkthrough."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--alice-token", required=True)
    parser.add_argument("--bob-token", required=True)
    parser.add_argument("--symbol", default="AAPL")
    args = parser.parse_args()

    alice = TradingClient(args.target, args.alice_token)
    bob = TradingClient(args.target, args.bob_token)
    instrument = next(i for i in alice.instruments().instruments if i.symbol == args.symbol)
    scale = 10 ** instrument.price_scale
    print(f"{instrument.symbol}: tick {instrument.tick_size}, lot {instrument.lot_size}, "
          f"prices in 1/{scale}, shard {instrument.shard}")

    # executions: the stream resumes by itself after a dropped connection
    executions = alice.stream_executions()
    seen: list[str] = []

    def follow_executions() -> None:
        seen.extend(
            f"  seq {report.shard}:{report.seq} {ExecutionType.Name(report.type)} order "
            f"{report.order_id} {report.last_quantity or report.quantity} @ "
            f"{(report.last_price or report.price) / scale}"
            for report in executions.reports()
        )

    book = LocalBook()

    def follow_book() -> None:
        for batch in alice.stream_market_data([args.symbol]):
            for update in batch.updates:
                book.apply(update)  # raises MarketDataGapError on a gap

    for target in (follow_executions, follow_book):
        threading.Thread(target=target, daemon=True).start()
    time.sleep(0.5)

    # alice quotes three levels; bob takes two of them in one batch call
    for price in (18990, 18995, 19000):
        alice.submit(new_order(args.symbol, "sell", 10, price=price))
    reply = bob.submit_orders([new_order(args.symbol, "buy", 10, price_decimal="189.95"),
                               new_order(args.symbol, "buy", 5, price_decimal="190.00")])
    print(f"bob's batch: order ids {list(reply.order_ids)}, filled "
          f"{list(reply.filled_quantities)}")
    time.sleep(0.5)

    print("alice's executions:", *seen, sep="\n")
    bids, asks = book.levels(args.symbol)
    print(f"{args.symbol} book from the stream: bids {bids[:3]} asks {asks[:3]}")
    for position in bob.positions():
        print(f"bob {position.symbol}: {position.net_quantity} at mark "
              f"{position.mark_price / scale}, realized {position.realized_pnl}")
    print(f"alice cancels the rest: {alice.mass_cancel(args.symbol).cancelled_orders} orders")
    executions.close()
    alice.close()
    bob.close()


if __name__ == "__main__":
    main()
