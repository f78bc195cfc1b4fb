"""The shells' metrics: declared names only, accumulated per batch, flushed by time."""

from __future__ import annotations

import pytest

from actors.book_actor import BookActor
from actors.metering import Meter, MeterReading
from cluster.research.flow import FlowConfig, demo_instruments, generate_flow
from protocols.messages import OrderRejected, OrderType, Side, TimeInForce, decode_events, encode
from protocols.metrics import BY_NAME, METRICS, exported_name, series_names


class Readings:
    def __init__(self) -> None:
        self.readings: list[MeterReading] = []

    def export(self, reading: MeterReading) -> None:
        self.readings.append(reading)


def test_only_declared_metrics_with_their_labels_are_recorded() -> None:
    meter = Meter(None)
    with pytest.raises(KeyError, match="not a declared counter"):
        meter.count("raytrade_order_total", ("0",))  # a typo
    with pytest.raises(KeyError, match="label"):
        meter.count("raytrade_trades_total", ("0", "extra"))
    with pytest.raises(KeyError, match="histogram"):
        meter.observe("raytrade_trades_total", ("0",), 1.0)


def test_a_meter_flushes_once_at_first_then_every_period() -> None:
    now = [0.0]
    sink = Readings()
    meter = Meter(sink, flush_every_s=1.0, max_observations=3, clock=lambda: now[0])
    meter.count("raytrade_trades_total", ("0",), 2)
    assert meter.flush_due()  # the first: at once
    meter.count("raytrade_trades_total", ("0",), 3)
    meter.count("raytrade_trades_total", ("0",), 4)
    for value in range(5):
        meter.observe("raytrade_batch_commands", ("0",), value)
    now[0] = 0.5
    assert not meter.flush_due()
    now[0] = 1.0
    assert meter.flush_due()
    first, second = sink.readings
    assert first.counters == {"raytrade_trades_total": {("0",): 2.0}}
    assert second.counters == {"raytrade_trades_total": {("0",): 7.0}}  # deltas, not totals
    assert second.observations["raytrade_batch_commands"][("0",)] == [0, 1, 2]
    assert second.dropped == 2


def test_the_book_actor_counts_outcomes_by_reject_code() -> None:
    sink = Readings()
    instruments = demo_instruments(2)
    book = BookActor(0, instruments, metrics=sink)
    flow = generate_flow(instruments, FlowConfig(operations=2000, seed=5, accounts=4))
    events = decode_events(book.apply_batch(encode(flow)))
    symbol = instruments[0].symbol
    fok = type(flow[0])(account="x", client_order_id="fok", symbol=symbol, side=Side.BUY,
                        quantity=10**9 * instruments[0].lot_size, order_type=OrderType.MARKET,
                        time_in_force=TimeInForce.FOK, ts_ns=flow[-1].ts_ns + 1)
    events += decode_events(book.apply_batch(encode([fok])))
    book.meter.meter.flush()  # type: ignore[union-attr]
    counted = {labels: value for reading in sink.readings
               for labels, value in reading.counters.get("raytrade_orders_total", {}).items()}
    rejected: dict[tuple[str, ...], float] = {}
    for event in events:
        if isinstance(event, OrderRejected):
            key = ("0", event.request.name, "rejected", event.code.name)
            rejected[key] = rejected.get(key, 0) + 1
    assert rejected and {k: v for k, v in counted.items() if k[2] == "rejected"} == rejected
    accepted = sum(type(event).__name__ == "OrderAccepted" for event in events)
    assert counted[("0", "NEW_ORDER", "accepted", "NONE")] == accepted
    stages = {labels[1] for reading in sink.readings for labels in
              reading.observations.get("raytrade_stage_duration_seconds", {})}
    assert stages == {"gate_match", "journal", "publish"}


def test_every_declared_metric_is_named_with_its_unit() -> None:
    for spec in METRICS:
        assert spec.name.startswith("raytrade_") and BY_NAME[spec.name] is spec
        assert spec.name.endswith(("_total", "_seconds", "_events", "_commands", "_orders",
                                   "_up", "_levels", "_subscribers")), spec.name
        assert (spec.kind == "counter") == spec.name.endswith("_total"), spec.name
        assert bool(spec.buckets) == (spec.kind == "histogram"), spec.name
        assert exported_name(spec).startswith("ray_") == (spec.where == "ray")
        assert len(series_names(spec)) == (3 if spec.kind == "histogram" else 1)
