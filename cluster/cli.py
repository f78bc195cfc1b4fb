"""The ``raytrade`` command.

    raytrade demo [--orders N] [--seed S]     run a seeded flow and print a summary
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from collections.abc import Sequence

from tqdm import tqdm

from actors.core.engine import MatchingEngine
from actors.tuning import tune_gc
from cluster.flow import FlowConfig, demo_instruments, iter_flow
from protocols.messages import (
    Command,
    Event,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    Trade,
)

log = logging.getLogger("raytrade")


def _demo(args: argparse.Namespace) -> int:
    tune_gc()
    instruments = demo_instruments(args.symbols)
    engine = MatchingEngine(instruments)
    config = FlowConfig(operations=args.orders, seed=args.seed, accounts=args.accounts)
    counts: Counter[str] = Counter()
    rejects: Counter[str] = Counter()
    cancels: Counter[str] = Counter()
    volume = 0
    batch: list[Command] = []
    elapsed = 0.0

    def apply(commands: Sequence[Command]) -> None:
        nonlocal elapsed, volume
        started = time.perf_counter()
        events: list[Event] = engine.apply(commands)
        elapsed += time.perf_counter() - started
        for event in events:
            counts[type(event).__name__] += 1
            if type(event) is Trade:
                volume += event.quantity
            elif type(event) is OrderRejected:
                rejects[event.code.name] += 1
            elif type(event) is OrderCancelled:
                cancels[event.reason.name] += 1

    for command in tqdm(iter_flow(instruments, config), total=args.orders, unit="cmd",
                        desc="simulated traders", disable=args.quiet):
        batch.append(command)
        if len(batch) == args.batch:
            apply(batch)
            batch = []
    if batch:
        apply(batch)
    engine.check_invariants()

    print(f"\nraytrade demo: {args.orders:,} commands, seed {args.seed}, "
          f"{args.symbols} symbols, {args.accounts} accounts (in-process engine)")
    print(f"  accepted {counts[OrderAccepted.__name__]:,}  trades {counts[Trade.__name__]:,}"
          f" (volume {volume:,})  cancelled {counts[OrderCancelled.__name__]:,}"
          f"  replaced {counts['OrderReplaced']:,}  rejected {counts[OrderRejected.__name__]:,}")
    if rejects:
        print("  rejects by reason: " + ", ".join(f"{k} {v:,}" for k, v in rejects.most_common()))
    if cancels:
        print("  cancels by reason: " + ", ".join(f"{k} {v:,}" for k, v in cancels.most_common()))
    print("  top of book:")
    for symbol, book in sorted(engine.books.items()):
        bid, ask = book.l1()
        print(f"    {symbol:8} bid {_level(bid):>16}   ask {_level(ask):>16}   "
              f"resting {len(book.orders):,}")
    print(f"  matching: {args.orders / elapsed:,.0f} commands/s in this process "
          f"({elapsed:.2f} s); state hash {engine.state_hash()}")
    return 0


def _level(level: tuple[int, int] | None) -> str:
    return "-" if level is None else f"{level[1]:,} @ {level[0]}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raytrade", description="An actor-model trading system on Ray."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run a seeded flow of simulated traders and summarise")
    demo.add_argument("--orders", type=int, default=200_000, help="commands to send")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--symbols", type=int, default=8)
    demo.add_argument("--accounts", type=int, default=20)
    demo.add_argument("--batch", type=int, default=1000, help="commands per batch")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
