"""Who is calling, and what they may do: bearer tokens, accounts, the admin role, rate limits.

A client sends ``authorization: Bearer <token>`` metadata. The gateway hashes the token with
SHA-256 and looks the hash up among the configured ones, so the configuration never holds a
usable secret. A token maps to a `Principal`: the accounts it may trade, cancel and read, and
whether it has the admin role (admin calls; acting for any account).

Make a token and its configuration entry with::

    python -m cluster.gateway.auth new --name desk-1 --accounts alice bob
    python -m cluster.gateway.auth hash TOKEN

Refusals are `protocols.errors.NotAuthenticatedError`, `PermissionDeniedError` and
`RateLimitedError` (the tree is drawn there).
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from cluster.gateway.config import TokenEntry
from protocols.errors import NotAuthenticatedError, PermissionDeniedError, RateLimitedError

BEARER = "bearer "


def hash_token(token: str) -> str:
    """Return the lower-case hex SHA-256 of a token, as the configuration stores it."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """What a token may do."""

    name: str
    accounts: frozenset[str]
    admin: bool = False
    token_hash: str = field(default="", repr=False)

    @property
    def only_account(self) -> str | None:
        """Return the token's account when it has exactly one (the default for requests)."""
        if len(self.accounts) == 1:
            return next(iter(self.accounts))
        return None

    def check_account(self, account: str) -> None:
        """Raise `PermissionDeniedError` unless the token may act for ``account``."""
        if not (self.admin or account in self.accounts):
            raise PermissionDeniedError(
                f"token {self.name!r} may not act for account {account!r}"
            )

    def check_accounts(self, accounts: Iterable[str]) -> None:
        """Raise `PermissionDeniedError` for the first account the token may not act for."""
        if self.admin:
            return
        for account in accounts:
            if account not in self.accounts:
                raise PermissionDeniedError(
                    f"token {self.name!r} may not act for account {account!r}"
                )

    def check_admin(self) -> None:
        """Raise `PermissionDeniedError` unless the token has the admin role."""
        if not self.admin:
            raise PermissionDeniedError(f"token {self.name!r} does not have the admin role")


class TokenRegistry:
    """Map bearer tokens (by their SHA-256) to principals."""

    def __init__(self, entries: Iterable[TokenEntry]) -> None:
        self._by_hash: dict[str, Principal] = {}
        for entry in entries:
            self._by_hash[entry.sha256] = Principal(
                name=entry.name or entry.sha256[:8],
                accounts=frozenset(entry.accounts),
                admin=entry.admin,
                token_hash=entry.sha256,
            )

    def authenticate(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Principal:
        """Return the principal of the call's bearer token; raise `NotAuthenticatedError`."""
        header = None
        for key, value in metadata or ():
            if key == "authorization":
                header = value if isinstance(value, str) else value.decode("latin-1")
                break
        if header is None:
            raise NotAuthenticatedError("missing 'authorization: Bearer <token>' metadata")
        if not header[: len(BEARER)].lower() == BEARER:
            raise NotAuthenticatedError("the authorization metadata must be 'Bearer <token>'")
        token = header[len(BEARER):].strip()
        if not token:
            raise NotAuthenticatedError("the bearer token is empty")
        principal = self._by_hash.get(hash_token(token))
        if principal is None:
            raise NotAuthenticatedError("unknown bearer token")
        return principal


class RateLimiter:
    """Keep a token bucket per account: ``rate`` units per second, at most ``burst`` saved up.

    ``clock`` is a monotonic clock in seconds (the gateway passes its own down), so tests
    are deterministic.
    """

    def __init__(
        self,
        rate: float,
        burst: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        max_accounts: int = 100_000,
    ) -> None:
        self.rate = rate
        self.burst = burst if burst > 0 else rate
        self.clock = clock
        self.max_accounts = max_accounts
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, account: str, cost: float = 1.0) -> None:
        """Spend ``cost`` units of the account's budget; raise `RateLimitedError` if short.

        A cost bigger than the whole bucket is allowed when the bucket is full (one large
        batch is not refused forever), and leaves the bucket in debt.
        """
        now = self.clock()
        level, at = self._buckets.get(account, (self.burst, now))
        level = min(self.burst, level + (now - at) * self.rate)
        if level < cost and level < self.burst:
            retry_after_s = (min(cost, self.burst) - level) / self.rate
            raise RateLimitedError(
                f"account {account!r} is over its request rate at this gateway; retry in "
                f"{retry_after_s * 1000:.0f} ms",
                retry_after_s,
            )
        if len(self._buckets) >= self.max_accounts and account not in self._buckets:
            self._buckets.clear()  # bounded memory; a reset only ever gives more budget
        self._buckets[account] = (level - cost, now)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cluster.gateway.auth",
        description="Make bearer tokens for raytrade gateways (the config keeps only hashes).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    hash_command = commands.add_parser("hash", help="print the SHA-256 of a token")
    hash_command.add_argument("token")
    new = commands.add_parser("new", help="make a random token and print its [[token]] entry")
    new.add_argument("--name", default="")
    new.add_argument("--accounts", nargs="*", default=[])
    new.add_argument("--admin", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "hash":
        print(hash_token(args.token))
        return 0
    if not args.accounts and not args.admin:
        parser.error("give --accounts, --admin or both")
    token = secrets.token_urlsafe(32)
    accounts = ", ".join(f'"{account}"' for account in args.accounts)
    print(f"# token (give it to the client; it is not stored anywhere): {token}")
    print("[[token]]")
    if args.name:
        print(f'name = "{args.name}"')
    print(f'sha256 = "{hash_token(token)}"')
    if args.accounts:
        print(f"accounts = [{accounts}]")
    if args.admin:
        print("admin = true")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
