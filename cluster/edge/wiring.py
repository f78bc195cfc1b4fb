"""Where the system is wired together: which actors run, with which settings, under whom.

The supervision tree of a cluster, every actor named and detached in the cluster's namespace
(names in `cluster.edge.handles`)::

    supervisor                       root, one-for-one over the subtrees
    ├── supervisor-shard-k           per shard: book-k, reader-k (shard_strategy)
    └── supervisor-gateways          gateway-0, gateway-1, ... (when gateways are configured)

The supervisors are not actors of their own: one actor, ``supervisor``, runs the whole tree
(`actors.supervisor.SupervisionTree`) and also answers as the directory that hands the
`Topology` to drivers. Gateways started over a running cluster (`start_gateways`) get their
own ``supervisor-gateways`` actor, a tree of one supervisor.

Per shard ``k``: ``book-k`` is the shard's sequencer (`actors.book_actor.BookActor`);
``reader-k`` reads the shard's log into its read models, risk and positions
(`actors.projections.ShardReader`), fed by the book actor through a
`cluster.edge.publish.ReaderFanout` and recovering from the journal. Gateways
(`actors.gateway_actor.GatewayActor`) serve gRPC and follow every shard.

Every actor is started by `cluster.edge.handles.spawn`: Ray restarts a dead process
(``max_restarts=-1``, the constructor recovers), never retries a call (``max_task_retries=0``);
the supervisors own the policy above that. Nothing here calls Ray directly.

Switches reach every actor in its arguments, never through a process's environment: metrics
(``ClusterConfig.metrics``) and traces (``ClusterConfig.traces``, made explicit by
`cluster.tracing.resolve` where the cluster starts, so every node traces alike).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from actors.book_actor import BookActor
from actors.core.supervision import RestartIntensity, Strategy
from actors.gateway_actor import GatewayActor
from actors.projections import ShardReader
from actors.supervisor import SupervisionTree, SupervisorSpec
from cluster import tracing
from cluster.config import ClusterConfig, InstrumentRegistry, ShardMap, Topology, shard_instruments
from cluster.edge import handles
from cluster.edge.handles import (
    GATEWAY_SUPERVISOR,
    ROOT_SUPERVISOR,
    BookHandle,
    DirectoryHandle,
    GatewayFeeds,
    GatewayHandle,
    RayProbe,
    ReaderHandle,
    SupervisorHandle,
    book_name,
    gateway_name,
    reader_name,
    shard_supervisor_name,
)
from cluster.edge.publish import FanoutFactory
from cluster.gateway.config import GatewayConfig
from cluster.gateway.direct import DirectFrontEndFactory
from cluster.gateway.server import GatewayServerFactory
from cluster.storage import layout
from cluster.storage.journal import FsyncPolicy
from cluster.storage.shard import ProjectionStorageFactory, ShardStorageFactory, shard_directory
from protocols.messages import Instrument
from protocols.rows import SupervisorStatusRow

log = logging.getLogger(__name__)

__all__ = [
    "Cluster",
    "GatewayGroup",
    "ShardStarter",
    "book_name",
    "connect",
    "reader_name",
    "start_cluster",
    "start_gateways",
    "start_ray",
]

READY_TIMEOUT_S = 120.0
"""How long start-up waits for every actor to answer (a shard replays its journal first)."""


def start_ray(*, num_cpus: int = 2, namespace: str = handles.NAMESPACE,
              quiet: bool = True) -> str:
    """Start a private local Ray for this process (see `handles.start_local_ray`)."""
    return handles.start_local_ray(num_cpus=num_cpus, namespace=namespace, verbose=not quiet)


class ShardStarter:
    """Start (or start again) one shard's book actor and its reader (risk and positions).

    Picklable, so a shard's supervisor can hold it and rebuild the shard from its own process.
    """

    def __init__(self, config: ClusterConfig, shard: int, instruments: Sequence[Instrument],
                 front_end: DirectFrontEndFactory | None = None) -> None:
        self.config = config
        self.shard = shard
        self.instruments = list(instruments)
        self.front_end = front_end
        """Starts the shard's own gRPC front end in its book actor (`cluster.gateway.direct`)."""

    def __call__(self) -> None:
        for name in (book_name(self.shard), reader_name(self.shard)):
            handles.kill(name, self.config.namespace)
        self.start()

    def start(self) -> list[handles.Call[tuple[str, int]]]:
        """Create the shard's actors; return their first pings (in flight)."""
        config, shard, namespace = self.config, self.shard, self.config.namespace
        directory = shard_directory(Path(config.data_dir).resolve(), shard)
        projection_log = ProjectionStorageFactory(
            directory, shard, self.instruments, config.client_order_id_window
        )
        recorder = None
        if config.record_market_data:
            # imported here: pyarrow is loaded only by the readers that record
            from cluster.research.recorder import MARKET_DATA_FOLDER, RecorderFactory

            recorder = RecorderFactory(Path(config.data_dir).resolve() / MARKET_DATA_FOLDER,
                                       shard, self.instruments,
                                       max_age_s=config.market_data_flush_s)
        handles.spawn(ShardReader, reader_name(shard), namespace, shard, self.instruments,
                      num_cpus=config.projection_num_cpus,
                      placement=placement_of(config, "reader"), log_factory=projection_log,
                      snapshot_every_events=config.snapshot_every_events,
                      recorder_factory=recorder,
                      metrics=handles.RayMetrics(namespace) if config.metrics else None)
        readers = {"reader": ReaderHandle(shard, namespace)}
        handles.spawn(
            BookActor, book_name(shard), namespace, shard, self.instruments,
            num_cpus=config.book_num_cpus, placement=placement_of(config, "book"),
            default_limits=config.default_limits,
            sink_factory=FanoutFactory(readers),
            log_factory=ShardStorageFactory(directory,
                                            FsyncPolicy(mode=config.fsync,
                                                        interval_ms=config.fsync_interval_ms),
                                            require_manifest=True),
            on_journal_failure=end_process,
            metrics=handles.RayMetrics(namespace) if config.metrics else None,
            tracer_factory=tracing.tracer_factory(config, "raytrade.shard"),
            front_end_factory=self.front_end,
            snapshot_every_events=config.snapshot_every_events,
            snapshot_in_background=True,
            client_order_id_window=config.client_order_id_window,
        )
        return [BookHandle(shard, namespace).ping(),
                *(reader.ping() for reader in readers.values())]


class GatewayStarter:
    """Start (or start again) a set of gateway actors. Picklable: the supervisor's rebuild."""

    def __init__(self, namespace: str, factories: dict[str, GatewayServerFactory],
                 placement: tuple[str, float, bool] = ("", 0.0, False)) -> None:
        self.namespace = namespace
        self.factories = dict(factories)
        self.placement = placement

    def __call__(self) -> None:
        for name in self.factories:
            handles.kill(name, self.namespace)
        self.start()

    def start(self) -> list[handles.Call[int]]:
        """Create the gateway actors; return their readiness (ports, in flight)."""
        for name, factory in self.factories.items():
            handles.spawn(GatewayActor, name, self.namespace, name, factory,
                          GatewayFeeds(name, self.namespace), placement=self.placement)
        return [GatewayHandle(name, self.namespace).ready() for name in self.factories]


def end_process(reason: str) -> None:
    """End this actor's process at once: a book whose journal failed or was fenced.

    Ray starts the actor again under its name (it recovers from the journal) if this process
    is still its current incarnation; a zombie whose book already runs elsewhere is simply
    gone. Exit code 70 (EX_SOFTWARE) marks it in the worker's log.
    """
    log.critical("ending process %d: %s", os.getpid(), reason)
    logging.shutdown()  # flush the worker's log: nothing after this runs
    os._exit(70)


def gateway_statuses(cluster: Cluster) -> list[dict[str, Any]]:
    """Return the status of each of the cluster's gateways (address, metrics port, ...)."""
    names = cluster.topology.gateways
    return handles.wait_all([GatewayHandle(name, cluster.namespace).status() for name in names],
                            30.0)


def metrics_endpoints(gateways: Sequence[dict[str, Any]]) -> list[str]:
    """Return ``host:port`` of every metrics endpoint: Ray's nodes and the gateways'."""
    return [*handles.metrics_targets(), *_gateway_targets(gateways)]


def _gateway_targets(gateways: Sequence[dict[str, Any]]) -> list[str]:
    return [f"{status['address'].rpartition(':')[0]}:{status['metrics_port']}"
            for status in gateways if status.get("metrics_port")]


def write_prometheus_targets(directory: str | Path, gateways: Sequence[dict[str, Any]] = ()
                             ) -> dict[str, list[str]]:
    """Write Prometheus file_sd target files for this Ray and the gateways; return them.

    ``ray.json`` lists every live Ray node's metrics export (the actors' metrics, through
    Ray), ``gateways.json`` each gateway's ``/metrics`` (``gateways``: `GatewayGroup.status`
    rows; those without a metrics port are left out). Each file is replaced atomically:
    Prometheus (cluster/deploy/prometheus/prometheus.yml) may read it at any time.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    found = {"ray": handles.metrics_targets(), "gateways": _gateway_targets(gateways)}
    for name, targets in found.items():
        body = [{"targets": targets, "labels": {"raytrade": name}}] if targets else []
        temporary = folder / f".{name}.json.tmp"
        temporary.write_bytes(msgspec.json.encode(body))
        os.replace(temporary, folder / f"{name}.json")
    return found


def placement_of(config: ClusterConfig, role: str) -> tuple[str, float, bool]:
    """Return ``handles.spawn``'s placement of a ``"book"``, ``"reader"`` or ``"gateway"``
    under the config's `Placement`: (custom resource, amount per actor, spread)."""
    placement = config.placement
    if role == "book":
        amount = 1.0 / placement.books_per_node if placement.books_per_node else 0.001
        return placement.book_resource, amount, placement.spread_books
    resource = {"reader": placement.reader_resource, "gateway": placement.gateway_resource}[role]
    return resource, 0.001, False


def _spawn_tree(name: str, specs: Sequence[SupervisorSpec], namespace: str, *,
                topology: bytes = b"") -> None:
    """Start the actor that runs a supervision tree (named after its root)."""
    handles.spawn(SupervisionTree, name, namespace, list(specs), RayProbe(namespace),
                  topology=topology, metrics=handles.RayMetrics(namespace))


def shard_timing(config: ClusterConfig) -> dict[str, float]:
    """Return a shard supervisor's timing where it differs from `Supervisor`'s defaults.

    A book actor's ping also syncs its journal, and is the only timer that bounds what the
    ``interval`` fsync policy leaves unsynced on an idle shard (`BookActor.ping`): with that
    policy the shard's children are pinged at every tick, as before the supervisors learned to
    skip pings of healthy children.
    """
    return {"ping_every_s": 0.0} if config.fsync == "interval" else {}


class GatewayGroup:
    """Gateways started over a running cluster, and the supervision tree that watches them."""

    def __init__(self, namespace: str, names: list[str], ports: list[int]) -> None:
        self.namespace = namespace
        self.names = names
        self.ports = ports

    def gateway(self, name: str) -> GatewayHandle:
        """Return a gateway's typed handle."""
        return GatewayHandle(name, self.namespace)

    def handle(self, name: str) -> Any:
        """Return Ray's own handle of a gateway or its supervisor (tests kill it for real)."""
        return handles.raw_handle(name, self.namespace)

    def status(self) -> list[dict[str, Any]]:
        """Return every gateway's status row."""
        return handles.wait_all([self.gateway(name).status() for name in self.names], 30.0)

    def supervision(self) -> SupervisorStatusRow:
        """Return the gateway supervisor's status."""
        return SupervisorHandle(GATEWAY_SUPERVISOR, self.namespace).supervisor_status(
            GATEWAY_SUPERVISOR).result(30.0)

    def stop(self) -> None:
        """Stop the supervisor first (so nothing restarts), then every gateway."""
        _stop_all([GATEWAY_SUPERVISOR, *self.names], self.namespace)


def _launch_gateways(cluster: Cluster, configs: Sequence[GatewayConfig], trees: Sequence[str],
                     ready_timeout_s: float) -> tuple[list[str], list[int], GatewayStarter]:
    """Start the gateway actors and wait until they serve: (names, ports, their starter).

    ``trees``: the supervision trees' actors whose supervisors a gateway's status reports.
    """
    topology = cluster.topology
    config = tracing.resolve(topology.config)
    names = [gateway_name(index) for index in range(len(configs))]
    factories = {
        name: GatewayServerFactory(gateway, config, topology.instruments, topology.pins, trees)
        for name, gateway in zip(names, configs, strict=True)
    }
    starter = GatewayStarter(cluster.namespace, factories, placement_of(config, "gateway"))
    try:
        ports = handles.wait_all(starter.start(), ready_timeout_s)
    except BaseException:
        _stop_all(names, cluster.namespace)
        raise
    for name, port, gateway in zip(names, ports, configs, strict=True):
        log.info("gateway %s serving on %s:%d", name, gateway.host, port)
    return names, ports, starter


def _gateway_spec(names: Sequence[str], starter: GatewayStarter, intensity: RestartIntensity,
                  parent: str | None) -> SupervisorSpec:
    return SupervisorSpec(name=GATEWAY_SUPERVISOR, children=tuple(names),
                          strategy=Strategy.ONE_FOR_ONE, intensity=intensity, parent=parent,
                          rebuild=starter)


def start_gateways(
    cluster: Cluster,
    configs: Sequence[GatewayConfig],
    *,
    intensity: RestartIntensity | None = None,
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> GatewayGroup:
    """Start gateways over a running cluster, and their supervisor; wait until they serve.

    The supervisor runs in an actor of its own (``supervisor-gateways``) and has no parent:
    past its restart intensity it gives up. (Gateways started with the cluster,
    `start_cluster`'s ``gateway_configs``, are supervised in the cluster's tree, under the
    root.) A gateway that cannot bind raises `PortInUseError` or `GatewayStartError`.
    """
    config = cluster.topology.config
    namespace = cluster.namespace
    names, ports, starter = _launch_gateways(cluster, configs,
                                             [ROOT_SUPERVISOR, GATEWAY_SUPERVISOR],
                                             ready_timeout_s)
    intensity = intensity or RestartIntensity(max_restarts=config.restart_max,
                                              within_s=config.restart_within_s)
    try:
        _spawn_tree(GATEWAY_SUPERVISOR, [_gateway_spec(names, starter, intensity, None)],
                    namespace)
        SupervisorHandle(GATEWAY_SUPERVISOR, namespace).ping().result(ready_timeout_s)
    except BaseException:
        _stop_all([GATEWAY_SUPERVISOR, *names], namespace)
        raise
    return GatewayGroup(namespace, names, ports)


class Cluster:
    """A running raytrade cluster: its topology and typed handles to its actors."""

    def __init__(self, topology: Topology, namespace: str) -> None:
        self.topology = topology
        self.namespace = namespace
        self.shard_map = topology.shard_map

    @property
    def shards(self) -> int:
        return self.topology.config.shards

    def book(self, shard: int, *, timeout_s: float | None = None) -> BookHandle:
        """Return a shard's book actor handle."""
        return BookHandle(shard, self.namespace, timeout_s=timeout_s)

    def reader(self, shard: int) -> ReaderHandle:
        """Return the handle of a shard's read models (risk and positions)."""
        return ReaderHandle(shard, self.namespace)

    def supervision_tree(self) -> SupervisorHandle:
        """Return the handle of the actor that runs the cluster's supervisors."""
        return SupervisorHandle(ROOT_SUPERVISOR, self.namespace)

    def handle(self, name: str) -> Any:
        """Return Ray's own handle of a named actor (tests and benchmarks kill it for real)."""
        return handles.raw_handle(name, self.namespace)

    @property
    def books(self) -> list[Any]:
        """Ray's own handles of the book actors (tests and benchmarks)."""
        return [self.handle(book_name(shard)) for shard in range(self.shards)]

    def supervisor_names(self) -> list[str]:
        """Return the root first, then the shard supervisors, then the gateways' (if any)."""
        names = [ROOT_SUPERVISOR, *(shard_supervisor_name(k) for k in range(self.shards))]
        if self.topology.gateways:
            names.append(GATEWAY_SUPERVISOR)
        return names

    def actor_names(self) -> list[str]:
        """Return the name of every actor of the cluster: the supervision tree (which is also
        the directory), the gateways, per shard its book and reader."""
        names = [ROOT_SUPERVISOR, *self.topology.gateways]
        for shard in range(self.shards):
            names += [book_name(shard), reader_name(shard)]
        return names

    def placements(self) -> dict[str, handles.ActorLocation | None]:
        """Return where Ray runs each actor of the cluster now (None: not found)."""
        return {name: handles.locate(name, self.namespace) for name in self.actor_names()}

    def front_ends(self) -> list[str]:
        """Return where each shard's own front end listens (``host:port``; ``failed: ...``
        if it did not start; empty if the cluster runs none), by shard."""
        statuses = handles.wait_all([self.book(shard).status() for shard in range(self.shards)],
                                    30.0)
        return [status.front_end for status in statuses]

    def supervision(self) -> list[SupervisorStatusRow]:
        """Return the status of every supervisor, the root first."""
        return self.supervision_tree().statuses().result(30.0)

    def stop(self) -> None:
        """Stop supervision first (so nothing restarts), then every actor of the cluster."""
        _stop_all(self.actor_names(), self.namespace)


def _stop_all(names: Sequence[str], namespace: str) -> None:
    for name in names:
        try:
            handles.kill(name, namespace)
        except Exception as error:  # stopping is best effort: stop the others
            log.warning("stopping %s: %s", name, error)


def start_cluster(
    config: ClusterConfig,
    registry: InstrumentRegistry,
    gateway_configs: Sequence[GatewayConfig] = (),
    *,
    front_ends: GatewayConfig | None = None,
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> Cluster:
    """Start the shards, the gateways (one per `GatewayConfig`), their supervisors under the root,
    and the directory; wait until every shard and gateway answers.

    With ``front_ends``, each shard's book actor also serves orders for its own symbols over
    gRPC from its own process (`cluster.gateway.direct`), on ``front_ends.port + shard`` (any
    free port if 0) with that config's tokens, TLS and limits; `Cluster.front_ends` says where.

    If anything fails to start (or start-up is interrupted), what was started is stopped again
    before the exception propagates.
    """
    config = tracing.resolve(config)  # every actor, on any node, traces as decided here
    shard_map = ShardMap(config.shards, dict(registry.pins))
    topology = Topology(
        config=config,
        instruments=registry.instruments,
        pins=dict(registry.pins),
        gateways=tuple(gateway_name(index) for index in range(len(gateway_configs))),
    )
    namespace = config.namespace
    cluster = Cluster(topology, namespace)
    if layout.read_manifest(config.data_dir) is None:  # the books check for it (shared volume)
        layout.write_manifest(config.data_dir, config.shards)
    try:
        grouped = shard_instruments(registry, shard_map)
        direct = (None if front_ends is None else
                  DirectFrontEndFactory(front_ends, config, registry.instruments,
                                        dict(registry.pins)))
        starters = [ShardStarter(config, shard, grouped[shard], direct)
                    for shard in range(config.shards)]
        handles.wait_all([ping for starter in starters for ping in starter.start()],
                         ready_timeout_s)
        intensity = RestartIntensity(max_restarts=config.restart_max,
                                     within_s=config.restart_within_s)
        specs = [
            SupervisorSpec(name=shard_supervisor_name(shard),
                           children=(book_name(shard), reader_name(shard)),
                           strategy=Strategy(config.shard_strategy), intensity=intensity,
                           parent=ROOT_SUPERVISOR, rebuild=starters[shard],
                           timing=shard_timing(config))
            for shard in range(config.shards)
        ]
        if gateway_configs:
            names, _, starter = _launch_gateways(cluster, gateway_configs, [ROOT_SUPERVISOR],
                                                 ready_timeout_s)
            specs.append(_gateway_spec(names, starter, intensity, ROOT_SUPERVISOR))
        root = SupervisorSpec(name=ROOT_SUPERVISOR, children=tuple(spec.name for spec in specs),
                              strategy=Strategy.ONE_FOR_ONE, intensity=intensity)
        _spawn_tree(ROOT_SUPERVISOR, [root, *specs], namespace,
                    topology=msgspec.msgpack.encode(topology))
        cluster.supervision_tree().ping().result(ready_timeout_s)
    except BaseException:
        cluster.stop()
        raise
    log.info("raytrade cluster up: %d shards, %d instruments, namespace %r, data in %s",
             config.shards, len(registry.instruments), namespace,
             Path(config.data_dir).resolve())
    return cluster


def connect(namespace: str = handles.NAMESPACE, address: str = "auto", *,
            timeout_s: float = 10.0) -> Cluster:
    """Find a running cluster (from another driver, a gateway or an actor).

    Raise `ClusterUnreachableError` if no Ray answers at ``address`` within ``timeout_s``, and
    `ClusterNotFoundError` if Ray answers but no raytrade runs in ``namespace``.
    """
    handles.join_ray(address, namespace, timeout_s=timeout_s)
    payload = DirectoryHandle(namespace, timeout_s=timeout_s).topology()
    return Cluster(msgspec.msgpack.decode(payload, type=Topology), namespace)
