"""Where gateways are started: their Ray actors and their supervisor.

Given a running `Cluster`, `start_gateways` starts one named, detached gateway actor per
`GatewayConfig` (``gateway-0``, ``gateway-1``, ... in the cluster's namespace) and a
``supervisor-gateways`` `Supervisor` over them. Gateways run with ``max_restarts=-1`` (Ray
brings a dead process back and its constructor serves again) and ``max_task_retries=0``; the
supervisor restarts a gateway that stops answering or failed to start, and escalates to its
parent (the root supervisor, when wired under it) past its restart intensity.

Several gateways can run at once on different ports; each follows every shard. Port 0 picks
a free port (tests): a restarted gateway then gets a new one, so give real deployments fixed
ports.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import ray

from actors.core.supervision import RestartIntensity, Strategy
from actors.gateway_actor import GatewayActor
from actors.supervisor import Supervisor
from cluster.edge.wiring import GATEWAY_SUPERVISOR, ROOT_SUPERVISOR, Cluster, shard_supervisor_name
from cluster.gateway.config import GatewayConfig
from cluster.gateway.server import GatewayServerFactory

log = logging.getLogger(__name__)



def gateway_name(index: int) -> str:
    """Return the actor name of the ``index``-th gateway."""
    return f"gateway-{index}"


class GatewayStarter:
    """Start (or start again) a set of gateway actors. Picklable: the supervisor's rebuild."""

    def __init__(self, namespace: str, factories: dict[str, GatewayServerFactory]) -> None:
        self.namespace = namespace
        self.factories = dict(factories)

    def __call__(self) -> None:
        for name in self.factories:
            with contextlib.suppress(ValueError):  # not running
                ray.kill(ray.get_actor(name, namespace=self.namespace), no_restart=True)
        self.start()

    def start(self) -> list[Any]:
        """Create the gateway actors; return their handles (not yet waited for)."""
        return [
            ray.remote(GatewayActor)
            .options(
                name=name,
                namespace=self.namespace,
                lifetime="detached",
                max_restarts=-1,
                max_task_retries=0,
                num_cpus=0,
            )
            .remote(name, factory)
            for name, factory in self.factories.items()
        ]


class GatewayGroup:
    """Handles to the running gateways of a cluster and their supervisor."""

    def __init__(self, namespace: str, names: list[str], ports: list[int]) -> None:
        self.namespace = namespace
        self.names = names
        self.ports = ports

    def handle(self, name: str) -> Any:
        return ray.get_actor(name, namespace=self.namespace)

    def status(self) -> list[dict[str, Any]]:
        """Return every gateway's status row."""
        return list(ray.get([self.handle(name).status.remote() for name in self.names]))

    def supervision(self) -> dict[str, Any]:
        """Return the gateway supervisor's status."""
        status: dict[str, Any] = ray.get(self.handle(GATEWAY_SUPERVISOR).status.remote())
        return status

    def stop(self) -> None:
        """Stop the supervisor first (so nothing restarts), then every gateway."""
        for name in (GATEWAY_SUPERVISOR, *self.names):
            try:
                ray.kill(self.handle(name), no_restart=True)
            except ValueError:
                pass
            except Exception as error:  # stopping is best effort
                log.warning("stopping %s: %s", name, error)


def start_gateways(
    cluster: Cluster,
    configs: Sequence[GatewayConfig],
    *,
    parent: str | None = None,
    intensity: RestartIntensity | None = None,
    ready_timeout_s: float = 60.0,
) -> GatewayGroup:
    """Start gateways over a running cluster, and their supervisor; wait until they serve.

    ``parent`` names the supervisor to escalate to (``"supervisor"``, the root, once the root
    lists ``supervisor-gateways`` among its children); None makes the gateway supervisor give
    up on its own past its restart intensity.
    """
    topology = cluster.topology
    config = topology.config
    names = [gateway_name(index) for index in range(len(configs))]
    supervisors = [ROOT_SUPERVISOR, *(shard_supervisor_name(k) for k in range(config.shards)),
                   GATEWAY_SUPERVISOR]
    factories = {
        name: GatewayServerFactory(gateway, config, topology.instruments, topology.pins,
                                   supervisors)
        for name, gateway in zip(names, configs, strict=True)
    }
    starter = GatewayStarter(cluster.namespace, factories)
    handles = starter.start()
    ports = [int(port) for port in ray.get([h.ready.remote() for h in handles],
                                           timeout=ready_timeout_s)]
    supervisor: Any = (
        ray.remote(Supervisor)
        .options(name=GATEWAY_SUPERVISOR, namespace=cluster.namespace, lifetime="detached",
                 max_restarts=-1, num_cpus=0)
        .remote(
            GATEWAY_SUPERVISOR,
            names,
            namespace=cluster.namespace,
            strategy=Strategy.ONE_FOR_ONE,
            intensity=intensity or RestartIntensity(
                max_restarts=config.restart_max, within_s=config.restart_within_s
            ),
            parent=parent,
            rebuild=starter,
        )
    )
    ray.get(supervisor.ping.remote())
    for name, port, gateway in zip(names, ports, configs, strict=True):
        log.info("gateway %s serving on %s:%d", name, gateway.host, port)
    return GatewayGroup(cluster.namespace, names, ports)
