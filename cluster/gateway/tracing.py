"""The gateway's server spans: a grpc.aio interceptor that continues the client's trace.

`TracingInterceptor` reads the W3C ``traceparent`` (and ``tracestate``) a client sent in the
call's metadata, with OpenTelemetry's `TraceContextTextMapPropagator`, and runs the handler
inside a SERVER span ``raytrade.gateway/<Method>`` whose parent is the client's span (a
request without one starts a new trace). The span is current while the handler runs, so the
shard batchers capture it for the batch call (`cluster.gateway.batching`) and the handler's
log lines with fields carry its ``trace_id`` (`cluster.logs`).

Attributes are OpenTelemetry's RPC conventions (``rpc.system``, ``rpc.service``,
``rpc.method``, ``rpc.grpc.status_code``) and ``raytrade.gateway``. As those conventions say
for a server, the status is an error only for the codes that mean the server failed
(``UNKNOWN``, ``INTERNAL``, ``UNAVAILABLE``, ...), not for a refused request
(``INVALID_ARGUMENT``, ``RESOURCE_EXHAUSTED``, ...).

Only unary methods of raytrade's own services are traced: they are the order path. The
streams (a span as long as a subscription, over events that are not commands) and the
health and reflection services are left alone.

The gateway installs it only when tracing is configured (`cluster.tracing`): off, an RPC
costs nothing for traces.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final

import grpc
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from actors.tracing import PROPAGATOR
from cluster.gateway.metrics import rpc_code

__all__ = ["SPAN_PREFIX", "TracingInterceptor"]

SPAN_PREFIX: Final = "raytrade.gateway/"
_HEADERS: Final = frozenset({"traceparent", "tracestate"})
_SERVER_ERRORS: Final = frozenset({
    grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS,
})


def _finish(span: Span, code: grpc.StatusCode, error: BaseException | None) -> None:
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code in _SERVER_ERRORS:
        span.set_status(Status(StatusCode.ERROR, code.name))
    if error is not None and not isinstance(error, (grpc.aio.AbortError, asyncio.CancelledError)):
        span.record_exception(error)


class TracingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Run each unary RPC of the gateway's services in a server span of the client's trace."""

    def __init__(self, tracer: Tracer, gateway: str) -> None:
        self.tracer = tracer
        self.gateway = gateway

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        full = str(handler_call_details.method)
        if handler is None or not full.startswith("/raytrade.") or handler.unary_unary is None:
            return handler
        service, _, method = full[1:].rpartition("/")
        carrier = {key: value for key, value in handler_call_details.invocation_metadata or ()
                   if key in _HEADERS}
        # from an empty context: a request without a traceparent starts a trace of its own
        parent = PROPAGATOR.extract(carrier, context=Context())
        name = SPAN_PREFIX + method
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method,
                      "raytrade.gateway": self.gateway}
        tracer = self.tracer
        inner = handler.unary_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            with tracer.start_as_current_span(
                name, context=parent, kind=SpanKind.SERVER, attributes=attributes,
                record_exception=False, set_status_on_exception=False,
            ) as span:
                error: BaseException | None = None
                try:
                    return await inner(request, context)
                except BaseException as failure:
                    error = failure
                    raise
                finally:
                    _finish(span, rpc_code(context, error), error)

        return grpc.unary_unary_rpc_method_handler(
            unary, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)
