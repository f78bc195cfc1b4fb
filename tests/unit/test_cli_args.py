"""The ``raytrade`` command refuses a mistake before Ray starts: one line, exit 2, at once.

Every test runs the real command as a subprocess, the way a user meets it, in a private temp
folder (so no other Ray on the machine is found); none of them gets as far as starting Ray.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.edge.cli import build_parser
from protocols.journal_format import SEGMENT_HEADER


class Result:
    def __init__(self, completed: subprocess.CompletedProcess[str], elapsed_s: float,
                 ray_sessions: list[str]) -> None:
        self.returncode = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr
        self.elapsed_s = elapsed_s
        self.ray_sessions = ray_sessions
        """The Ray sessions the command started (Ray makes a ``session_*`` folder under
        ``RAY_TMPDIR`` for each): a refusal before Ray starts leaves none."""


@pytest.fixture
def private_tmp() -> Iterator[Path]:
    # short on purpose: Ray's socket paths under RAY_TMPDIR must stay below 108 bytes
    with tempfile.TemporaryDirectory(prefix="rt-args-") as folder:
        (Path(folder) / "tmp").mkdir()
        (Path(folder) / "ray").mkdir()
        yield Path(folder)


def raytrade(private_tmp: Path, *args: str, timeout_s: float = 30.0) -> Result:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update(TMPDIR=str(private_tmp / "tmp"), RAY_TMPDIR=str(private_tmp / "ray"))
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "cluster.edge.cli", *args],
        capture_output=True, text=True, timeout=timeout_s, env=env, check=False,
    )
    sessions = sorted(path.name for path in (private_tmp / "ray").glob("session_*"))
    return Result(completed, time.monotonic() - started, sessions)


def assert_refused(result: Result, *fragments: str, status: int = 2) -> None:
    """One line on stderr naming the problem, nothing on stdout, the status, and no Ray
    started for it (checked by its session folders, not by the clock: a loaded machine
    once took 2.02 s to refuse)."""
    assert result.returncode == status, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("raytrade")
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.ray_sessions == [], "Ray was started before the refusal"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["demo", "--orders", "-5"], "--orders: must be at least 1, not -5"),
        (["demo", "--batch", "0"], "--batch: must be at least 1"),
        (["demo", "--accounts", "0"], "--accounts: must be at least 1"),
        (["demo", "--in-flight", "0"], "--in-flight: must be at least 1"),
        (["demo", "--shards", "0"], "--shards: must be at least 1"),
        (["demo", "--num-cpus", "0"], "--num-cpus: must be at least 1"),
        (["demo", "--top", "-1"], "--top: must be at least 0"),
        (["demo", "--orders", "many"], "'many' is not a whole number"),
        (["up", "--dev-port", "65536"], "--dev-port: must be between 0 and 65535"),
        (["up", "--shards", "-2"], "--shards: must be at least 1"),
        (["status", "--timeout", "0"], "--timeout: must be positive"),
        (["demo", "--no-such-option"], "unrecognized arguments: --no-such-option"),
    ],
)
def test_a_bad_option_is_refused_before_ray(
    private_tmp: Path, args: list[str], fragment: str
) -> None:
    """Each out-of-range or malformed option: one line naming it, exit 2, well under 2 s."""
    assert_refused(raytrade(private_tmp, *args), fragment)


def test_a_pin_to_a_missing_shard_is_refused_before_ray(private_tmp: Path) -> None:
    """An instrument pinned to shard 5 of 2 is a configuration error, named with its file."""
    instruments = private_tmp / "instruments.toml"
    instruments.write_text(
        '[[instrument]]\nsymbol = "AAA"\ntick_size = 1\nlot_size = 1\nprice_scale = 2\n'
        "reference_price = 10000\nshard = 5\n"
    )
    result = raytrade(private_tmp, "demo", "--instruments", str(instruments), "--shards", "2")
    assert_refused(result, str(instruments), "'AAA' is pinned to shard 5; shards are 0..1")


def test_a_changed_shard_count_is_refused_without_touching_the_data_dir(
    private_tmp: Path,
) -> None:
    """`up --shards 3` on journals of 2 shards says so, and makes no shard-2 folder."""
    data = private_tmp / "data"
    for shard in range(2):  # a data dir from before the manifest: folders only
        journal = data / f"shard-{shard}" / "journal"
        journal.mkdir(parents=True)
        (journal / "00000000000000000001.seg").write_bytes(b"\0" * (SEGMENT_HEADER.size + 64))
    result = raytrade(private_tmp, "up", "--shards", "3", "--data-dir", str(data))
    assert_refused(result, "holds 2 shards", "--shards 3 would re-route symbols")
    assert sorted(path.name for path in data.iterdir()) == ["shard-0", "shard-1"]


def test_demo_on_a_data_dir_with_journals_explains_the_duplicates(private_tmp: Path) -> None:
    """Reusing a data dir would reject every seeded order: refused unless --resume."""
    data = private_tmp / "data"
    journal = data / "shard-0" / "journal"
    journal.mkdir(parents=True)
    (journal / "00000000000000000001.seg").write_bytes(b"\0" * (SEGMENT_HEADER.size + 64))
    result = raytrade(private_tmp, "demo", "--shards", "1", "--data-dir", str(data))
    assert_refused(result, "already holds journals", "DUPLICATE_CLIENT_ORDER_ID", "--resume")


def test_a_busy_gateway_port_is_refused_before_ray(private_tmp: Path) -> None:
    """The dev gateway's port held by another process: one line naming the port, exit 2."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = raytrade(private_tmp, "up", "--dev-accounts", "alice", "--dev-port", str(port),
                          "--data-dir", str(private_tmp / "data"))
    assert_refused(result, f"gateway port {port}", "in use")


def test_a_busy_front_end_port_is_refused_before_ray(private_tmp: Path) -> None:
    """Shard 1's front end listens on the file's port + 1: held by another process, the
    command names that port and stops before Ray starts."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = private_tmp / "front-ends.toml"
        config.write_text(f'[gateway]\nhost = "127.0.0.1"\nport = {port - 1}\n')
        result = raytrade(private_tmp, "up", "--shards", "2", "--front-ends", str(config),
                          "--data-dir", str(private_tmp / "data"))
    assert_refused(result, f"port {port}", "in use")


def test_status_without_a_cluster_says_how_to_start_one(private_tmp: Path) -> None:
    """No raytrade cluster on this machine: one line pointing at `raytrade up`, exit 1, no
    traceback. (Ray's "auto" finds any Ray running here by its processes, the test session's
    included: then the line says that Ray holds no raytrade cluster, in the same words.)"""
    result = raytrade(private_tmp, "status")
    assert_refused(result, "no raytrade cluster", "`raytrade up`", status=1)


def test_status_at_an_address_where_nothing_listens_names_it(private_tmp: Path) -> None:
    """Nothing listens at the address: one line naming it, exit 1, quickly."""
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = raytrade(private_tmp, "status", "--address", f"127.0.0.1:{port}")
    assert_refused(result, f"127.0.0.1:{port}", status=1)


def test_status_at_a_listener_that_is_not_ray_gives_up_after_the_timeout(
    private_tmp: Path,
) -> None:
    """Something listens but never answers as Ray: status waits --timeout, then one line."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = raytrade(private_tmp, "status", "--address", f"127.0.0.1:{port}",
                          "--timeout", "2")
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [line for line in result.stderr.splitlines()
                                          if line.startswith("raytrade:")]
    assert len(result.stderr.splitlines()) == 1 and f"127.0.0.1:{port}" in result.stderr
    assert 2.0 <= result.elapsed_s < 8.0, f"took {result.elapsed_s:.1f} s"


def test_global_options_work_after_the_command_too() -> None:
    """`raytrade demo -v` is `raytrade -v demo`; without -v anywhere it is off."""
    parser = build_parser()
    assert parser.parse_args(["demo", "-v"]).verbose is True
    assert parser.parse_args(["-v", "demo"]).verbose is True
    assert parser.parse_args(["status", "--verbose"]).verbose is True
    assert parser.parse_args(["up"]).verbose is False


def test_help_states_the_real_defaults(private_tmp: Path) -> None:
    """Every option has help; defaults are the ones that apply (demo: a temporary data dir)."""
    demo = raytrade(private_tmp, "demo", "--help").stdout
    up = raytrade(private_tmp, "up", "--help").stdout
    assert "fresh temporary" in demo and ".raytrade" not in demo
    assert "(default: .raytrade" in up
    for text, expected in ((demo, ["(default: 100000)", "(default: 2,", "(default: 4)"]),
                           (up, ["(default: 50051)", "(default: raytrade,"])):
        for fragment in expected:
            assert fragment in " ".join(text.split()), fragment
    for name, sub in build_parser()._subparsers._group_actions[0].choices.items():  # type: ignore[union-attr]
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings} has no help"
