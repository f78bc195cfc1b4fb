"""Structured logs: JSON lines that parse, with their fields; text lines with key=value; the
environment switch for Ray workers; and the gateway's lines for refusals, rejects and admin
actions."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest

from actors.book_actor import BookActor
from cluster.config import ShardMap
from cluster.gateway.auth import TokenRegistry, hash_token
from cluster.gateway.batching import ShardBatcher
from cluster.gateway.config import GatewayConfig, TokenEntry
from cluster.gateway.core import GatewayCore
from cluster.gateway.service import AdminService, TradingService
from cluster.logs import (
    FORMAT_ENV,
    LEVEL_ENV,
    JsonFormatter,
    configure_logging,
    configure_logging_from_env,
    log_event,
)
from protocols.convert import Converter
from protocols.generated import trading_pb2 as pb
from protocols.messages import Instrument, RejectCode

pytestmark = pytest.mark.usefixtures("restore_root_logger")


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_parse_and_carry_the_fields() -> None:
    """One object per line: ts, level, logger, message, the event and every field; enums by
    name; a field named like a standard key does not overwrite it."""
    stream = io.StringIO()
    configure_logging("json", logging.INFO, stream)
    log = logging.getLogger("raytrade.test.component")
    log_event(log, logging.WARNING, "order_rejected", "shard %d rejected %s", 3, "c-1",
              account="erin", order_id=3 << 40 | 7, shard=3, seq=42,
              code=RejectCode.RISK_MAX_POSITION, message="not the message", shards={2, 1})
    log.info("plain line\nwith a newline")
    log.debug("below the level")
    first, second = lines(stream)
    assert first["level"] == "WARNING" and first["logger"] == "raytrade.test.component"
    assert first["message"] == "shard 3 rejected c-1"
    assert first["ts"].endswith("Z") and first["ts"][10] == "T"
    assert {key: first[key] for key in ("event", "account", "order_id", "shard", "seq", "code")
            } == {"event": "order_rejected", "account": "erin", "order_id": 3 << 40 | 7,
                  "shard": 3, "seq": 42, "code": "RISK_MAX_POSITION"}
    assert first["field_message"] == "not the message"
    assert first["shards"] == [1, 2]
    assert second["message"] == "plain line\nwith a newline"  # escaped: still one line
    assert "event" not in second


def test_extra_fields_work_on_any_logging_call_and_exceptions_stay_on_one_line() -> None:
    """``extra={"fields": ...}`` is the same as `log_event`; a traceback is one JSON string."""
    stream = io.StringIO()
    configure_logging("json", "INFO", stream)
    log = logging.getLogger("raytrade.test.extra")
    try:
        raise RuntimeError("disk on fire")
    except RuntimeError:
        log.exception("append failed", extra={"fields": {"shard": 1, "seq": 9}})
    (line,) = lines(stream)
    assert line["level"] == "ERROR" and line["shard"] == 1 and line["seq"] == 9
    assert "RuntimeError: disk on fire" in line["exception"]


def test_text_lines_append_the_fields_as_key_value() -> None:
    """Text for people: the message, then key=value, values with spaces quoted."""
    stream = io.StringIO()
    configure_logging("text", logging.INFO, stream)
    log_event(logging.getLogger("raytrade.test.text"), logging.INFO, "halt", "halted %s",
              "AAPL", symbol="AAPL", principal="ops desk", halted=True)
    (line,) = stream.getvalue().splitlines()
    assert line.endswith('INFO raytrade.test.text: halted AAPL event=halt symbol=AAPL '
                         'principal="ops desk" halted=True')


def test_configuring_again_replaces_only_its_own_handler() -> None:
    """A second call does not double every line, and leaves other handlers alone."""
    other = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(other)
    first, second = io.StringIO(), io.StringIO()
    configure_logging("json", logging.INFO, first)
    configure_logging("json", logging.INFO, second)
    logging.getLogger("raytrade.test.again").info("once")
    assert first.getvalue() == ""
    assert [line["message"] for line in lines(second)] == ["once"]
    assert other in logging.getLogger().handlers
    with pytest.raises(ValueError, match="log format"):
        configure_logging("yaml", logging.INFO)  # type: ignore[arg-type]


def test_ray_workers_configure_themselves_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing set: nothing changes. RAYTRADE_LOG_FORMAT=json: JSON lines from the level in
    RAYTRADE_LOG_LEVEL. A typo is an error, not a silent worker."""
    root = logging.getLogger()
    before = list(root.handlers)
    assert configure_logging_from_env({}) is False
    assert root.handlers == before
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert configure_logging_from_env({FORMAT_ENV: "json", LEVEL_ENV: "warning"}) is True
    installed = [handler for handler in root.handlers if handler not in before]
    assert len(installed) == 1 and isinstance(installed[0].formatter, JsonFormatter)
    assert root.level == logging.WARNING
    with pytest.raises(ValueError, match=FORMAT_ENV):
        configure_logging_from_env({FORMAT_ENV: "jsn"})
    with pytest.raises(ValueError, match=LEVEL_ENV):
        configure_logging_from_env({LEVEL_ENV: "LOUD"})


# ------------------------------------------------------------------------------ the gateway

ERIN = TokenEntry(sha256=hash_token("erin-secret"), name="erin", accounts=["erin"])
OPS = TokenEntry(sha256=hash_token("ops-secret"), name="ops", admin=True)


class FakeContext:
    """The part of a ``grpc.aio.ServicerContext`` the services use."""

    def __init__(self, metadata: Sequence[tuple[str, str]] = ()) -> None:
        self.metadata = tuple(metadata)
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def peer(self) -> str:
        return "ipv4:127.0.0.1:50123"

    def set_trailing_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        pass

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details


def test_the_gateway_logs_refusals_rejects_and_admin_actions_with_fields(
    tmp_path: Path,
) -> None:
    """A refused request, a shard's reject and an admin action are one JSON line each, with
    account, order id, shard, seq, code and who asked; an accepted order logs nothing."""
    stream = io.StringIO()
    configure_logging("json", logging.INFO, stream)
    instruments = [Instrument(symbol="AAPL")]
    config = GatewayConfig(tokens=[ERIN, OPS])
    core = GatewayCore("gateway-7", config, namespace="unit", shard_map=ShardMap(1),
                       instruments=instruments, data_dir=str(tmp_path),
                       client_order_id_window=1000)
    book = BookActor(0, instruments)

    async def send(payload: bytes) -> bytes:
        return book.apply_batch_with_ends(payload)

    core.batchers[0] = ShardBatcher(0, send)
    tokens = TokenRegistry([ERIN, OPS])
    converter = Converter(instruments, {"AAPL": 0})
    trading = TradingService(core, tokens, converter, config)
    admin = AdminService(core, tokens, converter, config, lambda: [])
    erin = FakeContext((("authorization", "Bearer erin-secret"),))
    ops = FakeContext((("authorization", "Bearer ops-secret"),))

    def order(client_order_id: str) -> pb.NewOrderRequest:
        return pb.NewOrderRequest(client_order_id=client_order_id, symbol="AAPL",
                                  side=pb.SIDE_BUY, order_type=pb.ORDER_TYPE_LIMIT,
                                  quantity=1, price=100)

    async def scenario() -> None:
        assert await trading.SubmitOrder(order("ok"), erin) is not None
        assert await trading.SubmitOrder(order("ok"), erin) is not None  # a duplicate: rejected
        assert await admin.SetKillSwitch(pb.SetKillSwitchRequest(account="erin", engaged=True),
                                         erin) is None  # erin is no admin: refused
        await admin.SetKillSwitch(pb.SetKillSwitchRequest(account="erin", engaged=True), ops)

    asyncio.run(scenario())
    found = {line.get("event"): line for line in lines(stream)
             if line["logger"] == "cluster.gateway.service"}
    assert set(found) == {"order_rejected", "request_refused", "admin_action"}
    rejected = found["order_rejected"]
    assert rejected["level"] == "INFO" and rejected["logger"] == "cluster.gateway.service"
    assert {key: rejected[key] for key in ("account", "client_order_id", "shard", "code")} == {
        "account": "erin", "client_order_id": "ok", "shard": 0,
        "code": "DUPLICATE_CLIENT_ORDER_ID"}
    assert rejected["order_id"] == 1 and rejected["seq"] > 0
    assert rejected["origin"] == "erin|gateway-7|ipv4:127.0.0.1:50123"
    refused = found["request_refused"]
    assert (refused["rpc"], refused["status"], refused["error"], refused["peer"]) == (
        "SetKillSwitch", "PERMISSION_DENIED", "PermissionDeniedError", "ipv4:127.0.0.1:50123")
    action = found["admin_action"]
    assert action["level"] == "WARNING"
    assert (action["action"], action["account"], action["principal"]) == (
        "kill_switch_engaged", "erin", "ops")
    assert action["shards"] == [0] and action["seq"] == {"0": action["seq"]["0"]}
    assert action["cancelled"] == 1  # erin's resting order
    assert action["origin"] == "ops|gateway-7|ipv4:127.0.0.1:50123"
