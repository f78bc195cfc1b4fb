"""W3C trace context across the Ray hop, and the book actor's spans (OpenTelemetry API).

A gateway opens a span per RPC (`cluster.gateway.tracing`); the shard batcher captures each
request's context as a W3C ``traceparent`` string (`current_traceparent`), and the batch call
to the book actor carries the traceparents of the requests in it. One batch merges many
traces, so the book actor's span does not pick one of them as its parent: it links to each
(`span_contexts`), the OpenTelemetry way for a batch (as its messaging conventions do for a
batch of messages). The strings are written and read by OpenTelemetry's
`TraceContextTextMapPropagator`, never by hand.

`ShardTracing` is what the book actor's shell calls: a ``raytrade.shard/batch`` span per
batch, and inside it a ``raytrade.journal/append`` span around the write-ahead append (and
its fsync). The shell gets a `Tracer` through its ``tracer_factory``, like its other
collaborators, so tests give it the SDK's tracer with an in-memory exporter; the pure cores
(`actors.core`) never trace.

Only a process that traces imports this module (importing OpenTelemetry costs tens of ms):
`actors.book_actor` imports it when it is given a tracer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "BATCH_SPAN",
    "JOURNAL_SPAN",
    "PROPAGATOR",
    "ShardTracing",
    "current_traceparent",
    "span_contexts",
]

PROPAGATOR: Final = TraceContextTextMapPropagator()
"""Writes and reads the W3C ``traceparent`` and ``tracestate`` headers."""
TRACEPARENT: Final = "traceparent"
BATCH_SPAN: Final = "raytrade.shard/batch"
JOURNAL_SPAN: Final = "raytrade.journal/append"


def current_traceparent() -> str | None:
    """Return the W3C ``traceparent`` of the current span, or None if no span is current."""
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier)
    return carrier.get(TRACEPARENT)


def span_contexts(traceparents: Iterable[str]) -> list[SpanContext]:
    """Return the span contexts the ``traceparent`` strings name (invalid ones left out)."""
    found: list[SpanContext] = []
    for traceparent in traceparents:
        context = PROPAGATOR.extract({TRACEPARENT: traceparent}, context=Context())
        span_context = trace.get_current_span(context).get_span_context()
        if span_context.is_valid:
            found.append(span_context)
    return found


class ShardTracing:
    """The spans of one shard's book actor: per batch, and its journal append inside."""

    def __init__(self, tracer: Tracer, shard_id: int) -> None:
        self.tracer = tracer
        self.shard_id = shard_id

    @contextmanager
    def batch(self, commands: int, origin: str, traceparents: Sequence[str]
              ) -> Iterator[Span]:
        """Open the batch's span (current while the batch runs), linked to each request.

        A root span of its own trace (CONSUMER: it takes a batch others sent), with the
        shard, the number of commands and the origin; the shell adds the events and their
        sequence range. An exception ends it with an error status and the exception recorded.
        """
        attributes: dict[str, str | int] = {"raytrade.shard": self.shard_id,
                                            "raytrade.commands": commands}
        if origin:
            attributes["raytrade.origin"] = origin
        links = [Link(context) for context in span_contexts(traceparents)]
        with self.tracer.start_as_current_span(BATCH_SPAN, context=Context(),
                                               kind=SpanKind.CONSUMER, links=links,
                                               attributes=attributes) as span:
            yield span

    @contextmanager
    def journal(self, first_seq: int, last_seq: int, commands: int) -> Iterator[Span]:
        """Open the journal append's span, a child of the current batch span."""
        with self.tracer.start_as_current_span(
            JOURNAL_SPAN, attributes={"raytrade.shard": self.shard_id,
                                      "raytrade.commands": commands,
                                      "raytrade.first_seq": first_seq,
                                      "raytrade.last_seq": last_seq},
        ) as span:
            yield span
