"""Gateway authentication, authorization, rate limits and configuration, and how a refusal
reaches a client, without a server: the services run on a fake gRPC context, a fake clock and
an in-process book actor."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest

from actors.book_actor import BookActor
from cluster.clients.grpc_client import error_of
from cluster.config import ConfigError, ShardMap
from cluster.gateway.auth import RateLimiter, TokenRegistry, hash_token
from cluster.gateway.batching import ShardBatcher
from cluster.gateway.config import GatewayConfig, TokenEntry, load_gateway_config
from cluster.gateway.core import GatewayCore
from cluster.gateway.service import TradingService, _refuse
from protocols.convert import Converter
from protocols.errors import (
    AccountKilledError,
    GatewayStartError,
    HistoryUnavailableError,
    InvalidFieldError,
    InvalidRequestError,
    NotAuthenticatedError,
    NotTradableError,
    OrderNotFoundError,
    PermissionDeniedError,
    QueueFullError,
    RateLimitedError,
    RaytradeError,
    ShardUnavailableError,
    SymbolHaltedError,
    TooManyStreamsError,
    UnavailableError,
)
from protocols.generated import trading_pb2 as pb
from protocols.messages import Instrument

ALICE = TokenEntry(sha256=hash_token("alice-secret"), name="alice", accounts=["alice"])
DESK = TokenEntry(sha256=hash_token("desk-secret"), name="desk", accounts=["a", "b"])
OPS = TokenEntry(sha256=hash_token("ops-secret"), name="ops", admin=True)


@pytest.fixture
def registry() -> TokenRegistry:
    return TokenRegistry([ALICE, DESK, OPS])


def test_the_configuration_holds_only_hashes() -> None:
    """A token is stored as the hex SHA-256 of its UTF-8 bytes."""
    assert hash_token("test") == (
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    )


@pytest.mark.parametrize(
    ("metadata", "words"),
    [
        ((), "missing"),
        ((("authorization", "alice-secret"),), "Bearer"),
        ((("authorization", "Bearer "),), "empty"),
        ((("authorization", "Bearer wrong"),), "unknown"),
    ],
)
def test_calls_without_a_known_bearer_token_are_unauthenticated(
    registry: TokenRegistry, metadata: tuple[tuple[str, str], ...], words: str
) -> None:
    """No token, another scheme, an empty or an unknown token: NotAuthenticatedError."""
    with pytest.raises(NotAuthenticatedError, match=words):
        registry.authenticate(metadata)


def test_a_known_token_maps_to_its_principal(registry: TokenRegistry) -> None:
    """The bearer scheme is case-insensitive; the principal carries accounts and role."""
    principal = registry.authenticate((("x-other", "1"), ("authorization", "bearer desk-secret")))
    assert principal.name == "desk" and principal.accounts == {"a", "b"}
    assert principal.only_account is None
    assert registry.authenticate((("authorization", "Bearer alice-secret"),)).only_account == (
        "alice"
    )


def test_a_client_acts_only_for_its_own_accounts(registry: TokenRegistry) -> None:
    """Other accounts and admin calls are PermissionDenied; the admin may act for anyone."""
    alice = registry.authenticate((("authorization", "Bearer alice-secret"),))
    alice.check_account("alice")
    with pytest.raises(PermissionDeniedError, match="'bob'"):
        alice.check_account("bob")
    with pytest.raises(PermissionDeniedError, match="admin role"):
        alice.check_admin()
    ops = registry.authenticate((("authorization", "Bearer ops-secret"),))
    ops.check_admin()
    ops.check_accounts(["anyone", "else"])


def test_rate_limit_is_a_token_bucket_per_account() -> None:
    """Each account has its own bucket; it refills at the rate; the error says when to retry."""
    now = [0.0]
    limiter = RateLimiter(rate=10, burst=5, clock=lambda: now[0])
    for _ in range(5):
        limiter.take("alice")
    with pytest.raises(RateLimitedError) as caught:
        limiter.take("alice")
    assert caught.value.retry_after_s == pytest.approx(0.1)
    limiter.take("bob")  # another account is unaffected
    now[0] = 0.1
    limiter.take("alice")


def test_a_batch_larger_than_the_bucket_passes_when_it_is_full() -> None:
    """A full bucket admits one large batch (then it is in debt), so big batches are possible."""
    now = [0.0]
    limiter = RateLimiter(rate=100, clock=lambda: now[0])
    limiter.take("alice", 1000)
    with pytest.raises(RateLimitedError):
        limiter.take("alice", 1)
    now[0] = 10.0
    limiter.take("alice", 1)


def test_without_tls_only_loopback_unless_allowed() -> None:
    """A plaintext gateway on a non-loopback address needs allow_insecure_remote."""
    GatewayConfig(host="127.0.0.1")
    GatewayConfig(host="::1")
    GatewayConfig(host="localhost")
    with pytest.raises(ConfigError, match="not a loopback address"):
        GatewayConfig(host="0.0.0.0")
    GatewayConfig(host="0.0.0.0", allow_insecure_remote=True)


def test_token_entries_are_checked() -> None:
    """A token hash must be 64 lower-case hex digits and grant accounts or admin."""
    with pytest.raises(ConfigError, match="64 lower-case hex"):
        GatewayConfig(tokens=[TokenEntry(sha256="secret", accounts=["a"])])
    with pytest.raises(ConfigError, match="neither accounts nor admin"):
        GatewayConfig(tokens=[TokenEntry(sha256=hash_token("x"))])


def test_the_config_file_loads_with_tls_paths_relative_to_it(tmp_path: Path) -> None:
    """[gateway], [tls] and [[token]] tables; certificate paths are relative to the file."""
    path = tmp_path / "gateway.toml"
    path.write_text(f"""
[gateway]
host = "0.0.0.0"
port = 50051
requests_per_second = 500

[tls]
certificate = "server.pem"
private_key = "server.key"
client_ca = "ca.pem"

[[token]]
name = "alice"
sha256 = "{hash_token('alice-secret')}"
accounts = ["alice"]
""")
    config = load_gateway_config(path)
    assert config.port == 50051 and config.requests_per_second == 500
    assert config.tls is not None and config.tls.client_ca == str(tmp_path / "ca.pem")
    assert config.tokens[0].accounts == ["alice"]
    with pytest.raises(ConfigError, match="unknown"):
        path.write_text("[gateway]\nhostname = 'x'\n")
        load_gateway_config(path)


# ------------------------------------------------------------------------------ statuses


class FakeContext:
    """The part of a ``grpc.aio.ServicerContext`` the services use; records the status."""

    def __init__(self, metadata: Sequence[tuple[str, str]] = ()) -> None:
        self.metadata = tuple(metadata)
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.trailing: tuple[tuple[str, str], ...] = ()

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def peer(self) -> str:
        return "ipv4:127.0.0.1:50000"

    def set_trailing_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.trailing = metadata

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details


class FakeRpcError(grpc.RpcError):  # type: ignore[misc]  # grpc ships no stubs: Any
    """A failed call as a client sees it, made from the status the gateway set."""

    def __init__(self, context: FakeContext) -> None:
        self.context = context

    def code(self) -> grpc.StatusCode | None:
        return self.context.code

    def details(self) -> str:
        return self.context.details

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.context.trailing


def answer(error: BaseException) -> FakeContext:
    """Return the context after the gateway answered a call that failed with ``error``."""
    context = FakeContext()
    _refuse(context, error)  # type: ignore[arg-type]
    return context


REFUSALS: list[tuple[RaytradeError, grpc.StatusCode, type[RaytradeError], type[RaytradeError]]] = [
    # what the gateway raised, its status, what the client raises (the exact class, except
    # where its constructor needs more than a message), what catches both
    (InvalidFieldError("orders[3].price", "must be positive"), grpc.StatusCode.INVALID_ARGUMENT,
     InvalidRequestError, InvalidRequestError),
    (NotAuthenticatedError("unknown bearer token"), grpc.StatusCode.UNAUTHENTICATED,
     NotAuthenticatedError, NotAuthenticatedError),
    (PermissionDeniedError("not bob"), grpc.StatusCode.PERMISSION_DENIED,
     PermissionDeniedError, PermissionDeniedError),
    (OrderNotFoundError("order 7"), grpc.StatusCode.NOT_FOUND,
     OrderNotFoundError, OrderNotFoundError),
    (SymbolHaltedError("AAPL is halted"), grpc.StatusCode.FAILED_PRECONDITION,
     SymbolHaltedError, SymbolHaltedError),
    (AccountKilledError("alice"), grpc.StatusCode.FAILED_PRECONDITION,
     AccountKilledError, AccountKilledError),
    (QueueFullError("full"), grpc.StatusCode.RESOURCE_EXHAUSTED,
     QueueFullError, QueueFullError),
    (TooManyStreamsError("16 open"), grpc.StatusCode.RESOURCE_EXHAUSTED,
     TooManyStreamsError, TooManyStreamsError),
    (HistoryUnavailableError("gone"), grpc.StatusCode.OUT_OF_RANGE,
     HistoryUnavailableError, HistoryUnavailableError),
    (ShardUnavailableError(1, "restarting"), grpc.StatusCode.UNAVAILABLE,
     UnavailableError, UnavailableError),
]


@pytest.mark.parametrize(("error", "status", "client_class", "both"), REFUSALS,
                         ids=[type(refusal[0]).__name__ for refusal in REFUSALS])
def test_a_refusal_reaches_the_client_as_its_own_class(
    error: RaytradeError, status: grpc.StatusCode, client_class: type[RaytradeError],
    both: type[RaytradeError],
) -> None:
    """The gateway answers a refusal with its class's status, message and name; the client
    raises the same class, so one ``except`` clause catches it in the gateway and in a
    client."""
    context = answer(error)
    assert context.code == status and context.details == error.details
    raised = error_of(FakeRpcError(context))
    assert type(raised) is client_class
    assert isinstance(error, both) and isinstance(raised, both)
    assert raised.code == status and raised.details == error.details


@pytest.mark.parametrize("error", [RuntimeError("/secret/path"), KeyError("secret"),
                                   GatewayStartError("secret certificate path")])
def test_anything_else_is_internal_with_an_incident_id_and_no_internals(
    error: BaseException,
) -> None:
    """A bug, or a raytrade error whose status is INTERNAL, tells the client only an
    incident id (the details are in the gateway's log)."""
    context = answer(error)
    assert context.code == grpc.StatusCode.INTERNAL
    assert context.details.startswith("internal error (logged as ")
    assert "secret" not in context.details


def test_a_rate_refusal_says_when_to_retry() -> None:
    """RESOURCE_EXHAUSTED with a known wait carries ``retry-after-ms``; the client reads it."""
    context = answer(RateLimitedError("over the rate", 0.25))
    assert ("retry-after-ms", "250") in context.trailing
    raised = error_of(FakeRpcError(context))
    assert isinstance(raised, RateLimitedError) and raised.retry_after_s == 0.25
    # no wait known: no header
    assert [key for key, _ in answer(QueueFullError("full")).trailing] == ["raytrade-error"]


def test_an_unknown_class_name_falls_back_to_the_status() -> None:
    """A class name the client does not know (an older or newer gateway) or one of another
    status is ignored: the status decides, so the client still raises a precise parent."""
    context = answer(SymbolHaltedError("AAPL is halted"))
    context.trailing = (("raytrade-error", "SomethingNew"),)
    assert type(error_of(FakeRpcError(context))) is NotTradableError
    context.trailing = (("raytrade-error", "OrderNotFoundError"),)
    assert type(error_of(FakeRpcError(context))) is NotTradableError


# ------------------------------------------------------------------------------ the clock


class FakeClock:
    """A gateway clock that moves only when the test moves it."""

    def __init__(self) -> None:
        self.wall_ns = 1_700_000_000_123_456_789
        self.monotonic_s = 0.0

    def time_ns(self) -> int:
        return self.wall_ns

    def monotonic(self) -> float:
        return self.monotonic_s


def test_the_gateway_stamps_and_limits_on_its_injected_clock(tmp_path: Path) -> None:
    """Ingress timestamps and the rate limit come from the clock given to `GatewayCore`."""
    clock = FakeClock()
    config = GatewayConfig(tokens=[ALICE], requests_per_second=1)
    instruments = [Instrument(symbol="AAPL")]
    core = GatewayCore("gateway-test", config, namespace="unit", shard_map=ShardMap(1),
                       instruments=instruments, data_dir=str(tmp_path),
                       client_order_id_window=1000, clock=clock)
    book = BookActor(0, instruments)

    async def send(payload: bytes) -> bytes:
        return book.apply_batch_with_ends(payload)

    core.batchers[0] = ShardBatcher(0, send)
    service = TradingService(core, TokenRegistry([ALICE]), Converter(instruments, {"AAPL": 0}),
                             config)
    context = FakeContext((("authorization", "Bearer alice-secret"),))

    def order(client_order_id: str) -> pb.NewOrderRequest:
        return pb.NewOrderRequest(client_order_id=client_order_id, symbol="AAPL",
                                  side=pb.SIDE_BUY, order_type=pb.ORDER_TYPE_LIMIT,
                                  quantity=1, price=100)

    async def scenario() -> None:
        reply = await service.SubmitOrder(order("first"), context)
        assert [report.ts_ns for report in reply.reports] == [clock.wall_ns]
        # one a second, and no time has passed: the status is set and no reply is sent
        assert await service.SubmitOrder(order("second"), context) is None
        assert context.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert ("retry-after-ms", "1000") in context.trailing
        clock.monotonic_s += 1.0
        clock.wall_ns += 5_000
        reply = await service.SubmitOrder(order("third"), context)
        assert [report.ts_ns for report in reply.reports] == [clock.wall_ns]

    asyncio.run(scenario())
