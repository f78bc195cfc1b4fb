"""Gateway authentication, authorization, rate limits and configuration, without a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.config import ConfigError
from cluster.gateway.auth import (
    AuthenticationError,
    PermissionDeniedError,
    RateLimitedError,
    RateLimiter,
    TokenRegistry,
    hash_token,
)
from cluster.gateway.config import GatewayConfig, TokenEntry, load_gateway_config

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
    """No token, another scheme, an empty or an unknown token: AuthenticationError."""
    with pytest.raises(AuthenticationError, match=words):
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
