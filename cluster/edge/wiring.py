"""Where the system is wired together: Ray start-up, the actors, supervision and lookup.

Every ``ray.remote(...).options(...)`` of raytrade is in this module. Per shard ``k`` it starts,
as named, detached actors in the cluster's namespace (so any driver or gateway finds them):

* ``book-k`` — the shard's sequencer (`actors.book_actor.BookActor`);
* ``risk-k`` and ``positions-k`` — readers of the shard's log (`actors.projections`), fed by
  the book actor through a `cluster.edge.publish.ReaderFanout`, recovering from the journal;
* ``supervisor-shard-k`` — their supervisor (`actors.supervisor.Supervisor`);

plus the root ``supervisor`` and a ``directory`` that hands out the topology.

Shard actors run with ``max_restarts=-1`` (Ray brings a dead process back; its constructor
recovers from snapshot + journal) and ``max_task_retries=0`` (a retried task could apply a
batch twice or out of order: retrying is the client's job, made safe by client order ids).
The supervisors own the policy above that: which siblings restart, how often, when to give up.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import ray

from actors.book_actor import BookActor
from actors.core.supervision import RestartIntensity, Strategy
from actors.directory import Directory
from actors.projections import PositionActor, RiskActor
from actors.supervisor import Supervisor
from cluster.config import ClusterConfig, InstrumentRegistry, ShardMap, shard_instruments
from cluster.edge.publish import FanoutFactory
from cluster.storage.journal import FsyncPolicy
from cluster.storage.shard import ProjectionStorageFactory, ShardStorageFactory, shard_directory
from protocols.messages import Instrument

log = logging.getLogger(__name__)

DIRECTORY = "directory"
ROOT_SUPERVISOR = "supervisor"
GATEWAY_SUPERVISOR = "supervisor-gateways"


class Topology(msgspec.Struct, frozen=True, kw_only=True):
    """What a driver needs to talk to a running cluster."""

    config: ClusterConfig
    instruments: tuple[Instrument, ...]
    pins: dict[str, int]
    gateways: tuple[str, ...] = ()
    """Names of the gateway actors (``gateway-0``, ...), if any."""

    @property
    def shard_map(self) -> ShardMap:
        return ShardMap(self.config.shards, self.pins)


def book_name(shard: int) -> str:
    return f"book-{shard}"


def risk_name(shard: int) -> str:
    return f"risk-{shard}"


def positions_name(shard: int) -> str:
    return f"positions-{shard}"


def shard_supervisor_name(shard: int) -> str:
    return f"supervisor-shard-{shard}"


def start_ray(*, num_cpus: int = 2, namespace: str = "raytrade", quiet: bool = True) -> None:
    """Start a private local Ray (no dashboard) for this process, unless one is running here.

    Ray's temporary files go to the system temp folder (or ``RAY_TMPDIR``), never the repo.
    """
    if ray.is_initialized():
        return
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        namespace=namespace,
        log_to_driver=not quiet,
        logging_level=logging.WARNING if quiet else logging.INFO,
        _temp_dir=os.environ.get("RAY_TMPDIR"),
    )


class ShardStarter:
    """Start (or start again) one shard's book, risk and position actors.

    Picklable, so a shard's supervisor can hold it and rebuild the shard from its own process.
    """

    def __init__(self, config: ClusterConfig, shard: int, instruments: Sequence[Instrument]):
        self.config = config
        self.shard = shard
        self.instruments = list(instruments)

    def __call__(self) -> None:
        for name in (book_name(self.shard), risk_name(self.shard), positions_name(self.shard)):
            with contextlib.suppress(ValueError):  # not running
                ray.kill(ray.get_actor(name, namespace=self.config.namespace), no_restart=True)
        self.start()

    def start(self) -> tuple[Any, Any, Any]:
        """Create the shard's actors; return (book, risk, positions) handles."""
        config, shard = self.config, self.shard
        directory = shard_directory(Path(config.data_dir).resolve(), shard)
        common: dict[str, Any] = {
            "namespace": config.namespace,
            "lifetime": "detached",
            "max_restarts": -1,
            "max_task_retries": 0,
        }
        projection_log = ProjectionStorageFactory(
            directory, shard, self.instruments, config.client_order_id_window
        )
        positions = (
            ray.remote(PositionActor)
            .options(name=positions_name(shard), num_cpus=config.projection_num_cpus, **common)
            .remote(shard, self.instruments, log_factory=projection_log,
                    snapshot_every_events=config.snapshot_every_events)
        )
        risk = (
            ray.remote(RiskActor)
            .options(name=risk_name(shard), num_cpus=config.projection_num_cpus, **common)
            .remote(shard, self.instruments, log_factory=projection_log,
                    snapshot_every_events=config.snapshot_every_events)
        )
        fsync = FsyncPolicy(mode=config.fsync, interval_ms=config.fsync_interval_ms)
        book = (
            ray.remote(BookActor)
            .options(name=book_name(shard), num_cpus=config.book_num_cpus, **common)
            .remote(
                shard,
                self.instruments,
                default_limits=config.default_limits,
                sink_factory=FanoutFactory({"risk": risk, "positions": positions}),
                log_factory=ShardStorageFactory(directory, fsync),
                snapshot_every_events=config.snapshot_every_events,
                client_order_id_window=config.client_order_id_window,
            )
        )
        return book, risk, positions


class Cluster:
    """Handles to a running raytrade cluster's actors, by shard."""

    def __init__(self, topology: Topology, namespace: str) -> None:
        self.topology = topology
        self.namespace = namespace
        self.shard_map = topology.shard_map

    @property
    def shards(self) -> int:
        return self.topology.config.shards

    def handle(self, name: str) -> Any:
        """Look up a named actor of this cluster (fresh each time: a rebuilt shard is new)."""
        return ray.get_actor(name, namespace=self.namespace)

    @property
    def books(self) -> list[Any]:
        return [self.handle(book_name(shard)) for shard in range(self.shards)]

    @property
    def risks(self) -> list[Any]:
        return [self.handle(risk_name(shard)) for shard in range(self.shards)]

    @property
    def positions(self) -> list[Any]:
        return [self.handle(positions_name(shard)) for shard in range(self.shards)]

    def supervisor_names(self) -> list[str]:
        """Return the root first, then the shard supervisors, then the gateways' (if any)."""
        names = [ROOT_SUPERVISOR, *(shard_supervisor_name(k) for k in range(self.shards))]
        if self.topology.gateways:
            names.append(GATEWAY_SUPERVISOR)
        return names

    def supervision(self) -> list[dict[str, Any]]:
        """Return the status of every supervisor."""
        names = self.supervisor_names()
        return list(ray.get([self.handle(name).status.remote() for name in names]))

    def stop(self) -> None:
        """Stop supervision first (so nothing restarts), then every actor of the cluster."""
        names = [*self.supervisor_names(), *self.topology.gateways]
        for shard in range(self.shards):
            names += [book_name(shard), risk_name(shard), positions_name(shard)]
        names.append(DIRECTORY)
        for name in names:
            try:
                ray.kill(self.handle(name), no_restart=True)
            except ValueError:
                pass
            except Exception as error:
                log.warning("stopping %s: %s", name, error)


def start_cluster(
    config: ClusterConfig, registry: InstrumentRegistry, gateway_configs: Sequence[Any] = ()
) -> Cluster:
    """Start the shards, gateways (one per `GatewayConfig`), their supervisors under the root,
    and the directory; wait until every shard and gateway answers."""
    shard_map = ShardMap(config.shards, dict(registry.pins))
    topology = Topology(
        config=config,
        instruments=registry.instruments,
        pins=dict(registry.pins),
        gateways=tuple(f"gateway-{index}" for index in range(len(gateway_configs))),
    )
    namespace = config.namespace
    grouped = shard_instruments(registry, shard_map)
    handles: list[Any] = []
    starters = []
    for shard in range(config.shards):
        starter = ShardStarter(config, shard, grouped[shard])
        starters.append(starter)
        handles.extend(starter.start())
    ray.get([handle.ping.remote() for handle in handles])
    control: dict[str, Any] = {
        "namespace": namespace, "lifetime": "detached", "max_restarts": -1, "num_cpus": 0,
    }
    ray.remote(Directory).options(name=DIRECTORY, **control).remote(
        msgspec.msgpack.encode(topology)
    )
    intensity = RestartIntensity(max_restarts=config.restart_max, within_s=config.restart_within_s)
    root_children = [shard_supervisor_name(shard) for shard in range(config.shards)]
    if gateway_configs:
        # started before the root, so the root never pings a child that does not exist yet
        from cluster.gateway.wiring import start_gateways  # it imports this module

        start_gateways(Cluster(topology, namespace), gateway_configs, parent=ROOT_SUPERVISOR,
                       intensity=intensity)
        root_children.append(GATEWAY_SUPERVISOR)
    ray.remote(Supervisor).options(name=ROOT_SUPERVISOR, **control).remote(
        ROOT_SUPERVISOR,
        root_children,
        namespace=namespace,
        strategy=Strategy.ONE_FOR_ONE,
        intensity=intensity,
    )
    supervisors: list[Any] = [
        ray.remote(Supervisor)
        .options(name=shard_supervisor_name(shard), **control)
        .remote(
            shard_supervisor_name(shard),
            [book_name(shard), risk_name(shard), positions_name(shard)],
            namespace=namespace,
            strategy=Strategy(config.shard_strategy),
            intensity=intensity,
            parent=ROOT_SUPERVISOR,
            rebuild=starters[shard],
        )
        for shard in range(config.shards)
    ]
    ray.get([supervisor.ping.remote() for supervisor in supervisors])
    log.info("raytrade cluster up: %d shards, %d instruments, namespace %r, data in %s",
             config.shards, len(registry.instruments), namespace,
             Path(config.data_dir).resolve())
    return Cluster(topology, namespace)


def connect(namespace: str = "raytrade", address: str = "auto") -> Cluster:
    """Find a running cluster by name (from another driver, a gateway or an actor)."""
    if not ray.is_initialized():
        # With an explicit address and Ray's token authentication (on by default in 2.60),
        # RAY_AUTH_MODE=token must be in the environment before ray is imported, or the
        # connection retries for 20 s and fails; `raytrade status --address` sets it.
        ray.init(address=address, namespace=namespace, log_to_driver=False)
    directory: Any = ray.get_actor(DIRECTORY, namespace=namespace)
    payload: bytes = ray.get(directory.topology.remote())
    topology = msgspec.msgpack.decode(payload, type=Topology)
    return Cluster(topology, namespace)
