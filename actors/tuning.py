"""Process tuning for the processes that match orders (shard actors, benchmarks).

CPython's cyclic garbage collector, with its default thresholds, runs a generation-0 pass
every 700 container allocations and, now and then, a full pass over every tracked object.
Matching allocates many small objects, so the passes land in the middle of batches: on the
CI machines they put the p99 of 1000-order batches near 50 ms. Messages and resting orders
are msgspec structs kept out of the collector (``gc=False``); raising the thresholds makes
the remaining passes rare and short.
"""

from __future__ import annotations

import gc
from typing import Final

GC_THRESHOLDS: Final = (100_000, 50, 100)


def tune_gc() -> None:
    """Raise the collector's thresholds and freeze what start-up allocated."""
    gc.collect()
    gc.freeze()  # objects alive after start-up (modules, config) are never scanned again
    gc.set_threshold(*GC_THRESHOLDS)
