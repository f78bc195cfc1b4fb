"""Small actors for supervision tests: they answer pings, crash on request, or never start."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import ray

from actors.supervisor import SupervisionTree, SupervisorSpec
from cluster.edge import handles
from cluster.edge.handles import RayProbe
from protocols.rows import SupervisorStatusRow


class Worker:
    """A child that answers pings with its incarnation and can be told to crash."""

    def __init__(self, name: str, crash_on_start_file: str = "") -> None:
        if crash_on_start_file and Path(crash_on_start_file).exists():
            raise RuntimeError(f"{name}: told to fail at start-up")
        self.name = name
        self.incarnation = f"{os.getpid()}-{time.time_ns()}"
        self.failing = False

    def ping(self) -> tuple[str, int]:
        if self.failing:
            raise RuntimeError(f"{self.name} is alive but broken")
        return self.incarnation, 0

    def fail_pings(self) -> None:
        """Stay alive but answer every health check with an error."""
        self.failing = True

    def pid(self) -> int:
        return os.getpid()

    def crash(self) -> None:
        os._exit(1)


class WorkerStarter:
    """Start (again) named Worker actors: the `rebuild` a test supervisor calls."""

    def __init__(self, names: list[str], namespace: str, crash_on_start_file: str = "") -> None:
        self.names = names
        self.namespace = namespace
        self.crash_on_start_file = crash_on_start_file

    def __call__(self) -> None:
        from cluster.edge.handles import kill

        for name in self.names:
            kill(name, self.namespace, restart=False)
        self.start()

    def start(self) -> list[object]:
        import ray

        return [
            ray.remote(Worker)
            .options(name=name, namespace=self.namespace, lifetime="detached", max_restarts=-1,
                     max_task_retries=0, num_cpus=0)
            .remote(name, self.crash_on_start_file)
            for name in self.names
        ]


class Supervised:
    """One supervisor of a `SupervisionTree` actor, asked as the tests ask it."""

    def __init__(self, tree: Any, name: str) -> None:
        self.tree = tree
        self.name = name

    def status(self) -> SupervisorStatusRow:
        row: SupervisorStatusRow = ray.get(self.tree.status.remote(self.name))
        return row


def start_supervision(tree_name: str, namespace: str, specs: list[SupervisorSpec]) -> Any:
    """Start a `SupervisionTree` actor over ``specs`` as a cluster does (`handles.spawn`:
    detached, restarted by Ray when its process dies; children reached through Ray) and wait
    until it answers; return Ray's handle of it."""
    handles.spawn(SupervisionTree, tree_name, namespace, specs, RayProbe(namespace))
    tree = ray.get_actor(tree_name, namespace=namespace)
    ray.get(tree.ping.remote())
    return tree
