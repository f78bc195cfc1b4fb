"""`[cluster.placement]`: what a config file can say, what it refuses, and what Ray is asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.config import ClusterConfig, Placement, load_cluster_config
from cluster.edge.wiring import placement_of
from protocols.errors import ConfigError


def test_the_default_places_anything_anywhere_and_spreads_books() -> None:
    config = ClusterConfig()
    assert placement_of(config, "book") == ("", 0.001, True)
    assert placement_of(config, "reader") == ("", 0.001, False)
    assert placement_of(config, "gateway") == ("", 0.001, False)


def test_a_config_file_places_books_one_per_node_and_gateways_on_edge_nodes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(
        "[cluster]\nshards = 4\n"
        "[cluster.placement]\nbook_resource = 'raytrade_book'\nbooks_per_node = 1\n"
        "reader_resource = 'raytrade_reader'\ngateway_resource = 'raytrade_edge'\n"
    )
    config = load_cluster_config(path, {})
    assert placement_of(config, "book") == ("raytrade_book", 1.0, True)
    assert placement_of(config, "reader") == ("raytrade_reader", 0.001, False)
    assert placement_of(config, "gateway") == ("raytrade_edge", 0.001, False)
    packed = ClusterConfig(placement=Placement(book_resource="raytrade_book", books_per_node=4,
                                               spread_books=False))
    assert placement_of(packed, "book") == ("raytrade_book", 0.25, False)


@pytest.mark.parametrize(
    ("placement", "message"),
    [
        ("books_per_node = 2", "books_per_node needs placement.book_resource"),
        ("book_resource = 'b'\nbooks_per_node = -1", "books_per_node must be 0 or more"),
        ("book_nodes = 'b'", "book_nodes"),  # a typo is refused, not ignored
        # N books fill the unit: a reader asking for a share of it would fit nowhere once a
        # node is full (found by the node-failover test: the readers never came back)
        ("book_resource = 'b'\nbooks_per_node = 1\nreader_resource = 'b'",
         "reader_resource 'b' is the book resource"),
    ],
)
def test_a_wrong_placement_is_refused(tmp_path: Path, placement: str, message: str) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(f"[cluster.placement]\n{placement}\n")
    with pytest.raises(ConfigError, match=message):
        load_cluster_config(path, {})
