"""Configuration of the gRPC gateways: listen address, TLS, tokens, limits, batching.

A gateway is configured by one TOML file (or built in code, as the tests do)::

    [gateway]
    host = "127.0.0.1"          # without TLS only a loopback address, unless allow_insecure_remote
    port = 50051
    requests_per_second = 2000  # per account, at this gateway (RESOURCE_EXHAUSTED beyond)

    [tls]                        # optional
    certificate = "server.pem"
    private_key = "server.key"
    client_ca = "ca.pem"         # optional: require client certificates signed by it (mTLS)

    [[token]]                    # only SHA-256 hashes: `python -m cluster.gateway.auth hash`
    name = "desk-1"
    sha256 = "9f86d081884c7d65..."
    accounts = ["alice", "bob"]

    [[token]]
    name = "ops"
    sha256 = "..."
    admin = true

Everything is a frozen msgspec struct validated on load; errors name the file and the field.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

import msgspec

from cluster.config import ConfigError


class TlsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Server certificate and, optionally, the CA that client certificates must chain to."""

    certificate: str
    """PEM file of the server's certificate chain."""
    private_key: str
    """PEM file of the server's private key."""
    client_ca: str = ""
    """PEM file of the CA(s) for client certificates; set: mutual TLS, certificates required."""


class TokenEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One bearer token, stored as its SHA-256 hash."""

    sha256: str
    """Lower-case hex SHA-256 of the token's UTF-8 bytes."""
    name: str = ""
    """Who holds it (shows in logs, never the token)."""
    accounts: list[str] = []
    """Accounts the holder may trade, cancel and read."""
    admin: bool = False
    """May call AdminService (and act for every account)."""


class GatewayConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How one gateway serves. Every field has a default fit for a laptop."""

    host: str = "127.0.0.1"
    port: int = 50051
    """0 picks a free port (tests); the gateway reports the one it bound."""
    allow_insecure_remote: bool = False
    """Without TLS the gateway binds only to a loopback address unless this is true."""
    tls: TlsConfig | None = None
    tokens: list[TokenEntry] = []
    requests_per_second: float = 2000.0
    """Per account at this gateway: orders count one each (a batch counts its orders)."""
    request_burst: float = 0.0
    """Token bucket size; 0: one second's worth."""
    max_message_bytes: int = 8 << 20
    """Largest request or response message. gRPC checks a request's size on the received
    bytes, before anything decodes it (RESOURCE_EXHAUSTED beyond), so together with
    ``max_concurrent_rpcs`` it bounds what requests in progress can hold."""
    max_batch_orders: int = 10_000
    """Most orders in one SubmitOrders call: a longer batch is INVALID_ARGUMENT naming this
    limit before any of its orders is converted."""
    max_concurrent_rpcs: int = 1000
    """Calls in progress at once; beyond, gRPC answers RESOURCE_EXHAUSTED."""
    max_streams_per_token: int = 16
    """Open streams (executions + market data) per token."""
    max_stream_symbols: int = 100
    """Most symbols in one market-data subscription."""
    max_queued_commands: int = 200_000
    """Commands waiting for a shard per shard; beyond, RESOURCE_EXHAUSTED (backpressure)."""
    max_batch_commands: int = 20_000
    """Most commands the gateway sends a shard in one call."""
    max_in_flight_per_shard: int = 2
    """Batches sent to one shard and not yet answered."""
    linger_s: float = 0.001
    """Longest a command waits for more to coalesce with while a batch is in flight."""
    shard_timeout_s: float = 10.0
    """A shard call without an answer after this is UNAVAILABLE (the shard may be stuck)."""
    ring_events: int = 200_000
    """Recent events kept per shard for streams; older ones come from the journal."""
    heartbeat_s: float = 1.0
    """An idle execution stream sends an empty batch (with its cursor) this often."""
    health_check_s: float = 0.5
    """How often the gateway checks its shards (restarts, subscriptions, health status)."""
    quiet_check_s: float = 5.0
    """How often it pings a quiet shard: up, followed without gap or lag, no event since the
    last check, and held alive by Ray (a restart is seen every ``health_check_s`` without a
    ping). Every other shard is pinged every ``health_check_s``."""
    grace_s: float = 2.0
    """On stop, how long calls in progress may finish."""
    metrics_port: int | None = None
    """Serve Prometheus ``/metrics`` on ``host:metrics_port`` (0: any free port, shown in
    the gateway's status); None: no endpoint (the metrics are still kept)."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"gateway.port {self.port} is not a TCP port")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"gateway.metrics_port {self.metrics_port} is not a TCP port")
        if self.tls is None and not self.allow_insecure_remote and not _is_loopback(self.host):
            raise ConfigError(
                f"gateway.host {self.host!r} is not a loopback address and there is no [tls]: "
                "configure TLS, or set allow_insecure_remote = true to serve in the clear"
            )
        for name in ("requests_per_second", "max_message_bytes", "max_batch_orders",
                     "max_concurrent_rpcs", "max_streams_per_token", "max_queued_commands",
                     "max_batch_commands", "max_in_flight_per_shard", "ring_events",
                     "heartbeat_s", "health_check_s", "quiet_check_s", "shard_timeout_s",
                     "max_stream_symbols"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"gateway.{name} must be positive")
        for token in self.tokens:
            if len(token.sha256) != 64 or any(c not in "0123456789abcdef" for c in token.sha256):
                raise ConfigError(
                    f"token {token.name!r}: sha256 must be 64 lower-case hex digits "
                    "(python -m cluster.gateway.auth hash TOKEN)"
                )
            if not token.accounts and not token.admin:
                raise ConfigError(f"token {token.name!r} has neither accounts nor admin")

    @property
    def address(self) -> str:
        """Return ``host:port`` as gRPC binds it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _File(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    gateway: dict[str, object] = {}
    tls: TlsConfig | None = None
    token: list[TokenEntry] = []


def load_gateway_config(path: str | Path, **overrides: object) -> GatewayConfig:
    """Load a gateway TOML file (see the module docstring); keyword arguments override it."""
    try:
        data = tomllib.loads(Path(path).read_text())
        parsed = msgspec.convert(data, _File)
        fields = dict(parsed.gateway)
        fields.update({key: value for key, value in overrides.items() if value is not None})
        base = Path(path).resolve().parent
        tls = parsed.tls
        if tls is not None:  # relative certificate paths are relative to the file
            tls = TlsConfig(
                certificate=str(base / tls.certificate),
                private_key=str(base / tls.private_key),
                client_ca=str(base / tls.client_ca) if tls.client_ca else "",
            )
        return msgspec.convert({**fields, "tls": tls, "tokens": parsed.token}, GatewayConfig,
                               from_attributes=True)
    except (OSError, tomllib.TOMLDecodeError, msgspec.ValidationError) as error:
        raise ConfigError(f"gateway config {path}: {error}") from error


def dev_gateway_config(
    accounts: list[str], port: int = 50051
) -> tuple[GatewayConfig, dict[str, str]]:
    """Return a loopback plaintext gateway config with a fresh token per account and an admin
    token, and the tokens themselves (only their hashes are in the config): for trying the
    API with grpcurl or the Python client, never for production."""
    import secrets

    from cluster.gateway.auth import hash_token

    secrets_by_name = {account: secrets.token_urlsafe(24) for account in accounts}
    secrets_by_name["admin"] = secrets.token_urlsafe(24)
    tokens = [
        TokenEntry(sha256=hash_token(secret), name=name, accounts=[name])
        for name, secret in secrets_by_name.items()
        if name != "admin"
    ]
    tokens.append(
        TokenEntry(sha256=hash_token(secrets_by_name["admin"]), name="admin", admin=True)
    )
    return GatewayConfig(host="127.0.0.1", port=port, tokens=tokens), secrets_by_name
