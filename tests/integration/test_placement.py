"""Placement on a real multi-node Ray: books only on the nodes that offer the book resource.

Issue 11, item 2. A subprocess (so the session's local Ray is not disturbed) starts three real
raylets on loopback with `ray.cluster_utils.Cluster`: a head without the book resource and two
nodes with ``raytrade_book: 1``. A 2-shard cluster with ``books_per_node = 1`` must put one
book on each book node and none on the head, trade there through the Python client, and show
each actor's node in `Cluster.placements` (what ``raytrade status`` prints).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.integration.raylets import run_on_raylets

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SCRIPT = textwrap.dedent("""
    import json, sys, tempfile
    from cluster.edge import handles  # RAY_AUTH_MODE=token before Ray is imported
    handles.prepare_local_nodes()  # every raylet on 127.0.0.1
    import ray
    from ray.cluster_utils import Cluster as RayNodes

    from cluster.clients.ray_client import Client
    from cluster.config import ClusterConfig, InstrumentRegistry, Placement
    from cluster.edge.wiring import start_cluster

    nodes = RayNodes(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "temp_dir": sys.argv[1]})
    book_nodes = [nodes.add_node(num_cpus=1, resources={"raytrade_book": 1}) for _ in range(2)]
    nodes.wait_for_nodes()
    ray.init(address=nodes.address, namespace="placed")
    config = ClusterConfig(shards=2, namespace="placed", data_dir=sys.argv[2],
                           placement=Placement(book_resource="raytrade_book", books_per_node=1))
    cluster = start_cluster(config, InstrumentRegistry.load())
    try:
        client = Client(cluster)
        accepted = [type(client.sell("alice", symbol, 100, 18_950)[0]).__name__
                    for symbol in ("AAPL", "MSFT")]
        placements = {name: (where.node_id if where else None)
                      for name, where in cluster.placements().items()}
        print(json.dumps({
            "head": nodes.head_node.node_id,
            "book_nodes": [node.node_id for node in book_nodes],
            "placements": placements,
            "accepted": accepted,
            "shards_of": [cluster.shard_map.shard_of(s) for s in ("AAPL", "MSFT")],
        }), flush=True)
    finally:
        cluster.stop()
        ray.shutdown()
        nodes.shutdown()
""")


def test_books_run_only_on_book_nodes_one_per_node(tmp_path: Path) -> None:
    report = run_on_raylets(SCRIPT, tmp_path / "data", timeout_s=300)
    placements = report["placements"]
    books = [placements["book-0"], placements["book-1"]]
    assert sorted(books) == sorted(report["book_nodes"]), report  # one on each book node
    assert report["head"] not in books
    assert all(node for node in placements.values()), placements  # every actor was found
    assert report["accepted"] == ["OrderAccepted", "OrderAccepted"]
