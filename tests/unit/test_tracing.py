"""Traces through the order path, collected by the OpenTelemetry SDK's in-memory exporter.

A client's W3C ``traceparent`` becomes the parent of the gateway's server span (a real
grpc.aio server on 127.0.0.1 and a real client); the shard batchers carry each request's
context to the batch call; the book actor's batch span links to every request's span and has
the journal append as its child; log lines with fields carry the trace id. And the exporter
settings: off by default, ``OTEL_TRACES_EXPORTER``, a missing exporter named with its package,
JSON lines per process for ``file``.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import pickle
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, Tracer, format_span_id, format_trace_id

from actors.book_actor import BookActor
from actors.core.shard import ShardState
from actors.tracing import BATCH_SPAN, JOURNAL_SPAN, current_traceparent, span_contexts
from cluster import tracing
from cluster.config import ClusterConfig, ConfigError, ShardMap
from cluster.gateway.auth import TokenRegistry, hash_token
from cluster.gateway.batching import MAX_TRACEPARENTS, ShardBatcher
from cluster.gateway.config import GatewayConfig, TokenEntry
from cluster.gateway.core import GatewayCore
from cluster.gateway.metrics import MetricsInterceptor
from cluster.gateway.server import TRADING_SERVICE, GatewayServer
from cluster.gateway.service import TradingService, add_to_server
from cluster.gateway.tracing import TracingInterceptor
from cluster.logs import configure_logging, log_event, trace_fields
from protocols.convert import Converter
from protocols.generated import trading_pb2 as pb
from protocols.generated import trading_pb2_grpc
from protocols.journal_format import CommandBatch
from protocols.messages import Command, Instrument, MassCancel, NewOrder, Side, encode

pytestmark = [pytest.mark.grpc, pytest.mark.usefixtures("restore_root_logger")]

INSTRUMENTS = [Instrument(symbol="AAPL")]
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
CLIENT_TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
ERIN = TokenEntry(sha256=hash_token("erin-secret"), name="erin", accounts=["erin"])


class Spans:
    """A tracer whose spans end up in memory, at once (a simple processor)."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer: Tracer = self.provider.get_tracer("raytrade.test")

    def finished(self, name: str | None = None) -> list[ReadableSpan]:
        return [span for span in self.exporter.get_finished_spans()
                if name is None or span.name == name]

    def one(self, name: str) -> ReadableSpan:
        (span,) = self.finished(name)
        return span


@pytest.fixture
def spans() -> Iterator[Spans]:
    found = Spans()
    yield found
    found.provider.shutdown()


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return format_trace_id(span.context.trace_id), format_span_id(span.context.span_id)


def buy(client_order_id: str) -> NewOrder:
    return NewOrder(account="erin", client_order_id=client_order_id, symbol="AAPL",
                    side=Side.BUY, quantity=1, price=100)


class MemoryLog:
    """A `ShardLog` in memory that can be told to fail."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, int, int]] = []
        """(first_seq, last_seq, commands) of each appended batch."""
        self.failure: Exception | None = None

    def load(self) -> tuple[ShardState | None, Iterator[CommandBatch]]:
        return None, iter(())

    def append(self, first_seq: int, last_seq: int, commands: Sequence[Command]) -> None:
        if self.failure is not None:
            raise self.failure
        self.batches.append((first_seq, last_seq, len(commands)))

    def sync(self) -> None:
        pass

    def save_snapshot(self, next_seq: int, state: ShardState) -> None:
        pass


# -------------------------------------------------------------------- the gateway's server span

ORDER_METHOD = f"/{TRADING_SERVICE}/SubmitOrder"
HEALTH_METHOD = "/grpc.health.v1.Health/Check"


async def _serve(interceptor: TracingInterceptor, behaviours: dict[str, Any]) -> tuple[Any, int]:
    """A grpc.aio server on 127.0.0.1 whose raw-bytes methods run ``behaviours``."""
    server = grpc.aio.server(interceptors=[interceptor])
    by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
    for path, behaviour in behaviours.items():
        service, _, method = path[1:].rpartition("/")
        by_service.setdefault(service, {})[method] = grpc.unary_unary_rpc_method_handler(
            behaviour)
    for service, handlers in by_service.items():
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service,
                                                                              handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def test_the_gateway_span_continues_the_clients_trace_and_is_current_in_the_handler(
    spans: Spans,
) -> None:
    """A real client's traceparent is the parent of ``raytrade.gateway/<Method>``; inside the
    handler that span is current (a log line with fields carries its trace id); a request
    without a traceparent starts a new trace; health checks are not traced."""
    stream = io.StringIO()
    configure_logging("json", logging.INFO, stream)
    seen: list[str | None] = []

    async def order(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        seen.append(current_traceparent())
        log_event(logging.getLogger("raytrade.test.gateway"), logging.INFO, "order_rejected",
                  "rejected %s", "c-1", account="erin")
        return request

    async def health(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        seen.append(current_traceparent())
        return request

    async def scenario() -> None:
        server, port = await _serve(TracingInterceptor(spans.tracer, "gateway-7"),
                                    {ORDER_METHOD: order, HEALTH_METHOD: health})
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary(ORDER_METHOD)
                assert await call(b"x", metadata=(("traceparent", CLIENT_TRACEPARENT),
                                                  ("tracestate", "vendor=1"))) == b"x"
                assert await call(b"y") == b"y"
                assert await channel.unary_unary(HEALTH_METHOD)(
                    b"z", metadata=(("traceparent", CLIENT_TRACEPARENT),)) == b"z"
        finally:
            await server.stop(None)

    asyncio.run(scenario())
    continued, fresh = spans.finished("raytrade.gateway/SubmitOrder")
    assert continued.kind is SpanKind.SERVER
    assert continued.parent is not None and continued.parent.is_remote
    assert (format_trace_id(continued.parent.trace_id),
            format_span_id(continued.parent.span_id)) == (CLIENT_TRACE, CLIENT_SPAN)
    trace_id, span_id = hex_ids(continued)
    assert trace_id == CLIENT_TRACE
    assert continued.context is not None
    assert continued.context.trace_state.get("vendor") == "1"
    assert dict(continued.attributes or {}) == {
        "rpc.system": "grpc", "rpc.service": TRADING_SERVICE, "rpc.method": "SubmitOrder",
        "raytrade.gateway": "gateway-7", "rpc.grpc.status_code": 0}
    assert continued.status.status_code is StatusCode.UNSET
    assert fresh.parent is None and hex_ids(fresh)[0] != CLIENT_TRACE
    assert seen[0] == f"00-{CLIENT_TRACE}-{span_id}-01"
    assert seen[2] is None  # the health check ran outside any span
    assert len(spans.finished()) == 2
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    logged = [line for line in lines if line["logger"] == "raytrade.test.gateway"]
    assert [(line["trace_id"], line["span_id"]) for line in logged[:1]] == [(trace_id, span_id)]
    assert logged[1]["trace_id"] == hex_ids(fresh)[0]


def test_the_gateway_span_is_an_error_only_when_the_server_failed(spans: Spans) -> None:
    """A refused request (INVALID_ARGUMENT) leaves the status unset; INTERNAL is an error, and
    an exception the handler raised is recorded on the span."""

    async def refuse(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no")
        return b""

    async def fail(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        raise RuntimeError("broken")

    async def scenario() -> None:
        server, port = await _serve(TracingInterceptor(spans.tracer, "gateway-7"),
                                    {f"/{TRADING_SERVICE}/Refuse": refuse,
                                     f"/{TRADING_SERVICE}/Fail": fail})
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                for method, code in (("Refuse", grpc.StatusCode.INVALID_ARGUMENT),
                                     ("Fail", grpc.StatusCode.UNKNOWN)):
                    with pytest.raises(grpc.aio.AioRpcError) as raised:
                        await channel.unary_unary(f"/{TRADING_SERVICE}/{method}")(b"x")
                    assert raised.value.code() is code
        finally:
            await server.stop(None)

    asyncio.run(scenario())
    refused = spans.one("raytrade.gateway/Refuse")
    assert refused.status.status_code is StatusCode.UNSET
    assert (refused.attributes or {})["rpc.grpc.status_code"] == 3
    failed = spans.one("raytrade.gateway/Fail")
    assert failed.status.status_code is StatusCode.ERROR
    assert (failed.attributes or {})["rpc.grpc.status_code"] == 2
    assert [event.name for event in failed.events] == ["exception"]


# -------------------------------------------------------------------- the shard batcher


class RecordingShard:
    """A book actor behind a send that records the traceparents of each batch."""

    def __init__(self) -> None:
        self.book = BookActor(0, INSTRUMENTS)
        self.sent: list[list[str] | None] = []
        self.gate: asyncio.Event | None = None

    async def send(self, payload: bytes, traceparents: Sequence[str] = ()) -> bytes:
        self.sent.append(list(traceparents) if traceparents else None)
        if self.gate is not None:
            await self.gate.wait()
        return self.book.apply_batch_with_ends(payload)


def test_the_batch_call_carries_each_requests_trace_context_once(spans: Spans) -> None:
    """Requests enqueued in their spans reach the shard in one batch with their distinct
    traceparents, in arrival order; a request outside any span adds none."""
    shard = RecordingShard()
    batcher = ShardBatcher(0, shard.send, max_in_flight=1)
    batcher.traceparent = current_traceparent
    expected: list[str] = []

    async def traced(name: str, orders: int) -> None:
        with spans.tracer.start_as_current_span(name):
            traceparent = current_traceparent()
            assert traceparent is not None
            expected.append(traceparent)
            await asyncio.gather(*(batcher.enqueue([buy(f"{name}-{i}")]) for i in range(orders)))

    async def scenario() -> None:
        shard.gate = asyncio.Event()
        first = asyncio.ensure_future(batcher.enqueue([buy("first")]))  # holds the shard
        await asyncio.sleep(0.01)
        rest = asyncio.gather(traced("a", 3), traced("b", 1),
                              batcher.enqueue([buy("untraced")]), traced("c", 2))
        await asyncio.sleep(0.01)  # everything waits behind the first batch
        shard.gate.set()
        await asyncio.gather(first, rest)

    asyncio.run(scenario())
    assert shard.sent == [None, expected]
    assert len(expected) == 3


def test_a_batch_carries_at_most_the_link_limit_of_trace_contexts(spans: Spans) -> None:
    """Past `MAX_TRACEPARENTS` distinct requests, the rest of a batch's contexts are left out."""
    shard = RecordingShard()
    batcher = ShardBatcher(0, shard.send)
    batcher.traceparent = current_traceparent

    async def traced(index: int) -> None:
        with spans.tracer.start_as_current_span(f"request-{index}"):
            await batcher.enqueue([buy(f"c{index}")])

    async def scenario() -> None:
        await asyncio.gather(*(traced(index) for index in range(MAX_TRACEPARENTS + 20)))

    asyncio.run(scenario())
    (sent,) = shard.sent
    assert sent is not None and len(sent) == len(set(sent)) == MAX_TRACEPARENTS


def test_without_tracing_the_batch_call_gets_the_payload_alone(spans: Spans) -> None:
    """Tracing off (no hook): nothing is captured, even inside a span, and the send is called
    with the payload only."""
    book = BookActor(0, INSTRUMENTS)
    calls: list[int] = []

    async def send(payload: bytes) -> bytes:  # a send that knows nothing of traces
        calls.append(len(payload))
        return book.apply_batch_with_ends(payload)

    batcher = ShardBatcher(0, send)

    async def scenario() -> None:
        with spans.tracer.start_as_current_span("request"):
            await batcher.enqueue([buy("c1")])

    asyncio.run(scenario())
    assert len(calls) == 1


# -------------------------------------------------------------------- the book actor's spans


def test_the_batch_span_links_to_every_request_and_holds_the_journal_append(
    spans: Spans,
) -> None:
    """``raytrade.shard/batch`` (CONSUMER, a root) links to each request's span context and
    says shard, commands, origin, events and sequence range; ``raytrade.journal/append`` is
    its child."""
    shard_log = MemoryLog()
    book = BookActor(3, INSTRUMENTS, log_factory=lambda: shard_log,
                     tracer_factory=lambda: spans.tracer)
    spans.exporter.clear()
    other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    book.apply_batch_with_ends(encode([buy("c1"), buy("c2")]), "gateway-0",
                               [CLIENT_TRACEPARENT, other, "not-a-traceparent"])
    batch = spans.one(BATCH_SPAN)
    journal = spans.one(JOURNAL_SPAN)
    assert batch.kind is SpanKind.CONSUMER and batch.parent is None
    assert [(format_trace_id(link.context.trace_id), format_span_id(link.context.span_id))
            for link in batch.links] == [(CLIENT_TRACE, CLIENT_SPAN),
                                         ("0af7651916cd43dd8448eb211c80319c",
                                          "b7ad6b7169203331")]
    ((first_seq, last_seq, _),) = shard_log.batches
    assert dict(batch.attributes or {}) == {
        "raytrade.shard": 3, "raytrade.commands": 2, "raytrade.origin": "gateway-0",
        "raytrade.events": last_seq - first_seq + 1, "raytrade.first_seq": first_seq,
        "raytrade.last_seq": last_seq}
    assert journal.parent is not None and batch.context is not None
    assert journal.parent.span_id == batch.context.span_id
    assert dict(journal.attributes or {}) == {
        "raytrade.shard": 3, "raytrade.commands": 2, "raytrade.first_seq": first_seq,
        "raytrade.last_seq": last_seq}
    assert journal.start_time is not None and batch.start_time is not None
    assert journal.end_time is not None and batch.end_time is not None
    assert batch.start_time <= journal.start_time <= journal.end_time <= batch.end_time


def test_a_batch_without_events_has_no_journal_span_and_a_failed_append_is_an_error(
    spans: Spans,
) -> None:
    """Nothing to journal: no append span. A journal that fails ends both spans in error,
    with the exception recorded."""
    shard_log = MemoryLog()
    book = BookActor(0, INSTRUMENTS, log_factory=lambda: shard_log,
                     tracer_factory=lambda: spans.tracer)
    spans.exporter.clear()
    book.apply([MassCancel(account="erin", client_order_id="m1")])
    assert [span.name for span in spans.finished()] == [BATCH_SPAN]
    assert (spans.one(BATCH_SPAN).attributes or {})["raytrade.events"] == 0
    spans.exporter.clear()
    shard_log.failure = OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        book.apply([buy("c1")])
    for name in (JOURNAL_SPAN, BATCH_SPAN):
        span = spans.one(name)
        assert span.status.status_code is StatusCode.ERROR
        assert [event.name for event in span.events] == ["exception"]


def test_span_contexts_come_from_the_w3c_propagator() -> None:
    """Valid traceparents become remote span contexts; anything else is left out."""
    (context,) = span_contexts([CLIENT_TRACEPARENT, "00-zz-yy-01",
                                "00-00000000000000000000000000000000-00f067aa0ba902b7-01"])
    assert context.is_remote and context.trace_flags.sampled
    assert format_trace_id(context.trace_id) == CLIENT_TRACE


# -------------------------------------------------------------------- through the shard batch


def test_a_clients_trace_reaches_the_shard_batch_and_the_journal_through_a_real_gateway(
    tmp_path: Path, spans: Spans,
) -> None:
    """Over real gRPC to the gateway's trading service, in-process shard: the client's trace
    is the gateway span's; the batch span links to the gateway span; the journal append is
    the batch's child; the reject line of the duplicate carries the client's trace id."""
    stream = io.StringIO()
    configure_logging("json", logging.INFO, stream)
    config = GatewayConfig(tokens=[ERIN])
    core = GatewayCore("gateway-7", config, namespace="unit", shard_map=ShardMap(1),
                       instruments=INSTRUMENTS, data_dir=str(tmp_path),
                       client_order_id_window=1000)
    shard_log = MemoryLog()
    book = BookActor(0, INSTRUMENTS, log_factory=lambda: shard_log,
                     tracer_factory=lambda: spans.tracer)
    spans.exporter.clear()

    async def send(payload: bytes, traceparents: Sequence[str] = ()) -> bytes:
        return book.apply_batch_with_ends(payload, "gateway-7", traceparents)

    core.batchers[0] = ShardBatcher(0, send)
    core.trace_batches(current_traceparent)
    trading = TradingService(core, TokenRegistry([ERIN]), Converter(INSTRUMENTS, {"AAPL": 0}),
                             config)
    request = pb.NewOrderRequest(client_order_id="c1", symbol="AAPL", side=pb.SIDE_BUY,
                                 order_type=pb.ORDER_TYPE_LIMIT, quantity=1, price=100)
    metadata = (("authorization", "Bearer erin-secret"), ("traceparent", CLIENT_TRACEPARENT))

    async def scenario() -> None:
        server = grpc.aio.server(interceptors=[TracingInterceptor(spans.tracer, "gateway-7")])
        add_to_server(trading, TRADING_SERVICE, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = trading_pb2_grpc.TradingServiceStub(channel)
                await stub.SubmitOrder(request, metadata=metadata)
                await stub.SubmitOrder(request, metadata=metadata)  # a duplicate: rejected
        finally:
            await server.stop(None)

    asyncio.run(scenario())
    gateway_spans = spans.finished("raytrade.gateway/SubmitOrder")
    batches = spans.finished(BATCH_SPAN)
    assert len(gateway_spans) == len(batches) == 2
    for gateway_span, batch in zip(gateway_spans, batches, strict=True):
        assert hex_ids(gateway_span)[0] == CLIENT_TRACE
        assert gateway_span.parent is not None
        assert format_span_id(gateway_span.parent.span_id) == CLIENT_SPAN
        (link,) = batch.links
        assert gateway_span.context is not None
        assert (link.context.trace_id, link.context.span_id) == (
            gateway_span.context.trace_id, gateway_span.context.span_id)
        assert (batch.attributes or {})["raytrade.origin"] == "gateway-7"
    journal = spans.finished(JOURNAL_SPAN)
    assert len(journal) == 2  # the reject is journaled too
    assert {span.parent.span_id for span in journal if span.parent is not None} == {
        batch.context.span_id for batch in batches if batch.context is not None}
    rejected = [json.loads(line) for line in stream.getvalue().splitlines()
                if '"order_rejected"' in line]
    assert [(line["trace_id"], line["span_id"]) for line in rejected] == [
        hex_ids(gateway_spans[1])]


def test_the_gateway_installs_tracing_only_when_traces_are_configured(tmp_path: Path) -> None:
    """``traces = "none"``: no tracing interceptor and no trace capture; ``console``: both,
    the tracing interceptor outside the metrics one."""

    def server(traces: str) -> GatewayServer:
        return GatewayServer("gateway-0", GatewayConfig(), instruments=INSTRUMENTS, pins={},
                             cluster=ClusterConfig(shards=1, traces=traces,
                                                   data_dir=str(tmp_path)),
                             data_dir=str(tmp_path))

    off = server("none")
    assert [type(each) for each in off.interceptors] == [MetricsInterceptor]
    assert all(batcher.traceparent is None for batcher in off.core.batchers)
    on = server("console")
    assert [type(each) for each in on.interceptors] == [TracingInterceptor, MetricsInterceptor]
    assert all(batcher.traceparent is current_traceparent for batcher in on.core.batchers)


# -------------------------------------------------------------------- logs


def test_log_lines_with_fields_carry_the_current_trace(spans: Spans) -> None:
    """Inside a span, `log_event` lines and ``extra=`` lines with fields get trace_id and
    span_id; outside any span they get neither."""
    stream = io.StringIO()
    configure_logging("json", logging.INFO, stream)
    log = logging.getLogger("raytrade.test.logs")
    log_event(log, logging.INFO, "before", "no span yet")
    with spans.tracer.start_as_current_span("rpc") as span:
        log_event(log, logging.INFO, "inside", "in a span", account="erin")
        log.error("internal error", extra={"fields": {"event": "internal_error"}})
        assert set(trace_fields()) == {"trace_id", "span_id"}
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    trace_id = format_trace_id(span.get_span_context().trace_id)
    span_id = format_span_id(span.get_span_context().span_id)
    assert [(line["event"], line.get("trace_id"), line.get("span_id")) for line in lines] == [
        ("before", None, None), ("inside", trace_id, span_id),
        ("internal_error", trace_id, span_id)]
    assert trace_fields() == {}


# -------------------------------------------------------------------- exporter settings


def test_traces_are_off_unless_configured_and_follow_otel_traces_exporter() -> None:
    """"" reads OTEL_TRACES_EXPORTER (unset or "none": off; OTEL_SDK_DISABLED wins); an
    explicit setting ignores it; names are deduplicated, "none" mixes with nothing."""
    assert tracing.exporter_names("", {}) == ()
    assert tracing.exporter_names("", {"OTEL_TRACES_EXPORTER": "none"}) == ()
    assert tracing.exporter_names("", {"OTEL_TRACES_EXPORTER": "console, file"}) == (
        "console", "file")
    assert tracing.exporter_names("", {"OTEL_TRACES_EXPORTER": "console",
                                       "OTEL_SDK_DISABLED": "true"}) == ()
    assert tracing.exporter_names("none", {"OTEL_TRACES_EXPORTER": "console"}) == ()
    assert tracing.exporter_names("file,file", {}) == ("file",)
    with pytest.raises(ConfigError, match="none"):
        tracing.exporter_names("none,console", {})
    resolved = tracing.resolve(ClusterConfig(), {"OTEL_TRACES_EXPORTER": "console"})
    assert resolved.traces == "console"
    assert tracing.resolve(ClusterConfig(), {}).traces == "none"
    assert tracing.tracer_factory(ClusterConfig(traces="none"), "raytrade.shard") is None


def test_an_exporter_that_is_not_installed_fails_naming_its_package() -> None:
    """OTLP is not installed here: the setting fails at once, naming what to install for the
    configured protocol; an unknown name says no package registers it."""
    with pytest.raises(ConfigError, match="opentelemetry-exporter-otlp-proto-grpc"):
        tracing.resolve(ClusterConfig(traces="otlp"), {})
    with pytest.raises(ConfigError, match="opentelemetry-exporter-otlp-proto-http"):
        tracing.resolve(ClusterConfig(traces="otlp"),
                        {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})
    with pytest.raises(ConfigError, match="no installed package registers 'jaeger'"):
        tracing.resolve(ClusterConfig(), {"OTEL_TRACES_EXPORTER": "jaeger"})


def test_the_file_exporter_writes_json_lines_per_process_under_the_data_dir(
    tmp_path: Path,
) -> None:
    """``file``: a picklable factory (as the wiring hands it to an actor) makes a tracer whose
    spans become one JSON object per line in ``<data_dir>/traces``."""
    factory = tracing.tracer_factory(ClusterConfig(traces="file", data_dir=str(tmp_path)),
                                     "raytrade.shard")
    assert factory is not None
    tracer = pickle.loads(pickle.dumps(factory))()
    with tracer.start_as_current_span(BATCH_SPAN, attributes={"raytrade.shard": 1}):
        pass
    tracing.force_flush()
    (path,) = (tmp_path / tracing.TRACES_FOLDER).glob("*.jsonl")
    (line,) = [json.loads(text) for text in path.read_text().splitlines()]
    assert line["name"] == BATCH_SPAN and line["attributes"] == {"raytrade.shard": 1}
    assert line["resource"]["attributes"]["service.name"] == "raytrade"
