"""`raytrade status --watch`'s arithmetic: rates, quantiles and lag from two scrapes."""

# ruff: noqa: E501 - exposition text as Ray serves it, one sample a line

from __future__ import annotations

import io

import pytest

from cluster.edge.watch import Scrape, parse, quantile, render, shard_rows, watch

BEFORE = """
# TYPE ray_raytrade_orders_total counter
ray_raytrade_orders_total{shard="0",request="NEW_ORDER",outcome="accepted",code="NONE",WorkerId="a"} 100
ray_raytrade_orders_total{shard="0",request="NEW_ORDER",outcome="rejected",code="FOK_NOT_FILLABLE",WorkerId="a"} 4
ray_raytrade_orders_total{shard="1",request="NEW_ORDER",outcome="accepted",code="NONE",WorkerId="b"} 50
# TYPE ray_raytrade_stage_duration_seconds histogram
ray_raytrade_stage_duration_seconds_bucket{shard="0",stage="journal",le="0.001"} 10
ray_raytrade_stage_duration_seconds_bucket{shard="0",stage="journal",le="0.01"} 10
ray_raytrade_stage_duration_seconds_bucket{shard="0",stage="journal",le="+Inf"} 10
ray_raytrade_stage_duration_seconds_count{shard="0",stage="journal"} 10
ray_raytrade_stage_duration_seconds_sum{shard="0",stage="journal"} 0.005
# TYPE ray_raytrade_journal_position_events gauge
ray_raytrade_journal_position_events{shard="0"} 500
# TYPE ray_raytrade_reader_position_events gauge
ray_raytrade_reader_position_events{shard="0"} 480
# TYPE ignored_metric gauge
ignored_metric 1
"""

AFTER = """
# TYPE ray_raytrade_orders_total counter
ray_raytrade_orders_total{shard="0",request="NEW_ORDER",outcome="accepted",code="NONE",WorkerId="a"} 300
ray_raytrade_orders_total{shard="0",request="NEW_ORDER",outcome="rejected",code="FOK_NOT_FILLABLE",WorkerId="a"} 24
ray_raytrade_orders_total{shard="1",request="NEW_ORDER",outcome="accepted",code="NONE",WorkerId="c"} 10
# TYPE ray_raytrade_stage_duration_seconds histogram
ray_raytrade_stage_duration_seconds_bucket{shard="0",stage="journal",le="0.001"} 60
ray_raytrade_stage_duration_seconds_bucket{shard="0",stage="journal",le="0.01"} 110
ray_raytrade_stage_duration_seconds_bucket{shard="0",stage="journal",le="+Inf"} 110
ray_raytrade_stage_duration_seconds_count{shard="0",stage="journal"} 110
ray_raytrade_stage_duration_seconds_sum{shard="0",stage="journal"} 0.3
# TYPE ray_raytrade_journal_position_events gauge
ray_raytrade_journal_position_events{shard="0"} 900
# TYPE ray_raytrade_reader_position_events gauge
ray_raytrade_reader_position_events{shard="0"} 870
# TYPE ray_raytrade_actor_restarts_total counter
ray_raytrade_actor_restarts_total{supervisor="supervisor-shard-1",child="reader-1"} 2
ray_raytrade_actor_restarts_total{supervisor="supervisor-gateways",child="gateway-0"} 1
"""


def test_rates_quantiles_restarts_and_lag_between_two_scrapes() -> None:
    before = Scrape(at_s=10.0, samples=parse(BEFORE))
    after = Scrape(at_s=12.0, samples=parse(AFTER))
    rows = {row.shard: row for row in shard_rows(before, after)}
    assert set(rows) == {"0", "1"}
    zero = rows["0"]
    assert zero.orders_per_s == pytest.approx((200 + 20) / 2)  # accepted and rejected
    assert zero.rejects_per_s == pytest.approx(20 / 2)
    p50, p99 = zero.stages_ms["journal"]
    # 100 new observations: 50 up to 1 ms, 50 in (1, 10] ms
    assert p50 == pytest.approx(1.0)
    assert p99 == pytest.approx(1.0 + 9.0 * (99 - 50) / 50)
    assert zero.lag_events == 30 and zero.restarts == 0
    one = rows["1"]
    assert one.orders_per_s == pytest.approx(10 / 2)  # a new worker's counter: not negative
    assert one.restarts == 2 and one.lag_events is None
    text = render(list(rows.values()), after, 2.0)
    assert "shard   0" in text and "journal" in text and "reader lag 30" in text


def test_quantile_follows_prometheus_interpolation() -> None:
    assert quantile(0.5, {}) is None
    assert quantile(0.5, {1.0: 0.0, float("inf"): 0.0}) is None
    assert quantile(0.5, {1.0: 10.0, 2.0: 20.0, float("inf"): 20.0}) == pytest.approx(1.0)
    assert quantile(0.75, {1.0: 10.0, 2.0: 20.0, float("inf"): 20.0}) == pytest.approx(1.5)
    assert quantile(0.99, {1.0: 10.0, float("inf"): 20.0}) == pytest.approx(1.0)


def test_watch_refreshes_count_times_and_names_unreachable_targets() -> None:
    out = io.StringIO()
    assert watch(lambda: ["127.0.0.1:9"], interval_s=0.01, count=2, out=out,
                 sleep=lambda _: None) == 0
    text = out.getvalue()
    assert text.count("raytrade status --watch") == 2
    assert "unreachable: 127.0.0.1:9" in text and "no shard metrics yet" in text
