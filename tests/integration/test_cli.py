"""The ``raytrade`` command for real, as a subprocess with its own Ray.

`up` serves, `status` and the printed connect hints reach it from "another shell", and Ctrl-C
stops it; `demo` runs quietly; an interrupt at any phase leaves no temporary folder and no
process behind. Each test gives the command a private TMPDIR and RAY_TMPDIR, so it looks only
at its own files, and collects the pids of every process below the command while it runs, so
it can tell afterwards that none survived.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

VENV_BIN = str(Path(sys.executable).parent)
ORPHAN_WAIT_S = 10.0
"""How long Ray's processes may take to exit after the command did."""


@pytest.fixture
def private_tmp() -> Iterator[Path]:
    # short on purpose: Ray's socket paths under RAY_TMPDIR must stay below 108 bytes
    with tempfile.TemporaryDirectory(prefix="rt-cli-") as folder:
        for name in ("tmp", "ray"):
            (Path(folder) / name).mkdir()
        yield Path(folder)


def _environment(private_tmp: Path) -> dict[str, str]:
    """A user's shell: the virtualenv on PATH, no RAY_* settings, private temp folders."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update(TMPDIR=str(private_tmp / "tmp"), RAY_TMPDIR=str(private_tmp / "ray"),
               PYTHONUNBUFFERED="1", PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}")
    return env


def _process_table() -> dict[int, tuple[int, int]]:
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            table[int(entry.name)] = (int(fields[1]), int(fields[19]))  # ppid, start time
    return table


class Watched:
    """A ``raytrade`` subprocess, its output, and every process seen below it."""

    def __init__(self, private_tmp: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cluster.edge.cli", *args], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=_environment(private_tmp),
        )
        self.descendants: dict[int, int] = {}
        self.lines: list[str] = []

    def look(self) -> None:
        """Record the processes below the command now (pid -> start time)."""
        table = _process_table()
        stack = [self.process.pid]
        while stack:
            parent = stack.pop()
            for pid, (ppid, start) in table.items():
                if ppid == parent and pid not in self.descendants:
                    self.descendants[pid] = start
                    stack.append(pid)

    def wait_for_line(self, pattern: str, timeout_s: float = 120.0) -> re.Match[str]:
        """Read stdout until a line matches ``pattern``, looking at the processes meanwhile."""
        assert self.process.stdout is not None
        os.set_blocking(self.process.stdout.fileno(), False)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.look()
            line = self.process.stdout.readline()
            if line:
                self.lines.append(line)
                if found := re.search(pattern, line):
                    return found
            elif self.process.poll() is not None:
                break
            else:
                time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r}:\n{''.join(self.lines)}"
                             f"{self.process.stderr.read() if self.process.stderr else ''}")

    def watch_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.process.poll() is None:
            self.look()
            time.sleep(0.05)

    def interrupt(self, timeout_s: float = 60.0) -> tuple[str, str]:
        """Send SIGINT; return the rest of stdout and all of stderr once it exits."""
        self.look()
        self.process.send_signal(signal.SIGINT)
        return self.finish(timeout_s)

    def finish(self, timeout_s: float = 120.0) -> tuple[str, str]:
        assert self.process.stdout is not None
        os.set_blocking(self.process.stdout.fileno(), True)
        rest, errors = self.process.communicate(timeout=timeout_s)
        return "".join(self.lines) + rest, errors

    def survivors(self) -> list[str]:
        """Wait up to `ORPHAN_WAIT_S` for every process seen below the command to exit;
        return the command lines of those still running."""
        deadline = time.monotonic() + ORPHAN_WAIT_S
        while True:
            table = _process_table()
            alive = [pid for pid, start in self.descendants.items()
                     if pid in table and table[pid][1] == start]
            if not alive or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        return [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
                for pid in alive if Path(f"/proc/{pid}").exists()]

    def kill(self) -> None:
        """End the command if it still runs, and close its pipes (a failed test leaks none)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


def _ray_noise(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if re.search(r"\b(WARNING|INFO)\b", line)
            or re.match(r"\[\d{4}-\d\d-\d\d .*\] \S+\.(cc|h):\d+", line)]


def test_up_serves_its_hints_work_as_printed_and_ctrl_c_stops_everything(
    private_tmp: Path,
) -> None:
    """`raytrade up` with a dev gateway comes up without Ray's noise; both connect hints it
    prints run as printed from another shell; SIGINT, the way to stop a server, stops every
    process it started and exits 0."""
    up = Watched(private_tmp, "up", "--shards", "2", "--namespace", "cli-test", "--data-dir",
                 str(private_tmp / "data"), "--dev-accounts", "alice", "--dev-port", "0")
    try:
        up.wait_for_line(r"^Ctrl-C stops\.")
        output = "".join(up.lines)
        assert "gateway-0: gRPC on 127.0.0.1:" in output
        hints = {match.group(1): match.group(2)
                 for match in re.finditer(r"^from (another shell|Python): (.+)$", output, re.M)}
        assert set(hints) == {"another shell", "Python"}, output
        env = _environment(private_tmp)
        status = subprocess.run(shlex.split(hints["another shell"]), capture_output=True,
                                text=True, timeout=15, env=env, check=False)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "shard 0:" in status.stdout and "shard 1:" in status.stdout
        assert "supervisor-shard-1: running" in status.stdout
        assert "supervisor-gateways: running" in status.stdout
        assert _ray_noise(status.stderr) == [], status.stderr
        python = subprocess.run(["bash", "-c", hints["Python"]], capture_output=True,
                                text=True, timeout=15, env=env, check=False)
        assert python.returncode == 0, python.stderr
        assert python.stdout.strip() == "2 shards up"
        up.watch_for(0.5)
        output, errors = up.interrupt()
    finally:
        up.kill()
    assert up.process.returncode == 0, output + errors
    assert errors == "", errors
    assert output.splitlines()[-2:] == ["stopping (SIGINT) ...", "stopped."], output
    assert up.survivors() == []
    assert (private_tmp / "data" / "raytrade-data.json").exists()
    assert os.listdir(private_tmp / "tmp") == []


def test_a_quiet_demo_prints_its_summary_and_no_ray_noise(private_tmp: Path) -> None:
    """`raytrade demo --orders 2000 --quiet`: the summary on stdout, stderr free of Ray's
    WARNING and INFO lines, and afterwards no temporary folder and no Ray process left."""
    demo = Watched(private_tmp, "demo", "--orders", "2000", "--quiet")
    try:
        demo.watch_for(60.0)
        output, errors = demo.finish()
    finally:
        demo.kill()
    assert demo.process.returncode == 0, output + errors
    assert "raytrade demo: 2,000 commands" in output
    assert "throughput" in output
    assert _ray_noise(errors) == [], errors
    assert errors == ""
    assert demo.survivors() == []
    assert os.listdir(private_tmp / "tmp") == []


@pytest.mark.parametrize("phase", ["before Ray", "Ray start-up", "cluster start", "trading"])
def test_ctrl_c_in_any_phase_of_demo_leaves_nothing_behind(
    private_tmp: Path, phase: str
) -> None:
    """SIGINT before Ray starts, while it starts, while the shards start and while trading:
    exit 130 with one line, no raytrade-demo-* folder, no Ray process left."""
    demo = Watched(private_tmp, "demo", "--orders", "300000", "--quiet")
    try:
        if phase == "trading":
            demo.wait_for_line(r"^started Ray and 2 shards")
            demo.watch_for(1.0)
        else:
            demo.watch_for({"before Ray": 0.5, "Ray start-up": 2.0, "cluster start": 4.5}[phase])
        output, errors = demo.interrupt()
    finally:
        demo.kill()
    assert demo.process.returncode == 130, output + errors
    assert errors.splitlines() == [
        "raytrade: interrupted (SIGINT); everything it started is stopped"], errors
    assert demo.survivors() == []
    assert os.listdir(private_tmp / "tmp") == []
    if phase != "before Ray":
        assert demo.descendants, "the interrupt came before Ray started: the phase is wrong"
