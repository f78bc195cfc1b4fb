"""Structured fields on the shells' log lines, in the form `cluster.logs` formats.

A shell logs with ``extra=fields("actor_restarted", child=..., shard=...)``; `cluster.logs`
prints the fields as JSON keys (``--log-format json``) or ``key=value`` after the message. This
module is the one place the attribute's name is spelled, so `actors` need not import
`cluster` (the dependency goes the other way).
"""

from __future__ import annotations

from typing import Any, Final

FIELDS: Final = "fields"
"""The `logging.LogRecord` attribute that carries a line's structured fields."""


def fields(event: str, **values: Any) -> dict[str, dict[str, Any]]:
    """Return ``extra=`` for a log call: the event's name and its fields."""
    return {FIELDS: {"event": event, **values}}
