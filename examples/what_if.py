"""Replay a recorded run under other settings and compare: a what-if on Ray.

    python examples/what_if.py                  # records a short run first, replays in process
    python examples/what_if.py --ray            # ... the variants as tasks of a private Ray
    python examples/what_if.py --data-dir DIR   # a run of yours (raytrade up --data-dir DIR)

Without --data-dir it writes a short seeded run (4,000 commands, 2 shards, the packaged
instruments) with the book actor every cluster shard runs, here in this process. Three
variants replay its journals: self-trade prevention forced on, tighter risk limits, and the
symbols dealt to 4 shards. The table compares fills, rejects by code, self-trades and fees
with the run as recorded; then PnL per account. ``raytrade what-if`` does the same from the
command line (`cluster.research.whatif.main`).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from actors.book_actor import BookActor
from cluster.config import InstrumentRegistry, ShardMap
from cluster.research.flow import FlowConfig, generate_flow
from cluster.research.whatif import Variant, what_if
from cluster.storage import layout
from cluster.storage.shard import ShardStorageFactory, shard_directory
from protocols.messages import (
    CancelOrder,
    Command,
    NewOrder,
    ReplaceOrder,
    RiskLimitsConfig,
    SelfTradePrevention,
    encode,
)

VARIANTS = [
    Variant(name="no self-trades", stp=SelfTradePrevention.CANCEL_RESTING),
    Variant(name="tight limits",
            limits=RiskLimitsConfig(max_order_quantity=60, max_open_orders=10)),
    Variant(name="4 shards", shards=4),
]


def record_short_run(data_dir: Path, registry: InstrumentRegistry, shards: int = 2) -> None:
    """Journal a seeded flow into ``data_dir`` as a ``shards``-shard cluster would."""
    layout.write_manifest(data_dir, shards)
    shard_map = ShardMap(shards, dict(registry.pins))
    books = {shard: BookActor(shard, [i for i in registry.instruments
                                      if shard_map.shard_of(i.symbol) == shard],
                              log_factory=ShardStorageFactory(shard_directory(data_dir, shard)))
             for shard in range(shards)}
    flow = generate_flow(registry.instruments, FlowConfig(operations=4_000, seed=5),
                         shard_map.shard_of)
    for start in range(0, len(flow), 100):
        parts: dict[int, list[Command]] = {}
        for command in flow[start : start + 100]:
            assert isinstance(command, NewOrder | CancelOrder | ReplaceOrder)  # all a flow holds
            parts.setdefault(shard_map.shard_of(command.symbol), []).append(command)
        for shard, commands in parts.items():
            books[shard].apply_batch(encode(commands))
    # each batch is on disk (fsynced) before apply_batch returns: the journals can be read now


def main() -> None:
    """Record (unless given a run), replay every variant, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="a run's data dir (default: a new one)")
    parser.add_argument("--instruments", type=Path, help="the run's instrument file")
    parser.add_argument("--ray", action="store_true",
                        help="run the variants as parallel tasks of a private local Ray")
    args = parser.parse_args()
    registry = InstrumentRegistry.load(args.instruments)

    with tempfile.TemporaryDirectory(prefix="raytrade-what-if-") as scratch:
        data_dir = args.data_dir
        if data_dir is None:
            data_dir = Path(scratch) / "run"
            record_short_run(data_dir, registry)

        run = None
        if args.ray:
            # a private Ray on this machine, stopped by run.close() whatever happens
            from cluster.edge.local_run import LocalRun

            run = LocalRun(verbose=False)
            run.start_ray(num_cpus=2, namespace="what-if-example")
        try:
            # with a Ray running (or joined) in this process the variants are Ray tasks, the
            # recording handed to them once through the object store; without one they run here
            report = what_if(data_dir, VARIANTS, registry, progress=False)
        finally:
            if run is not None:
                run.close()

    print(report.format(positions=False))
    tight = report.result("tight limits")
    print(f"\n'tight limits' refused {sum(tight.rejects.values()):,} requests: "
          + ", ".join(f"{code} {count:,}" for code, count in tight.rejects.items()))


if __name__ == "__main__":
    main()
