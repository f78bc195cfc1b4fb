"""Metrics kept in an actor's own memory and handed to an exporter about once a second.

A shell records what a batch did (a handful of dictionary updates per batch, never a call per
order) into a `Meter`; `Meter.flush_due` hands the accumulated deltas to the injected
`MetricsExporter` when ``flush_every_s`` has passed (the Ray one, `cluster.edge.handles`, makes
the ``ray.util.metrics`` calls; tests pass a list). Every name must be declared in
`protocols.metrics`, with its labels in order: a typo fails at once, not in a dashboard.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

import msgspec

from protocols.metrics import BY_NAME, MetricSpec

Labels = tuple[str, ...]


class MeterReading(msgspec.Struct, frozen=True, kw_only=True):
    """What a meter gathered since its last flush."""

    counters: dict[str, dict[Labels, float]]
    """Increments, by metric and label values."""
    gauges: dict[str, dict[Labels, float]]
    """Latest values, by metric and label values."""
    observations: dict[str, dict[Labels, list[float]]]
    """Histogram observations, by metric and label values (at most `Meter.max_observations`
    per metric and labels; the rest are dropped and counted in ``dropped``)."""
    dropped: int = 0


class MetricsExporter(Protocol):
    """Where a meter's readings go (Ray's metrics, in the cluster)."""

    def export(self, reading: MeterReading) -> None:
        """Record a reading; raise nothing the caller must handle (log and go on)."""
        ...


class Meter:
    """Accumulate counters, gauges and histogram observations; flush them now and then."""

    def __init__(
        self,
        exporter: MetricsExporter | None,
        *,
        flush_every_s: float = 1.0,
        max_observations: int = 2_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.exporter = exporter
        self.flush_every_s = flush_every_s
        self.max_observations = max_observations
        self.clock = clock
        self._last_flush: float | None = None  # never flushed: the first `due` is True
        self._counters: dict[str, dict[Labels, float]] = {}
        self._gauges: dict[str, dict[Labels, float]] = {}
        self._observations: dict[str, dict[Labels, list[float]]] = {}
        self._dropped = 0

    @staticmethod
    def _check(name: str, kind: str, labels: Labels) -> MetricSpec:
        spec = BY_NAME.get(name)
        if spec is None or spec.kind != kind or len(spec.labels) != len(labels):
            raise KeyError(f"{name} with {len(labels)} label(s) is not a declared {kind} "
                           f"(protocols/metrics.py)")
        return spec

    def count(self, name: str, labels: Labels, value: float = 1.0) -> None:
        """Add ``value`` to a counter."""
        series = self._counters.get(name)
        if series is None:
            self._check(name, "counter", labels)
            series = self._counters[name] = {}
        series[labels] = series.get(labels, 0.0) + value

    def set(self, name: str, labels: Labels, value: float) -> None:
        """Set a gauge."""
        series = self._gauges.get(name)
        if series is None:
            self._check(name, "gauge", labels)
            series = self._gauges[name] = {}
        series[labels] = value

    def observe(self, name: str, labels: Labels, value: float) -> None:
        """Record one histogram observation."""
        series = self._observations.get(name)
        if series is None:
            self._check(name, "histogram", labels)
            series = self._observations[name] = {}
        values = series.get(labels)
        if values is None:
            values = series[labels] = []
        if len(values) < self.max_observations:
            values.append(value)
        else:
            self._dropped += 1

    def count_each(self, name: str, labelled: Sequence[tuple[Labels, float]]) -> None:
        """Add several counter increments at once."""
        for labels, value in labelled:
            self.count(name, labels, value)

    def reading(self) -> MeterReading:
        """Return what was gathered and start again (gauges keep their values)."""
        reading = MeterReading(counters=self._counters, gauges=dict(self._gauges),
                               observations=self._observations, dropped=self._dropped)
        self._counters, self._observations, self._dropped = {}, {}, 0
        return reading

    def due(self) -> bool:
        """Return whether ``flush_every_s`` has passed since the last flush (the first call:
        yes, so a restarted actor's gauges reach the exporter at once)."""
        if self._last_flush is None:
            return True
        return self.clock() - self._last_flush >= self.flush_every_s

    def flush_due(self) -> bool:
        """Hand the reading to the exporter if ``flush_every_s`` has passed; return whether."""
        if not self.due():
            return False
        self.flush()
        return True

    def flush(self, now: float | None = None) -> None:
        """Hand the reading to the exporter now (nothing without one)."""
        self._last_flush = self.clock() if now is None else now
        reading = self.reading()
        if self.exporter is not None:
            self.exporter.export(reading)
