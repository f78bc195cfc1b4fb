"""One gateway: a ``grpc.aio`` server with the trading, admin, health and reflection services.

`GatewayServer` is what the Ray actor shell (`actors.gateway_actor.GatewayActor`) runs in its
event loop; `GatewayServerFactory` is the picklable recipe the shell receives, so the actor
layer needs nothing from this package. The server can also run outside Ray for tests of its
gRPC surface (it only needs the shards' actors to be reachable for orders).

Transport settings applied here:

* TLS from the configured PEM files, with client certificates required when a client CA is
  configured (mutual TLS); without TLS the configuration only allows a loopback host unless
  told otherwise (`GatewayConfig`);
* message size limits both ways, a cap on concurrent calls (beyond it gRPC answers
  RESOURCE_EXHAUSTED), keepalive pings so dead clients free their streams;
* ``SO_REUSEPORT`` off, so a second process cannot silently share the port (a restarted
  gateway's predecessor may still be alive for a moment); a port that is taken raises
  `PortInUseError` naming ``host:port``, any other failure to bind or to read the TLS files
  `GatewayStartError` (both from `protocols.errors`);
* request bodies decoded by decoders that cannot raise, so an undecodable body is
  INVALID_ARGUMENT with a fixed message (`cluster.gateway.service.add_to_server`);
* reflection that also answers for a service's methods (`ReflectionPool`), so
  ``grpcurl describe raytrade.v1.TradingService.SubmitOrder`` works.

With traces configured (``ClusterConfig.traces``, `cluster.tracing`), a `TracingInterceptor`
runs each unary RPC in a server span of the client's trace, and the shard batchers carry the
requests' trace contexts to the books; off, neither is installed.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cluster import tracing
from cluster.config import ClusterConfig, ShardMap
from cluster.gateway.auth import TokenRegistry
from cluster.gateway.config import GatewayConfig
from cluster.gateway.core import GatewayCore
from cluster.gateway.metrics import GatewayMetrics, MetricsInterceptor
from cluster.gateway.service import AdminService, TradingService, add_to_server
from protocols.convert import Converter
from protocols.errors import GatewayStartError, PortInUseError
from protocols.generated import trading_pb2 as pb
from protocols.messages import Instrument

log = logging.getLogger(__name__)

TRADING_SERVICE = pb.DESCRIPTOR.services_by_name["TradingService"].full_name
ADMIN_SERVICE = pb.DESCRIPTOR.services_by_name["AdminService"].full_name


class ReflectionPool:
    """Give server reflection the default descriptor pool, finding methods' files too.

    grpcio-reflection answers ``file_containing_symbol`` with the pool's
    ``FindFileContainingSymbol``, and protobuf's upb pool finds messages, fields, enums and
    services there but not a service's methods (grpc/grpc#34743): a method-level
    ``grpcurl describe`` answered "Symbol not found". This looks a method up by its own name
    and answers with its service's file; everything else goes to the pool unchanged.
    """

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def FindFileContainingSymbol(self, symbol: str) -> Any:  # noqa: N802 (the pool's API)
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            return self._pool.FindMethodByName(symbol).containing_service.file


def server_credentials(config: GatewayConfig) -> grpc.ServerCredentials | None:
    """Return TLS credentials from the configured files, or None without TLS."""
    tls = config.tls
    if tls is None:
        return None
    try:
        key = Path(tls.private_key).read_bytes()
        certificate = Path(tls.certificate).read_bytes()
        client_ca = Path(tls.client_ca).read_bytes() if tls.client_ca else None
    except OSError as error:
        raise GatewayStartError(f"cannot read TLS files: {error}") from error
    return grpc.ssl_server_credentials(
        [(key, certificate)],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def bind_error(host: str, port: int) -> GatewayStartError:
    """Return the error for a gateway that could not bind ``host:port``, saying why."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds
            probe.bind(sockaddr)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            return PortInUseError(f"gateway port {address} is already in use by another process")
        return GatewayStartError(f"gateway cannot bind {address}: {error.strerror or error}")
    return GatewayStartError(f"gateway cannot bind {address}")


def channel_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    """Return the gRPC options both ends use: message limits and keepalive."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ]


def add_services(
    server: grpc.aio.Server,
    trading: TradingService,
    admin: AdminService,
    health_servicer: health.aio.HealthServicer,
) -> None:
    """Register the trading, admin, health and reflection services on ``server``.

    The gateway's own services go through `cluster.gateway.service.add_to_server`, not the
    generated ``add_*_to_server``: those decoders raise on an undecodable body, which gRPC
    answers UNKNOWN with the exception's text.
    """
    add_to_server(trading, TRADING_SERVICE, server)
    add_to_server(admin, ADMIN_SERVICE, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [TRADING_SERVICE, ADMIN_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME],
        server,
        pool=ReflectionPool(descriptor_pool.Default()),
    )


class GatewayServer:
    """Serve raytrade's gRPC API from the current event loop."""

    def __init__(
        self,
        name: str,
        config: GatewayConfig,
        *,
        cluster: ClusterConfig,
        instruments: Sequence[Instrument],
        pins: dict[str, int],
        data_dir: str,
        supervision_trees: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.config = config
        shard_map = ShardMap(cluster.shards, pins)
        self.core = GatewayCore(
            name,
            config,
            namespace=cluster.namespace,
            shard_map=shard_map,
            instruments=instruments,
            data_dir=data_dir,
            client_order_id_window=cluster.client_order_id_window,
        )
        self.converter = Converter(
            instruments, {i.symbol: shard_map.shard_of(i.symbol) for i in instruments}
        )
        self.tokens = TokenRegistry(config.tokens)
        self.supervision_trees = list(supervision_trees)
        """The actors running the supervision trees whose supervisors GetStatus reports."""
        self.health = health.aio.HealthServicer()
        self.metrics = GatewayMetrics(name)
        self.metered = cluster.metrics
        if self.metered:
            self.core.observe_batches(self.metrics)
            self.metrics.follow(self.core.stats)
        self.interceptors: list[grpc.aio.ServerInterceptor] = []
        tracer_factory = tracing.tracer_factory(cluster, "raytrade.gateway")
        self.traced = tracer_factory is not None
        if tracer_factory is not None:
            # imported only here: OpenTelemetry loads in a process that traces, not in others
            from actors.tracing import current_traceparent
            from cluster.gateway.tracing import TracingInterceptor

            self.interceptors.append(TracingInterceptor(tracer_factory(), name))
            self.core.trace_batches(current_traceparent)
        if self.metered:
            self.interceptors.append(MetricsInterceptor(self.metrics))
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self.failure: str | None = None

    async def start(self, subscriber: Callable[[int], Any]) -> int:
        """Follow the shards, then bind and serve; return the bound port."""
        try:
            await self.core.start(subscriber)
            self.core.on_health(self._set_health)
            server = grpc.aio.server(
                options=[*channel_options(self.config.max_message_bytes), ("grpc.so_reuseport", 0)],
                maximum_concurrent_rpcs=self.config.max_concurrent_rpcs,
                interceptors=self.interceptors,
            )
            add_services(
                server,
                TradingService(self.core, self.tokens, self.converter, self.config),
                AdminService(self.core, self.tokens, self.converter, self.config,
                             lambda: self.supervision_trees),
                self.health,
            )
            port = self._bind(server, server_credentials(self.config))
            await server.start()
            self.server = server
            self.port = port
            if self.config.metrics_port is not None and self.metered:
                self.metrics.serve(self.config.host, self.config.metrics_port)
            await self._apply_health(self.core.serving)
            log.info("gateway %s serving on %s:%d (%s)", self.name, self.config.host, port,
                     "TLS" if self.config.tls else "plaintext")
            return self.port
        except Exception as error:
            self.failure = f"{type(error).__name__}: {error}"
            log.exception("gateway %s failed to start", self.name)
            await self.core.stop()
            raise

    def _bind(self, server: grpc.aio.Server, credentials: grpc.ServerCredentials | None) -> int:
        address = self.config.address
        try:
            if credentials is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, credentials)
        except RuntimeError:
            port = 0
        if port == 0:  # gRPC says only "failed to bind": ask the OS why
            raise bind_error(self.config.host, self.config.port)
        return int(port)

    def _set_health(self, serving: bool) -> None:
        self.core.spawn(self._apply_health(serving))

    async def _apply_health(self, serving: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for service in ("", TRADING_SERVICE, ADMIN_SERVICE):
            await self.health.set(service, status)

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop taking calls, let those in progress finish for ``grace_s``, then stop."""
        await self.health.enter_graceful_shutdown()
        if self.server is not None:
            await self.server.stop(self.config.grace_s if grace_s is None else grace_s)
        self.metrics.stop()
        await self.core.stop()
        if self.traced:
            await asyncio.to_thread(tracing.force_flush)

    def on_events(self, shard: int, batches: Sequence[tuple[int, int, bytes]]) -> int:
        """Take a shard's pushed event batches."""
        return self.core.on_events(shard, batches)

    def offset(self) -> int:
        """Return the gateway's position over all shards; raise if it failed."""
        if self.failure is not None:
            raise RuntimeError(f"gateway {self.name} failed: {self.failure}")
        return self.core.offset()

    def status(self) -> dict[str, Any]:
        """Return the address, health and counters."""
        return {
            "name": self.name,
            "address": f"{self.config.host}:{self.port}",
            "tls": self.config.tls is not None,
            "mutual_tls": bool(self.config.tls and self.config.tls.client_ca),
            "serving": self.core.serving,
            "failure": self.failure,
            "metrics_port": self.metrics.port or None,
            **self.core.stats(),
        }


class GatewayServerFactory:
    """Build a `GatewayServer` inside the gateway actor's process (picklable)."""

    def __init__(
        self,
        config: GatewayConfig,
        cluster: ClusterConfig,
        instruments: Sequence[Instrument],
        pins: dict[str, int],
        supervision_trees: Sequence[str] = (),
    ) -> None:
        self.config = config
        self.cluster = cluster
        self.instruments = list(instruments)
        self.pins = dict(pins)
        self.data_dir = str(Path(cluster.data_dir).resolve())
        self.supervision_trees = list(supervision_trees)

    def __call__(self, name: str) -> GatewayServer:
        return GatewayServer(
            name,
            self.config,
            cluster=self.cluster,
            instruments=self.instruments,
            pins=self.pins,
            data_dir=self.data_dir,
            supervision_trees=self.supervision_trees,
        )
