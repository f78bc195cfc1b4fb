"""Every failure that crosses raytrade's API, drawn once.

The gateway raises these and answers each with its gRPC status (``status``); the gRPC client
turns a status back into the same class (`from_status`); the Python client and the CLI raise
and catch the same classes. A business rejection (risk, matching) is never an exception: it is
an ``OrderRejected`` event. These are for a request the edge refused, and for infrastructure
that did not answer::

    RaytradeError
    ├── ConfigError                 bad configuration or arguments (the CLI exits 2)
    ├── ClusterError                a driver cannot reach a raytrade cluster
    │   ├── ClusterNotFoundError    Ray answers, but no raytrade runs in that namespace
    │   ├── ClusterUnreachableError nothing answered at the address within the wait
    │   └── ActorUnavailableError   a raytrade actor (supervisor, reader, gateway) did not answer
    ├── GatewayStartError           a gateway cannot bind its address or read its certificates
    │   └── PortInUseError          the gateway's port is taken by another process
    ├── RequestError                a request was refused; nothing of it was journaled
    │   ├── InvalidRequestError     INVALID_ARGUMENT
    │   │   └── InvalidFieldError   ... naming the field (``orders[3].price``)
    │   ├── NotAuthenticatedError   UNAUTHENTICATED
    │   ├── PermissionDeniedError   PERMISSION_DENIED
    │   ├── OrderNotFoundError      NOT_FOUND
    │   ├── NotTradableError        FAILED_PRECONDITION
    │   │   ├── SymbolHaltedError   the symbol is halted
    │   │   └── AccountKilledError  the account's kill switch is engaged
    │   ├── RateLimitedError        RESOURCE_EXHAUSTED (``retry_after_s`` when known)
    │   │   ├── QueueFullError      too many commands wait for a shard at this gateway
    │   │   └── TooManyStreamsError the token has as many streams open as it may
    │   ├── HistoryUnavailableError OUT_OF_RANGE: a stream cannot resume from its cursor
    │   ├── DeadlineExceededError   DEADLINE_EXCEEDED (after the client's retries)
    │   └── UnavailableError        UNAVAILABLE: retry with the same client order ids
    │       ├── ShardUnavailableError   a shard's actor died, is restarting or is too slow
    │       └── GatewayUnavailableError the gateway did not answer (after the retries)
    └── MarketDataGapError          a market-data update does not follow the previous one

Retrying after an `UnavailableError` or a `DeadlineExceededError` is safe when the commands
keep their client order ids: a shard answers a command it already applied with a
``DUPLICATE_CLIENT_ORDER_ID`` reject naming the original order instead of applying it again.

This module is pure (no gRPC import): ``status`` is the name of a ``grpc.StatusCode``, and a
gRPC client attaches the real code as ``code``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class RaytradeError(Exception):
    """The root of raytrade's own exceptions.

    ``details`` is the human-readable message; ``code`` is the ``grpc.StatusCode`` when a
    gRPC client raised it from a failed call (None otherwise).
    """

    status: ClassVar[str] = "INTERNAL"
    """The gRPC status a gateway answers this failure with."""

    def __init__(self, details: str = "", *, code: Any = None) -> None:
        super().__init__(details)
        self.details = details
        self.code = code

    def __str__(self) -> str:
        if self.code is not None:
            return f"{self.code.name}: {self.details}"
        return self.details


class ConfigError(RaytradeError, ValueError):
    """A configuration file, option or argument is invalid; the message says which and why."""

    status = "INVALID_ARGUMENT"


class ClusterError(RaytradeError):
    """A driver (CLI, Python client, gateway) cannot reach a raytrade cluster."""

    status = "UNAVAILABLE"


class ClusterNotFoundError(ClusterError):
    """Ray answered, but no raytrade cluster runs there in that namespace (not started, stopped,
    or another ``--namespace``)."""


class ClusterUnreachableError(ClusterError):
    """Nothing answered at the Ray address within the wait (wrong address, firewall, or no Ray
    running there)."""


class ActorUnavailableError(ClusterError):
    """A raytrade actor other than a shard's (a supervisor, the directory, a gateway) did not
    answer: it died, is restarting, is not running, or took too long."""


class GatewayStartError(RaytradeError):
    """A gateway cannot bind its address or read its TLS files."""


class PortInUseError(GatewayStartError):
    """The gateway's port is taken by another process."""


class RequestError(RaytradeError):
    """A request was refused at the edge; nothing of it was journaled."""


class InvalidRequestError(RequestError):
    """A request is malformed; the details say what is wrong."""

    status = "INVALID_ARGUMENT"


class InvalidFieldError(InvalidRequestError, ValueError):
    """One field of a request is malformed: ``field`` names it (``orders[3].price``)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotAuthenticatedError(RequestError):
    """No bearer token, or a token the gateway does not know."""

    status = "UNAUTHENTICATED"


class PermissionDeniedError(RequestError):
    """The token may not act for that account, or lacks the admin role."""

    status = "PERMISSION_DENIED"


class OrderNotFoundError(RequestError):
    """The order is not open for the account (or cannot be in the named symbol's shard)."""

    status = "NOT_FOUND"


class NotTradableError(RequestError):
    """The request cannot be applied now: a halted symbol or a killed account."""

    status = "FAILED_PRECONDITION"


class SymbolHaltedError(NotTradableError):
    """The symbol is halted: no new orders or replaces until it resumes."""


class AccountKilledError(NotTradableError):
    """The account's kill switch is engaged: no new orders or replaces until released."""


class RateLimitedError(RequestError):
    """The account is over its request rate, or the gateway's queues are full.

    ``retry_after_s`` is how long to wait before trying again, when the gateway says.
    """

    status = "RESOURCE_EXHAUSTED"

    def __init__(
        self, details: str = "", retry_after_s: float | None = None, *, code: Any = None
    ) -> None:
        super().__init__(details, code=code)
        self.retry_after_s = retry_after_s


class QueueFullError(RateLimitedError):
    """Too many commands wait for the shard at this gateway; retry after a short pause."""


class TooManyStreamsError(RateLimitedError):
    """The token has as many streams open at this gateway as it may."""


class HistoryUnavailableError(RequestError):
    """A stream cannot resume from its cursor: the events are no longer in any journal, or the
    cursor is beyond the journal's end."""

    status = "OUT_OF_RANGE"


class DeadlineExceededError(RequestError):
    """The call's deadline passed (after the client's retries)."""

    status = "DEADLINE_EXCEEDED"


class UnavailableError(RequestError):
    """Something on the order path did not answer; retrying with the same ids is safe."""

    status = "UNAVAILABLE"


class ShardUnavailableError(UnavailableError):
    """A shard did not answer: its actor died, is restarting, or took too long."""

    def __init__(self, shard: int, reason: str) -> None:
        super().__init__(f"shard {shard} is unavailable: {reason}")
        self.shard = shard
        self.reason = reason


class GatewayUnavailableError(UnavailableError):
    """The gateway or a shard behind it did not answer (after the client's retries)."""


class MarketDataGapError(RaytradeError):
    """A market-data update's ``previous_seq`` is not the last seq seen for its symbol."""


ERROR_KIND_KEY = "raytrade-error"
"""Trailing metadata key of a refused call: the exact class name (``SymbolHaltedError``)."""

_BY_STATUS: dict[str, type[RaytradeError]] = {
    "INVALID_ARGUMENT": InvalidRequestError,
    "UNAUTHENTICATED": NotAuthenticatedError,
    "PERMISSION_DENIED": PermissionDeniedError,
    "NOT_FOUND": OrderNotFoundError,
    "FAILED_PRECONDITION": NotTradableError,
    "RESOURCE_EXHAUSTED": RateLimitedError,
    "OUT_OF_RANGE": HistoryUnavailableError,
    "DEADLINE_EXCEEDED": DeadlineExceededError,
    "UNAVAILABLE": UnavailableError,
}
"""The root of each status's classes: a refusal names one of them."""


def _subclasses(root: type[RaytradeError]) -> dict[str, type[RaytradeError]]:
    found = {root.__name__: root}
    for child in root.__subclasses__():
        found.update(_subclasses(child))
    return found


def from_status(
    code: Any, details: str, *, kind: str = "", retry_after_s: float | None = None
) -> RaytradeError:
    """Return the exception a client raises for a failed call with gRPC status ``code``.

    ``kind`` is the class name the gateway sent (`ERROR_KIND_KEY`): when it names a class of
    this tree with that status, the client raises exactly it (``SymbolHaltedError``, not just
    ``NotTradableError``); otherwise the status decides. Classes whose constructors take more
    than the message (a field, a shard) are raised as their nearest plain parent.
    """
    root = _BY_STATUS.get(code.name, RequestError)
    # without a (known) name, the status's root; UNAVAILABLE without one is the gateway itself
    default = GatewayUnavailableError if root is UnavailableError else root
    chosen = _subclasses(root).get(kind, default) if kind else default
    if chosen in (InvalidFieldError, ShardUnavailableError):
        chosen = root
    if issubclass(chosen, RateLimitedError):
        return chosen(details, retry_after_s, code=code)
    return chosen(details, code=code)
