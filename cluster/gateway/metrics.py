"""A gateway's own Prometheus metrics, served on ``/metrics`` (prometheus-client).

The metrics are the ``where="gateway"`` ones of `protocols.metrics`, in a registry of this
gateway's own (several gateways may share a process in tests). Three sources feed them:

* `MetricsInterceptor`, a grpc.aio server interceptor: every RPC's duration and gRPC status
  by method (rate-limit refusals are ``RESOURCE_EXHAUSTED``, validation ``INVALID_ARGUMENT``),
  orders received, open streams;
* the shard batchers (`GatewayMetrics` is their `cluster.gateway.batching.BatchObserver`):
  how long requests waited in the gateway, how long the call to the shard took, batch sizes;
* at scrape time, the gateway core's view of the shards (`GatewayMetrics.follow`): which
  shards it follows and how far its feeds are.

prometheus-client records an observation in about a microsecond under a lock, so these are
recorded as they happen: a gateway does per-RPC work anyway (protobuf, auth).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import grpc
import prometheus_client
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from protocols.metrics import BY_NAME, METRICS, MetricSpec

log = logging.getLogger(__name__)

_STREAMS = {"StreamExecutions": "executions", "StreamMarketData": "market_data"}
_ORDER_METHODS = {"SubmitOrder", "SubmitOrders"}


def _make(spec: MetricSpec, registry: CollectorRegistry) -> Any:
    if spec.kind == "counter":
        # prometheus-client adds _total itself
        return prometheus_client.Counter(spec.name.removesuffix("_total"), spec.help,
                                         spec.labels, registry=registry)
    if spec.kind == "gauge":
        return prometheus_client.Gauge(spec.name, spec.help, spec.labels, registry=registry)
    return prometheus_client.Histogram(spec.name, spec.help, spec.labels,
                                       buckets=spec.buckets, registry=registry)


class _FeedCollector(Collector):
    """The shards as the gateway core sees them, read when Prometheus scrapes."""

    def __init__(self, gateway: str, stats: Callable[[], dict[str, Any]]) -> None:
        self.gateway = gateway
        self.stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up_spec = BY_NAME["raytrade_gateway_shard_up"]
        position_spec = BY_NAME["raytrade_gateway_feed_position_events"]
        up = GaugeMetricFamily(up_spec.name, up_spec.help, labels=up_spec.labels)
        position = GaugeMetricFamily(position_spec.name, position_spec.help,
                                     labels=position_spec.labels)
        try:
            stats = self.stats()
            for shard, shard_up in enumerate(stats["shard_up"]):
                up.add_metric([self.gateway, str(shard)], 1.0 if shard_up else 0.0)
            for feed in stats["feeds"]:
                position.add_metric([self.gateway, str(feed["shard"])], feed["next_seq"] - 1)
        except Exception:  # read from another thread than the core's loop: skip a bad read
            log.debug("gateway %s: shard stats unreadable for this scrape", self.gateway,
                      exc_info=True)
        yield up
        yield position


class GatewayMetrics:
    """One gateway's metrics and, once `serve` is called, its ``/metrics`` endpoint."""

    def __init__(self, gateway: str) -> None:
        self.gateway = gateway
        self.registry = CollectorRegistry(auto_describe=True)
        self._metrics = {spec.name: _make(spec, self.registry)
                         for spec in METRICS if spec.where == "gateway"
                         and spec.name not in ("raytrade_gateway_shard_up",
                                               "raytrade_gateway_feed_position_events")}
        self.rpc_duration = self._metrics["raytrade_gateway_rpc_duration_seconds"]
        self.rpcs = self._metrics["raytrade_gateway_rpcs_total"]
        self.orders = self._metrics["raytrade_gateway_orders_total"].labels(gateway)
        self.streams = self._metrics["raytrade_gateway_stream_subscribers"]
        self.queue = self._metrics["raytrade_gateway_queue_duration_seconds"]
        self.shard_call = self._metrics["raytrade_gateway_shard_call_duration_seconds"]
        self.batch_orders = self._metrics["raytrade_gateway_batch_orders"]
        for stream in _STREAMS.values():
            self.streams.labels(gateway, stream).set(0)
        self._server: Any = None
        self.port = 0

    def follow(self, stats: Callable[[], dict[str, Any]]) -> None:
        """Report the shards through ``stats`` (the core's `GatewayCore.stats`) at scrape time."""
        self.registry.register(_FeedCollector(self.gateway, stats))

    def serve(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on ``host:port`` (0: any free port) in a thread; return the port."""
        self._server, _ = prometheus_client.start_http_server(port, addr=host,
                                                              registry=self.registry)
        self.port = int(self._server.server_port)
        log.info("gateway %s: metrics on http://%s:%d/metrics", self.gateway, host, self.port)
        return self.port

    def stop(self) -> None:
        """Stop serving ``/metrics``."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # ---------------------------------------------------------------- BatchObserver

    def now(self) -> float:
        return time.perf_counter()

    def sent(self, shard: int, commands: int, waited_s: Sequence[float]) -> None:
        label = str(shard)
        self.batch_orders.labels(self.gateway, label).observe(commands)
        queue = self.queue.labels(self.gateway, label)
        for waited in waited_s:
            queue.observe(waited)

    def answered(self, shard: int, call_s: float, failed: bool) -> None:
        self.shard_call.labels(self.gateway, str(shard)).observe(call_s)

    # ---------------------------------------------------------------- RPCs

    def rpc_done(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        """Record one finished RPC."""
        self.rpc_duration.labels(self.gateway, method).observe(seconds)
        self.rpcs.labels(self.gateway, method, code.name).inc()


def _method_name(full: str) -> str:
    return full.rsplit("/", 1)[-1]


def _order_count(request: Any) -> int:
    orders = getattr(request, "orders", None)
    return len(orders) if orders is not None else 1


def rpc_code(context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None
             ) -> grpc.StatusCode:
    """Return the status a finished RPC ended with (the handler's, or ``error``'s)."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED  # the client went away (or the deadline passed)
    if error is not None and not isinstance(error, grpc.aio.AbortError):
        return grpc.StatusCode.UNKNOWN
    return grpc.StatusCode.OK


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Time every RPC of the gateway's services and count it by status."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        full = str(handler_call_details.method)
        method = _method_name(full)
        if handler is None or not full.startswith("/raytrade."):  # health, reflection
            return handler
        metrics = self.metrics
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                started = time.perf_counter()
                if method in _ORDER_METHODS:
                    metrics.orders.inc(_order_count(request))
                error: BaseException | None = None
                try:
                    return await inner(request, context)
                except BaseException as failure:
                    error = failure
                    raise
                finally:
                    metrics.rpc_done(method, rpc_code(context, error),
                                     time.perf_counter() - started)

            return grpc.unary_unary_rpc_method_handler(
                unary, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream
            stream = _STREAMS.get(method, method)

            async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]
                                ) -> Any:
                started = time.perf_counter()
                gauge = metrics.streams.labels(metrics.gateway, stream)
                gauge.inc()
                error: BaseException | None = None
                try:
                    async for response in inner_stream(request, context):
                        yield response
                except BaseException as failure:
                    error = failure
                    raise
                finally:
                    gauge.dec()
                    metrics.rpc_done(method, rpc_code(context, error),
                                     time.perf_counter() - started)

            return grpc.unary_stream_rpc_method_handler(
                streaming, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return handler
