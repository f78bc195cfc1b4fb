"""OpenTelemetry traces of the order path: which exporters, and one tracer provider per process.

What is traced::

    raytrade.gateway/<Method>      SERVER span of each unary RPC of the gateway's services;
                                   its parent is the client's W3C traceparent from the gRPC
                                   metadata, or none (a new trace)   cluster.gateway.tracing
    raytrade.shard/batch           CONSUMER span of each batch in the book actor, with a link
                                   to the span of every request in it (one batch merges many
                                   traces)                           actors.tracing
      raytrade.journal/append      the write-ahead append and its fsync, a child of the batch

The shard batchers carry each request's traceparent to the book (`cluster.gateway.batching`),
and the gateway's log lines with fields get ``trace_id``/``span_id`` (`cluster.logs`).

Off by default. `ClusterConfig.traces` switches it for a whole cluster, as ``metrics`` does:

``""``        follow ``OTEL_TRACES_EXPORTER`` of the process that starts the cluster (unset or
              ``none``: off; ``OTEL_SDK_DISABLED=true``: off);
``none``      off;
``console``   each process writes its spans to stdout (an actor's: Ray's worker log);
``file``      JSON lines, one file per process, under ``<data_dir>/traces``;
``otlp``      OTLP to a collector: needs ``opentelemetry-exporter-otlp-proto-grpc`` (or
              ``-proto-http`` with ``OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf``), neither of
              which raytrade installs;
any other     name of an installed ``opentelemetry_traces_exporter`` entry point (how
              OpenTelemetry's own auto-configuration finds exporters).

Several may be given, comma separated, as in ``OTEL_TRACES_EXPORTER``. `resolve` makes the
setting explicit once, where the cluster starts (`cluster.edge.wiring.start_cluster`), so every
actor on every node exports as the starting process decided, and a missing exporter fails
there, naming the package to install (`ConfigError`), instead of in every actor. The
exporters' own settings stay OpenTelemetry's standard environment variables, which each
process reads (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``,
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``): on a cluster of several nodes, give them
to each node's ``ray start``.

Each process gets one `TracerProvider` per exporter setting (`TracerFactory`), with a
`BatchSpanProcessor` per exporter: spans leave from a background thread every few seconds
(``OTEL_BSP_SCHEDULE_DELAY``, 5 s), so a process that is killed loses its last few seconds of
spans. They are raytrade's own providers, not OpenTelemetry's global one: several gateways
of one test process share them, and nothing else in the process is traced by accident.

OpenTelemetry's SDK is imported only by a process that traces (it costs ~0.1 s of start-up).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec

from cluster.config import ClusterConfig
from protocols.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

__all__ = [
    "FILE_EXPORTER",
    "TRACES_ENV",
    "TRACES_FOLDER",
    "TracerFactory",
    "exporter_names",
    "force_flush",
    "resolve",
    "tracer_factory",
]

TRACES_ENV: Final = "OTEL_TRACES_EXPORTER"
"""OpenTelemetry's standard variable naming the traces exporters (read for ``traces = ""``)."""
FILE_EXPORTER: Final = "file"
"""raytrade's exporter name for JSON lines under ``<data_dir>/traces`` (the SDK's console
exporter, one compact line per span, into a file per process)."""
TRACES_FOLDER: Final = "traces"
"""The folder of the data dir the ``file`` exporter writes to."""
ENTRY_POINTS: Final = "opentelemetry_traces_exporter"
"""The entry-point group in which installed packages register their traces exporters."""
OFF: Final = "none"

_PACKAGES: Final = {
    "otlp_proto_grpc": "opentelemetry-exporter-otlp-proto-grpc",
    "otlp_proto_http": "opentelemetry-exporter-otlp-proto-http",
    "zipkin_json": "opentelemetry-exporter-zipkin-json",
    "zipkin_proto": "opentelemetry-exporter-zipkin-proto-http",
}
_OTLP_BY_PROTOCOL: Final = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}


def exporter_names(setting: str, environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Return the exporters ``setting`` names; () when tracing is off.

    ``""`` reads ``OTEL_TRACES_EXPORTER`` from ``environ`` (this process's environment).
    """
    environ = os.environ if environ is None else environ
    if not setting.strip():
        if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return ()
        setting = environ.get(TRACES_ENV, "")
    names = tuple(dict.fromkeys(name.strip().lower() for name in setting.split(",")
                                if name.strip()))
    if not names or names == (OFF,):
        return ()
    if OFF in names:
        raise ConfigError(f"traces {setting!r}: 'none' cannot be combined with an exporter")
    return names


def _entry_point_name(name: str, environ: Mapping[str, str]) -> str:
    """Return the entry point of exporter ``name``: ``otlp`` by the configured OTLP protocol,
    as OpenTelemetry's auto-configuration picks it."""
    if name != "otlp":
        return name
    protocol = (environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc").strip()
    try:
        return _OTLP_BY_PROTOCOL[protocol]
    except KeyError:
        raise ConfigError(f"OTLP protocol {protocol!r}: use one of "
                          f"{', '.join(_OTLP_BY_PROTOCOL)}") from None


def _exporter_class(name: str, environ: Mapping[str, str]) -> Any:
    """Load the class of an installed exporter; raise `ConfigError` naming what to install."""
    entry_name = _entry_point_name(name, environ)
    found = list(entry_points(group=ENTRY_POINTS, name=entry_name))
    if not found:
        package = _PACKAGES.get(entry_name)
        hint = (f"install {package} (pip install {package})" if package else
                f"no installed package registers {entry_name!r} in {ENTRY_POINTS}")
        raise ConfigError(f"traces exporter {name!r} is not installed: {hint}")
    return found[0].load()


def resolve(config: ClusterConfig, environ: Mapping[str, str] | None = None) -> ClusterConfig:
    """Return ``config`` with ``traces`` explicit (``"none"`` when off), every exporter checked.

    Raise `ConfigError` for an exporter that is not installed (naming its package).
    """
    environ = os.environ if environ is None else environ
    names = exporter_names(config.traces, environ)
    for name in names:
        if name != FILE_EXPORTER:
            _exporter_class(name, environ)
    setting = ",".join(names) or OFF
    return config if setting == config.traces else msgspec.structs.replace(config,
                                                                           traces=setting)


class TracerFactory:
    """Make a `Tracer` of instrumentation scope ``scope`` in the process that calls it.

    Picklable (the wiring hands one to each actor): the provider and its exporters are made
    in the actor's process, on the first call, once per process.
    """

    def __init__(self, exporters: tuple[str, ...], directory: str, scope: str) -> None:
        self.exporters = exporters
        self.directory = directory
        """Where the ``file`` exporter writes (``<data_dir>/traces``)."""
        self.scope = scope

    def __call__(self) -> Tracer:
        return _provider(self.exporters, self.directory).get_tracer(self.scope)


def tracer_factory(config: ClusterConfig, scope: str) -> TracerFactory | None:
    """Return the factory of ``scope``'s tracer under ``config.traces``; None when off."""
    names = exporter_names(config.traces)
    if not names:
        return None
    return TracerFactory(names, str(Path(config.data_dir).resolve() / TRACES_FOLDER), scope)


_providers: dict[tuple[tuple[str, ...], str], TracerProvider] = {}
_lock = threading.Lock()


def _provider(exporters: tuple[str, ...], directory: str) -> TracerProvider:
    key = (exporters, directory)
    with _lock:
        provider = _providers.get(key)
        if provider is None:
            provider = _providers[key] = _new_provider(exporters, directory)
        return provider


def _new_provider(exporters: tuple[str, ...], directory: str) -> TracerProvider:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_SERVICE_NAME, if set, names the service; Resource.create reads it (and
    # OTEL_RESOURCE_ATTRIBUTES) when the attributes given here do not
    attributes: dict[str, str | int] = {"process.pid": os.getpid()}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes[SERVICE_NAME] = "raytrade"
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in exporters:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name, directory)))
    return provider


def _exporter(name: str, directory: str) -> SpanExporter:
    if name == FILE_EXPORTER:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        class JsonLinesExporter(ConsoleSpanExporter):
            """The console exporter into a file of its own, closed at shutdown."""

            def shutdown(self) -> None:
                super().shutdown()
                self.out.close()

        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        # one file per process, so lines of several processes never interleave; the host
        # name too, as a shared data dir serves several nodes
        out = (folder / f"{socket.gethostname()}-{os.getpid()}.jsonl").open(
            "a", encoding="utf-8")
        return JsonLinesExporter(out=out, formatter=_json_line)
    exporter: SpanExporter = _exporter_class(name, os.environ)()
    return exporter


def _json_line(span: ReadableSpan) -> str:
    return f"{span.to_json(indent=None)}\n"


def force_flush(timeout_s: float = 5.0) -> None:
    """Export every span this process has ended so far (a gateway does it when it stops)."""
    with _lock:
        providers = list(_providers.values())
    for provider in providers:
        provider.force_flush(int(timeout_s * 1000))
