"""Every metric raytrade exports, declared once: name (unit in the suffix), help, labels, buckets.

The shells record into these (`actors.metering.Meter`, flushed about once a second, never one
metric call per order); the pure cores know nothing of them. Two ways out, both Prometheus:

* the actors' metrics go through Ray's own per-node export (`ray.util.metrics`, wired in
  `cluster.edge.handles`), which prefixes every name with ``ray_``: ``raytrade_orders_total``
  is scraped as ``ray_raytrade_orders_total``; each also carries a ``namespace`` label (the
  raytrade cluster's Ray namespace) beside the ones declared here;
* each gateway serves its own on ``/metrics`` (prometheus-client, `cluster.gateway.metrics`),
  names as declared here.

`exported_name` gives the name Prometheus sees; the Grafana dashboard
(cluster/deploy/grafana/raytrade.json) uses only such names, which a test checks against a
real Prometheus scraping a running cluster.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

Kind = Literal["counter", "gauge", "histogram"]
Where = Literal["ray", "gateway"]

LATENCY_BUCKETS_S: Final = (
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0,
)
"""Seconds: 50 us (a batch's matching) to 5 s (a recovery, a stuck call)."""
BATCH_BUCKETS: Final = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000)
"""Commands or orders per batch."""


class MetricSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One metric: what it measures, in which unit, broken down by which labels."""

    name: str
    """Prometheus name, unit last (``_seconds``, ``_total`` for counters, ``_events``)."""
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    """Histogram bucket upper bounds (histograms only)."""
    where: Where = "ray"
    """Who exports it: the actors through Ray, or a gateway's own ``/metrics``."""


def _spec(name: str, kind: Kind, help: str, labels: tuple[str, ...] = (),
          buckets: tuple[float, ...] = (), where: Where = "ray") -> MetricSpec:
    return MetricSpec(name=name, kind=kind, help=help, labels=labels, buckets=buckets,
                      where=where)


METRICS: Final = tuple(
    sorted(
        (
            # ------------------------------------------------------------ a shard's book actor
            _spec("raytrade_orders_total", "counter",
                  "Requests a shard decided, by outcome (accepted or rejected) and reject code "
                  "(NONE when accepted); cancels and replaces count under their request kind.",
                  ("shard", "request", "outcome", "code")),
            _spec("raytrade_trades_total", "counter", "Trades a shard matched.", ("shard",)),
            _spec("raytrade_traded_quantity_total", "counter",
                  "Quantity traded (lots times lot size, as in the events).", ("shard",)),
            _spec("raytrade_commands_total", "counter", "Commands a shard applied.", ("shard",)),
            _spec("raytrade_batch_commands", "histogram",
                  "Commands per batch a shard applied.", ("shard",), BATCH_BUCKETS),
            _spec("raytrade_stage_duration_seconds", "histogram",
                  "Time a batch spent in a stage of the shard: gate_match (risk gate and "
                  "matching), journal (append, and fsync per the policy), publish (handing "
                  "events to the readers).", ("shard", "stage"), LATENCY_BUCKETS_S),
            _spec("raytrade_journal_position_events", "gauge",
                  "Sequence number of the last event a shard journaled.", ("shard",)),
            _spec("raytrade_open_orders", "gauge", "Orders resting in a symbol's book.",
                  ("shard", "symbol")),
            _spec("raytrade_book_levels", "gauge", "Price levels of a symbol's book, per side.",
                  ("shard", "symbol", "side")),
            _spec("raytrade_recovery_duration_seconds", "gauge",
                  "How long the actor's last start took to recover (snapshot and journal).",
                  ("shard", "actor")),
            _spec("raytrade_recovery_events", "gauge",
                  "Journal commands replayed by the actor's last start.", ("shard", "actor")),
            _spec("raytrade_snapshot_duration_seconds", "histogram",
                  "Time to take a shard snapshot (on the command path).", ("shard",),
                  LATENCY_BUCKETS_S),
            # ------------------------------------------------------------------ the readers
            _spec("raytrade_reader_position_events", "gauge",
                  "Last event a shard's reader folded (lag: the journal position minus this).",
                  ("shard",)),
            _spec("raytrade_reader_gaps_repaired_total", "counter",
                  "Times a reader missed pushed events and caught up from the journal.",
                  ("shard",)),
            # -------------------------------------------------------------- the supervisors
            _spec("raytrade_actor_restarts_total", "counter",
                  "Restarts a supervisor saw or made of a child.", ("supervisor", "child")),
            _spec("raytrade_escalations_total", "counter",
                  "Times a supervisor gave up on a subtree and escalated to its parent.",
                  ("supervisor",)),
            _spec("raytrade_children_up", "gauge", "Children a supervisor sees up.",
                  ("supervisor",)),
            # ------------------------------------------------------------------- a gateway
            _spec("raytrade_gateway_rpc_duration_seconds", "histogram",
                  "Time a gateway took to answer an RPC, by method (streams: until the "
                  "stream ended).", ("gateway", "method"), LATENCY_BUCKETS_S, "gateway"),
            _spec("raytrade_gateway_rpcs_total", "counter",
                  "RPCs a gateway answered, by method and gRPC status (RESOURCE_EXHAUSTED: "
                  "refused by the rate limit; INVALID_ARGUMENT: refused by validation).",
                  ("gateway", "method", "code"), (), "gateway"),
            _spec("raytrade_gateway_orders_total", "counter",
                  "Orders a gateway received in SubmitOrder and SubmitOrders calls.",
                  ("gateway",), (), "gateway"),
            _spec("raytrade_gateway_shard_call_duration_seconds", "histogram",
                  "Time of a gateway's batch call to a shard (the hop, the shard's work and "
                  "the way back).", ("gateway", "shard"), LATENCY_BUCKETS_S, "gateway"),
            _spec("raytrade_gateway_queue_duration_seconds", "histogram",
                  "Time a request waited in the gateway before its batch left for the shard.",
                  ("gateway", "shard"), LATENCY_BUCKETS_S, "gateway"),
            _spec("raytrade_gateway_batch_orders", "histogram",
                  "Commands per batch a gateway sent to a shard.", ("gateway", "shard"),
                  BATCH_BUCKETS, "gateway"),
            _spec("raytrade_gateway_stream_subscribers", "gauge",
                  "Open execution and market-data streams.", ("gateway", "stream"), (),
                  "gateway"),
            _spec("raytrade_gateway_shard_up", "gauge",
                  "1 while the gateway follows a shard's events, else 0.", ("gateway", "shard"),
                  (), "gateway"),
            _spec("raytrade_gateway_feed_position_events", "gauge",
                  "Last event of a shard the gateway's streams have.", ("gateway", "shard"),
                  (), "gateway"),
        ),
        key=lambda spec: spec.name,
    )
)
"""All of raytrade's metrics, by name."""

BY_NAME: Final = {spec.name: spec for spec in METRICS}

RAY_PREFIX: Final = "ray_"
"""What Ray's export puts before the name of every metric an actor records."""


def exported_name(spec: MetricSpec) -> str:
    """Return the name Prometheus sees for ``spec``."""
    return RAY_PREFIX + spec.name if spec.where == "ray" else spec.name


def series_names(spec: MetricSpec) -> tuple[str, ...]:
    """Return the series names Prometheus stores for ``spec`` (a histogram's three)."""
    name = exported_name(spec)
    if spec.kind == "histogram":
        return (f"{name}_bucket", f"{name}_sum", f"{name}_count")
    return (name,)
