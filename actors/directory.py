"""The directory actor: where a driver or gateway learns the cluster's topology.

It holds the topology (configuration, instruments, shard map) as an opaque msgspec blob that
cluster/ encodes and decodes, so this layer does not depend on cluster's types.
"""

from __future__ import annotations


class Directory:
    """Hold the topology of a running raytrade cluster."""

    def __init__(self, topology: bytes) -> None:
        self._topology = topology

    def topology(self) -> bytes:
        """Return the encoded topology."""
        return self._topology
