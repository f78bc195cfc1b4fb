"""Times the researchers' commands read from a user: nanoseconds or ISO 8601 (no heavy imports,
so `raytrade audit` does not load DuckDB to parse ``--from``)."""

from __future__ import annotations

import datetime
import re


def parse_time_ns(text: str) -> int:
    """Return nanoseconds since the epoch from an integer or an ISO 8601 time (UTC if naive)."""
    text = text.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        raise ValueError(f"time {text!r}: give nanoseconds since the epoch or ISO 8601, "
                         f"e.g. 2026-12-02T14:30:00") from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    delta = moment - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1_000
