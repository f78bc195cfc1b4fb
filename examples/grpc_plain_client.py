"""Trade through a raytrade gateway with plain grpcio and the .proto alone: no raytrade code.

    raytrade up --dev-accounts alice bob        # a gateway on 127.0.0.1:50051; prints tokens
    python examples/grpc_plain_client.py --token ALICE_TOKEN --taker-token BOB_TOKEN

This is what a client in any language does: compile ``protocols/trading.proto`` with that
language's protoc plugin, open a channel, send ``authorization: Bearer <token>`` with every
call. Here protoc is grpcio-tools' (``pip install grpcio grpcio-tools``), run at start-up into
a temporary folder, so the script imports nothing of raytrade. It follows the token's
executions (StreamExecutions), rests a sell order (the price as a decimal string), lets the
taker (if given) buy part of it at the market, prints the reports the stream brought, cancels
the rest and prints both accounts' positions.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
from grpc_tools import protoc

PROTO = Path(__file__).resolve().parents[1] / "protocols" / "trading.proto"


def compile_proto(proto: Path, out_dir: Path) -> tuple[Any, Any]:
    """Compile the .proto into ``out_dir``; return its message and service modules."""
    include = Path(protoc.__file__).parent / "_proto"  # protobuf's own well-known types
    status = protoc.main(["grpc_tools.protoc", f"-I{proto.parent}", f"-I{include}",
                          f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
                          proto.name])
    if status != 0:
        raise SystemExit(f"protoc failed on {proto} (status {status})")
    sys.path.insert(0, str(out_dir))
    stem = proto.stem
    return importlib.import_module(f"{stem}_pb2"), importlib.import_module(f"{stem}_pb2_grpc")


def main() -> None:
    """Stream, quote, take, cancel, read positions."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:50051", help="the gateway's HOST:PORT")
    parser.add_argument("--token", required=True, help="bearer token of the quoting account")
    parser.add_argument("--taker-token", help="bearer token of a second account that takes")
    parser.add_argument("--symbol", default="AAPL")
    parser.add_argument("--price", default="189.50", help="the quote's price, as a decimal")
    parser.add_argument("--proto", type=Path, default=PROTO, help="path of trading.proto")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="trading-proto-") as generated:
        pb, pb_grpc = compile_proto(args.proto, Path(generated))
        # (the modules are loaded now; the folder may go)

    channel = grpc.insecure_channel(args.target)  # plaintext: a loopback dev gateway
    trading = pb_grpc.TradingServiceStub(channel)
    quoter = (("authorization", f"Bearer {args.token}"),)
    taker = (("authorization", f"Bearer {args.taker_token}"),) if args.taker_token else None

    listing = trading.ListInstruments(pb.ListInstrumentsRequest(), metadata=quoter, timeout=10)
    instrument = next(i for i in listing.instruments if i.symbol == args.symbol)
    scale = instrument.price_scale  # prices on the wire are integers: 18950 is 189.50

    def decimal(price: int) -> Decimal:
        return Decimal(price).scaleb(-scale)

    # executions of the token's accounts: the first batch is empty and means "live from here"
    stream = trading.StreamExecutions(pb.StreamExecutionsRequest(), metadata=quoter)
    next(stream)
    seen: list[Any] = []

    def follow() -> None:
        try:
            for batch in stream:  # heartbeats come as empty batches
                seen.extend(batch.reports)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:  # cancelled: we hung up below
                raise

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()

    run = time.time_ns()
    quote = trading.SubmitOrder(pb.NewOrderRequest(
        client_order_id=f"quote-{run}", symbol=args.symbol, side=pb.SIDE_SELL,
        order_type=pb.ORDER_TYPE_LIMIT, time_in_force=pb.TIME_IN_FORCE_GTC, quantity=10,
        price_decimal=args.price), metadata=quoter, timeout=10)
    order_id = 0
    for report in quote.reports:
        print(f"quote: {pb.ExecutionType.Name(report.type)} order {report.order_id} "
              f"{report.quantity} {report.symbol} at {decimal(report.price)}"
              + (f": {pb.RejectCode.Name(report.reject_code)} {report.text}"
                 if report.type == pb.EXECUTION_TYPE_REJECTED else ""))
        order_id = order_id or report.order_id
    expected = 1  # reports the stream will bring: the acceptance, ...

    if taker is not None:
        take = trading.SubmitOrder(pb.NewOrderRequest(
            client_order_id=f"take-{run}", symbol=args.symbol, side=pb.SIDE_BUY,
            order_type=pb.ORDER_TYPE_MARKET, time_in_force=pb.TIME_IN_FORCE_IOC, quantity=4),
            metadata=taker, timeout=10)
        for report in take.reports:
            if report.type == pb.EXECUTION_TYPE_FILL:
                print(f"taker: FILL {report.last_quantity} at {decimal(report.last_price)}, "
                      f"{pb.Liquidity.Name(report.liquidity)}")
        expected += 1  # ... and the quote's fill

    deadline = time.monotonic() + 10
    while len(seen) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    stream.cancel()
    print(f"the execution stream brought {len(seen)} report(s):")
    for report in seen:
        print(f"  seq {report.shard}:{report.seq} {pb.ExecutionType.Name(report.type)} order "
              f"{report.order_id} {report.last_quantity or report.quantity} at "
              f"{decimal(report.last_price or report.price)}")

    if order_id:
        trading.CancelOrder(pb.CancelOrderRequest(client_order_id=f"cancel-{run}",
                                                  symbol=args.symbol, order_id=order_id),
                            metadata=quoter, timeout=10)

    # positions are read models that follow the journal: after a trade, poll until they show it
    for who, metadata in (("quoter", quoter), ("taker", taker)):
        if metadata is None:
            continue
        deadline = time.monotonic() + (10 if taker is not None else 0)
        while True:
            reply = trading.GetPositions(pb.GetPositionsRequest(), metadata=metadata, timeout=10)
            positions = [p for p in reply.positions if p.symbol == args.symbol]
            if positions or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        for p in positions:  # money fields are decimal strings of price units x quantity
            print(f"{who} {p.account} {p.symbol}: net {p.net_quantity:+d}, "
                  f"realized {decimal(int(p.realized_pnl))}, fees {decimal(int(p.fees))}")
    channel.close()


if __name__ == "__main__":
    main()
