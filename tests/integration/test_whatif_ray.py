"""What-if variants as real Ray tasks (`cluster.edge.handles.map_tasks`) on the session's Ray.

The journal is written by an in-process book actor (as in tests/unit/test_whatif.py); the
variants run in Ray's workers, the recording handed over once through the object store, and
must answer exactly as the same variants run in this process.
"""

from __future__ import annotations

import os
import time

import pytest

from cluster.edge import handles
from cluster.research.flow import demo_instruments
from cluster.research.whatif import Variant, parse_variant, what_if
from protocols.errors import ClusterError, ConfigError
from protocols.messages import RiskLimitsConfig, SelfTradePrevention
from tests.unit.test_whatif import Written, write_run

pytestmark = [pytest.mark.ray]

VARIANTS = [
    Variant(stp=SelfTradePrevention.CANCEL_RESTING),
    Variant(limits=RiskLimitsConfig(max_order_quantity=50)),
    Variant(shards=3),
]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Written:
    return write_run(tmp_path_factory.mktemp("whatif-ray"), demo_instruments(4), 1)


def worker_pid(_: object) -> int:
    return os.getpid()


def shifted(offset: int, value: int) -> int:
    return offset + value


def nap(seconds: float) -> None:
    # in short steps: Ray's cancel interrupts a task between Python bytecodes, as it would a
    # replay between batches, not inside one long C call
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)


def test_variants_as_ray_tasks_give_the_local_table(ray_session: None, run: Written) -> None:
    """Three variants as Ray tasks: the same table, PnL, positions and hashes as in-process."""
    on_ray = what_if(run.data_dir, VARIANTS, run.instruments, progress=False)
    here = what_if(run.data_dir, VARIANTS, run.instruments, local=True, progress=False)
    assert on_ray.table() == here.table()
    assert on_ray.pnl_table() == here.pnl_table()
    assert on_ray.position_table() == here.position_table()
    assert [row.state_hashes for row in on_ray.results] == [
        row.state_hashes for row in here.results]
    assert on_ray.results[0].self_trades == 0 < on_ray.recorded.self_trades


def test_map_tasks_runs_in_ray_workers_with_the_shared_value_once(ray_session: None) -> None:
    """Tasks run in Ray's worker processes; ``shared`` reaches each as the value."""
    assert os.getpid() not in handles.map_tasks(worker_pid, [0, 1])
    assert handles.map_tasks(shifted, [1, 2, 3], shared=10) == [11, 12, 13]


def test_a_task_that_raises_raises_its_own_exception(ray_session: None) -> None:
    """A raytrade error (or any other) raised in a task is raised here as itself."""
    with pytest.raises(ConfigError, match="stp=sometimes"):
        handles.map_tasks(parse_variant, ["stp=cancel_both", "stp=sometimes"])


def refuse_to_load() -> None:
    raise ValueError("this argument cannot be unpickled")


class Unloadable:
    """An argument that pickles in the driver and fails to load in the worker."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return refuse_to_load, ()


def test_an_argument_ray_cannot_pass_is_a_cluster_error(ray_session: None) -> None:
    """A failure of Ray's own (here: the worker cannot load the argument) is a
    `ClusterError` naming the function, not a Ray exception."""
    with pytest.raises(ClusterError, match="a worker_pid task failed"):
        handles.map_tasks(worker_pid, [Unloadable()])


def test_tasks_past_the_timeout_are_cancelled(ray_session: None) -> None:
    """Tasks not done within ``timeout_s`` raise `ClusterError`, and are cancelled: their
    CPU is free again (a task wanting both of the session's 2 CPUs runs at once)."""
    with pytest.raises(ClusterError, match=r"did not finish within 0\.5 s"):
        handles.map_tasks(nap, [60.0], timeout_s=0.5)
    started = time.monotonic()
    assert handles.map_tasks(worker_pid, [0], num_cpus=2, timeout_s=30)
    assert time.monotonic() - started < 30
