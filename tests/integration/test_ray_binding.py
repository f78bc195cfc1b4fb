"""A local single-machine Ray listens on loopback only, and drivers still join it.

Issue 9, item 12: a private local start made Ray's GCS, raylet, object manager, workers and
the autoscaler monitor's metrics port listen on every interface. Each test starts Ray the way
`raytrade up` does (`cluster.edge.wiring.start_ray` in its own process, with a private
RAY_TMPDIR and no RAY_* settings), reads the listening TCP sockets of that process and every
process below it from /proc (``/proc/net/tcp``, ``tcp6``, matched by inode to
``/proc/<pid>/fd``), and stops what it started by pid.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

NAMESPACE = "ray-binding"
START_TIMEOUT_S = 90.0

HOST = textwrap.dedent(f"""
    import sys
    from cluster.edge import handles
    from cluster.edge.wiring import start_ray
    from tests.integration.supervised import Worker

    address = start_ray(num_cpus=1, namespace={NAMESPACE!r})
    handles.spawn(Worker, "echo", {NAMESPACE!r}, "echo")
    handles.SupervisorHandle("echo", {NAMESPACE!r}).ping().result(60.0)  # a worker is up
    print(address, flush=True)
    sys.stdin.read()  # serve until the test closes stdin
    handles.stop_ray()
""")

JOINER = textwrap.dedent(f"""
    import sys
    from cluster.edge import handles

    handles.join_ray(sys.argv[1], {NAMESPACE!r}, timeout_s=30.0)
    print(handles.SupervisorHandle("echo", {NAMESPACE!r}).ping().result(30.0)[0], flush=True)
    handles.stop_ray()
""")


class LocalRay:
    """A private local Ray in a subprocess, started as `raytrade up` starts it."""

    def __init__(self, process: subprocess.Popen[str], address: str, env: dict[str, str]):
        self.process = process
        self.address = address
        self.env = env


def _environment(folder: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update(TMPDIR=str(folder / "tmp"), RAY_TMPDIR=str(folder / "ray"), PYTHONUNBUFFERED="1",
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    return env


@pytest.fixture(scope="module")
def local_ray() -> Iterator[LocalRay]:
    # a short path on purpose: Ray's socket paths under RAY_TMPDIR must stay below 108 bytes
    with tempfile.TemporaryDirectory(prefix="rt-bind-") as name:
        folder = Path(name)
        for sub in ("tmp", "ray"):
            (folder / sub).mkdir()
        env = _environment(folder)
        process = subprocess.Popen([sys.executable, "-c", HOST], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True, env=env,
                                   start_new_session=True)
        try:
            assert process.stdout is not None
            address = _read_line(process, START_TIMEOUT_S)
            yield LocalRay(process, address, env)
        finally:
            _stop(process)


def _read_line(process: subprocess.Popen[str], timeout_s: float) -> str:
    import selectors

    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            raise AssertionError(f"the local Ray did not start within {timeout_s} s")
    line = process.stdout.readline().strip()
    assert line, f"the local Ray's process ended (exit code {process.poll()})"
    return line


def _stop(process: subprocess.Popen[str]) -> None:
    below = {pid: _start_time(pid) for pid in _descendants(process.pid) if pid != process.pid}
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()
    time.sleep(1.0)  # Ray's daemons exit by themselves after the driver's shutdown
    for pid, started in below.items():  # only what this test started: same pid, same start
        if started is not None and _start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _listening() -> dict[int, tuple[str, int]]:
    """Return every listening TCP socket on the machine: inode -> (address, port)."""
    found = {}
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            hex_address, hex_port = fields[1].split(":")
            # the kernel prints the address as 32-bit words in host (little-endian) order
            words = [int(hex_address[i : i + 8], 16) for i in range(0, len(hex_address), 8)]
            raw = b"".join(struct.pack("<I", word) for word in words)
            found[int(fields[9])] = (socket.inet_ntop(family, raw), int(hex_port, 16))
    return found


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")[:100]
    except OSError:
        return "?"


def test_a_local_ray_listens_on_loopback_only(local_ray: LocalRay) -> None:
    """Rule: no process of a local start listens on 0.0.0.0, ::, or a non-loopback address."""
    listening = _listening()
    sockets = [
        (pid, listening[inode], _command(pid))
        for pid in _descendants(local_ray.process.pid)
        for inode in _socket_inodes(pid)
        if inode in listening
    ]
    commands = " ".join(command for _, _, command in sockets)
    assert "gcs_server" in commands and "raylet" in commands, sockets  # the test sees Ray
    exposed = [entry for entry in sockets if not _is_loopback(entry[1][0])]
    assert exposed == [], "listening beyond loopback:\n" + "\n".join(map(str, exposed))


def test_the_printed_address_is_loopback(local_ray: LocalRay) -> None:
    """Rule: the address `raytrade up` prints for other drivers is the loopback one."""
    host = local_ray.address.rpartition(":")[0]
    assert _is_loopback(host), local_ray.address


@pytest.mark.parametrize("how", ["address", "auto"])
def test_a_driver_joins_a_loopback_ray(local_ray: LocalRay, how: str) -> None:
    """Rule: another process joins by the printed address, or by "auto" (RAY_ADDRESS)."""
    env = dict(local_ray.env)
    if how == "auto":
        env["RAY_ADDRESS"] = local_ray.address
    target = local_ray.address if how == "address" else "auto"
    started = time.monotonic()
    joined = subprocess.run([sys.executable, "-c", JOINER, target], capture_output=True,
                            text=True, env=env, timeout=120)
    assert joined.returncode == 0, joined.stderr[-2000:]
    assert joined.stdout.strip(), joined.stderr[-2000:]  # the actor's incarnation
    assert time.monotonic() - started < 60
