"""A free loopback port for a gateway that must keep its port across a restart."""

from __future__ import annotations

import socket


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 now (the OS picks it; a test then fixes it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_port_run(count: int, attempts: int = 50) -> int:
    """Return the first of ``count`` consecutive TCP ports all free on 127.0.0.1 now (for the
    shards' front ends, which listen on ``base + shard``)."""
    for _ in range(attempts):
        base = free_port()
        probes: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError(f"no {count} consecutive free ports found in {attempts} tries")
