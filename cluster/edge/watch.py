"""``raytrade status --watch``: a live terminal view per shard, read from the metrics.

Every ``interval`` it scrapes what Prometheus would (each Ray node's metrics export and each
gateway's ``/metrics``: `write_prometheus_targets` finds the same targets), and shows per shard
what changed since the last scrape: orders and rejects per second, p50 and p99 of each stage
of the shard (gate and match, journal, publication) and of the gateways' calls to it, restarts
of its actors, and how far its reader is behind its journal. No Prometheus is needed; the
numbers are the ones a dashboard computes (`rate`, `histogram_quantile` over the interval).

The arithmetic is pure (`Scrape`, `shard_rows`): tests feed it exposition text.
"""

from __future__ import annotations

import math
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

import msgspec
from prometheus_client.parser import text_string_to_metric_families

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Scrape(msgspec.Struct, frozen=True, kw_only=True):
    """Every sample of one round of scrapes, and when it was taken."""

    at_s: float
    """Monotonic seconds."""
    samples: Series
    """(sample name, labels) -> value."""
    failed: tuple[str, ...] = ()
    """Targets that did not answer."""


def parse(text: str, into: Series | None = None) -> Series:
    """Add the samples of Prometheus exposition ``text`` to ``into`` (a new dict if None)."""
    samples: Series = {} if into is None else into
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "raytrade" not in sample.name:
                continue
            key = (sample.name, frozenset(sample.labels.items()))
            samples[key] = samples.get(key, 0.0) + sample.value
    return samples


def scrape(targets: Iterable[str], *, timeout_s: float = 3.0,
           clock: Callable[[], float] = time.monotonic) -> Scrape:
    """Scrape ``http://<target>/metrics`` of every target (a failing one is noted, skipped)."""
    samples: Series = {}
    failed = []
    for target in targets:
        try:
            with urllib.request.urlopen(f"http://{target}/metrics", timeout=timeout_s) as reply:
                parse(reply.read().decode("utf-8", "replace"), samples)
        except OSError:
            failed.append(target)
    return Scrape(at_s=clock(), samples=samples, failed=tuple(failed))


def _sum_by(samples: Series, name: str, keys: Sequence[str],
            where: dict[str, str] | None = None) -> dict[tuple[str, ...], float]:
    """Sum the samples of ``name`` by the label values ``keys`` (like PromQL ``sum by``)."""
    out: dict[tuple[str, ...], float] = {}
    for (sample, labels), value in samples.items():
        if sample != name:
            continue
        found = dict(labels)
        if where and any(found.get(key) != wanted for key, wanted in where.items()):
            continue
        group = tuple(found.get(key, "") for key in keys)
        out[group] = out.get(group, 0.0) + value
    return out


def _increase(before: Series, after: Series, name: str, keys: Sequence[str],
              where: dict[str, str] | None = None) -> dict[tuple[str, ...], float]:
    """Sum by ``keys`` of each series' increase (like PromQL's ``increase``): a series that
    went down was reset (a restarted worker's counters start again at 0)."""
    grown: Series = {}
    for key, value in after.items():
        if key[0] == name:
            previous = before.get(key, 0.0)
            grown[key] = value - previous if value >= previous else value
    return _sum_by(grown, name, keys, where)


def quantile(fraction: float, buckets: dict[float, float]) -> float | None:
    """Return the ``fraction`` quantile of cumulative bucket counts (upper bound -> count),
    interpolated within the bucket as Prometheus's ``histogram_quantile`` does; None if empty."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = fraction * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # in the open-ended bucket: its lower bound, as Prometheus does
            width = count - below
            return lower + (bound - lower) * ((rank - below) / width if width else 0.0)
        lower, below = bound, count
    return lower


def _quantiles(before: Series, after: Series, name: str, keys: Sequence[str],
               where: dict[str, str] | None = None,
               ) -> dict[tuple[str, ...], tuple[float | None, float | None]]:
    grown = _increase(before, after, f"{name}_bucket", [*keys, "le"], where)
    per_group: dict[tuple[str, ...], dict[float, float]] = {}
    for group, value in grown.items():
        per_group.setdefault(group[:-1], {})[float(group[-1])] = value
    return {group: (quantile(0.5, buckets), quantile(0.99, buckets))
            for group, buckets in per_group.items()}


class ShardRow(msgspec.Struct, frozen=True, kw_only=True):
    """What one shard did between two scrapes."""

    shard: str
    orders_per_s: float
    rejects_per_s: float
    stages_ms: dict[str, tuple[float | None, float | None]]
    """Stage -> (p50, p99) in milliseconds, over the interval."""
    restarts: int
    """Restarts of the shard's book and reader since their supervisor started."""
    lag_events: int | None
    """Journal position minus the reader's (None until both are known)."""


def shard_rows(before: Scrape, after: Scrape, namespace: str | None = None) -> list[ShardRow]:
    """Return per-shard figures between two scrapes (rates over the time between them), of
    the raytrade cluster in ``namespace`` (every one the Ray runs if None)."""
    seconds = max(after.at_s - before.at_s, 1e-9)
    old, new = before.samples, after.samples
    mine = {"namespace": namespace} if namespace is not None else {}
    orders = _increase(old, new, "ray_raytrade_orders_total", ["shard"], mine)
    rejects = _increase(old, new, "ray_raytrade_orders_total", ["shard"],
                        {**mine, "outcome": "rejected"})
    stages = _quantiles(old, new, "ray_raytrade_stage_duration_seconds", ["shard", "stage"],
                        mine)
    calls = _quantiles(old, new, "raytrade_gateway_shard_call_duration_seconds", ["shard"])
    restarts = _sum_by(new, "ray_raytrade_actor_restarts_total", ["child"], mine)
    journal = _gauge(new, "ray_raytrade_journal_position_events", mine)
    reader = _gauge(new, "ray_raytrade_reader_position_events", mine)
    shards = sorted({group[0] for group in orders} | set(journal), key=_number)
    rows = []
    for shard in shards:
        stage_ms = {stage: _ms(value) for (name, stage), value in stages.items()
                    if name == shard}
        if (shard,) in calls:
            stage_ms["gateway call"] = _ms(calls[(shard,)])
        lag = (int(journal[shard] - reader[shard])
               if shard in journal and shard in reader else None)
        rows.append(ShardRow(
            shard=shard, orders_per_s=orders.get((shard,), 0.0) / seconds,
            rejects_per_s=rejects.get((shard,), 0.0) / seconds, stages_ms=stage_ms,
            restarts=int(sum(value for (child,), value in restarts.items()
                             if child in (f"book-{shard}", f"reader-{shard}"))),
            lag_events=lag,
        ))
    return rows


def _gauge(samples: Series, name: str, where: dict[str, str]) -> dict[str, float]:
    # several workers may have reported one (a restarted actor's old series lingers): the max
    out: dict[str, float] = {}
    for (sample, labels), value in samples.items():
        found = dict(labels)
        if sample == name and all(found.get(key) == wanted for key, wanted in where.items()):
            shard = found.get("shard", "")
            out[shard] = max(out.get(shard, value), value)
    return out


def _ms(pair: tuple[float | None, float | None]) -> tuple[float | None, float | None]:
    return tuple(None if value is None else value * 1000 for value in pair)  # type: ignore[return-value]


def _number(text: str) -> tuple[int, str]:
    return (int(text), "") if text.isdigit() else (1 << 30, text)


def render(rows: Sequence[ShardRow], scrape_: Scrape, interval_s: float) -> str:
    """Return the view as text: one block per shard."""
    lines = [f"raytrade status --watch   every {interval_s:g} s   "
             f"{time.strftime('%H:%M:%S')}" + (f"   unreachable: {', '.join(scrape_.failed)}"
                                              if scrape_.failed else "")]
    if not rows:
        lines.append("no shard metrics yet (the actors report about once a second)")
    for row in rows:
        lag = "?" if row.lag_events is None else str(row.lag_events)
        lines.append(f"shard {row.shard:>3}  {row.orders_per_s:>10,.0f} orders/s  "
                     f"{row.rejects_per_s:>8,.1f} rejects/s  restarts {row.restarts}  "
                     f"reader lag {lag} events")
        for stage, (p50, p99) in sorted(row.stages_ms.items()):
            lines.append(f"           {stage:<14} p50 {_show(p50):>9}  p99 {_show(p99):>9}")
    return "\n".join(lines)


def _show(milliseconds: float | None) -> str:
    return "-" if milliseconds is None else f"{milliseconds:.3f} ms"


def watch(targets: Callable[[], Sequence[str]], *, namespace: str | None = None,
          interval_s: float = 2.0, count: int | None = None, out: TextIO = sys.stdout,
          sleep: Callable[[float], Any] = time.sleep) -> int:
    """Print the view of the cluster in ``namespace`` every ``interval_s`` (``count`` times,
    or until interrupted)."""
    previous = scrape(targets())
    shown = 0
    while count is None or shown < count:
        sleep(interval_s)
        current = scrape(targets())
        text = render(shard_rows(previous, current, namespace), current, interval_s)
        if out.isatty():
            out.write("\x1b[H\x1b[2J")
        out.write(text + "\n")
        out.flush()
        previous = current
        shown += 1
    return 0
