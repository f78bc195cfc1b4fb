"""Structured logs: one logger per component, text for people or JSON lines for machines.

Every module logs through its own ``logging.getLogger(__name__)``, so a line names its
component (``cluster.gateway.service``, ``actors.supervisor``, ...). What an operator or an
auditor searches for (a reject, an admin action, a restart, a halt) also carries structured
fields: the account, order id, shard, sequence number, reject code and so on. A line gets them
through `log_event` (or ``extra={"fields": {...}}`` on any logging call)::

    log_event(log, logging.WARNING, "kill_switch", "account %s killed", "alice",
              account="alice", principal="ops", shards=[0, 1])

`configure_logging` installs one handler on the root logger with either format:

``text``  ``2026-12-02T14:30:00.123Z WARNING cluster.gateway.service: account alice killed
          event=kill_switch account=alice principal=ops shards=[0, 1]``
``json``  one object per line: ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``message``,
          then ``event`` and the fields (a field named like one of those four is written
          with a ``field_`` prefix), and ``exception`` with the traceback if there is one.

Ray worker processes (book actors, readers, gateways) configure themselves from the
environment instead: `configure_logging_from_env` reads ``RAYTRADE_LOG_FORMAT`` (``text`` or
``json``) and ``RAYTRADE_LOG_LEVEL``, and does nothing when neither is set, so Ray's own
worker logging stays as it is by default. Run it as the job's ``worker_process_setup_hook``
(``"cluster.logs.configure_logging_from_env"``) with the variables in the runtime env.

A line with fields logged while an OpenTelemetry span is current (in the gateway: inside an
RPC's server span, `cluster.gateway.tracing`) also gets ``trace_id`` and ``span_id``, in W3C
hex, so a reject or a refusal leads to its trace (`trace_fields`).

Hot paths do not log: a normal order never produces a line; a reject, a refusal or an admin
action does, and a caller that would have to scan a batch to find them checks
``logger.isEnabledFor`` first.
"""

from __future__ import annotations

import datetime
import enum
import json
import logging
import os
import sys
from collections.abc import Mapping
from typing import IO, Any, Final, Literal

from actors.logfields import FIELDS as LOG_FIELDS

__all__ = [
    "FIELDS",
    "FORMAT_ENV",
    "LEVEL_ENV",
    "JsonFormatter",
    "LogFormat",
    "TextFormatter",
    "configure_logging",
    "configure_logging_from_env",
    "log_event",
    "trace_fields",
]

LogFormat = Literal["text", "json"]

FIELDS: Final = LOG_FIELDS
"""The record attribute with a line's fields (`actors.logfields`, where the shells set it)."""
"""The ``extra`` key (and so the `logging.LogRecord` attribute) that holds a line's fields."""
FORMAT_ENV: Final = "RAYTRADE_LOG_FORMAT"
"""Environment variable naming the log format of a process: ``text`` or ``json``."""
LEVEL_ENV: Final = "RAYTRADE_LOG_LEVEL"
"""Environment variable naming the log level of a process (``INFO``, ``WARNING``, ...)."""

_RESERVED: Final = frozenset({"ts", "level", "logger", "message", "exception"})


def log_event(
    logger: logging.Logger, level: int, event: str, message: str, /, *args: object,
    **fields: Any,
) -> None:
    """Log ``message % args`` at ``level`` with the event's name and structured ``fields``.

    Costs one level check when the level is off. Inside a span, the fields get its
    ``trace_id`` and ``span_id`` (`trace_fields`).
    """
    if logger.isEnabledFor(level):
        logger.log(level, message, *args,
                   extra={FIELDS: {"event": event, **fields, **trace_fields()}}, stacklevel=2)


def trace_fields() -> dict[str, str]:
    """Return ``trace_id`` and ``span_id`` of the current OpenTelemetry span ({} if none)."""
    # a process that never imported OpenTelemetry has no span (and need not pay tens of
    # milliseconds to import the API to learn that)
    api = sys.modules.get("opentelemetry.trace")
    if api is None:
        return {}
    context = api.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": api.format_trace_id(context.trace_id),
            "span_id": api.format_span_id(context.span_id)}


def _fields(record: logging.LogRecord) -> Mapping[str, Any]:
    fields = getattr(record, FIELDS, None)
    if not isinstance(fields, Mapping):
        return {}
    if "trace_id" not in fields:
        # a line given its fields with ``extra=`` rather than `log_event`: formatted in the
        # thread that logged it (a stream handler), so the span is still the current one
        traced = trace_fields()
        if traced:
            return {**fields, **traced}
    return fields


def _plain(value: Any) -> Any:
    """Return a field's value as JSON has it: an enum by name, a set as a sorted list."""
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(item) for item in value)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}Z"


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object on one line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _fields(record).items():
            line[f"field_{key}" if key in _RESERVED else key] = _plain(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str, separators=(",", ":"))


def _text_value(value: Any) -> str:
    value = _plain(value)
    if isinstance(value, str):
        # quoted when it could be misread as several fields (or as a new line)
        if not value or any(char.isspace() or char in "\"=" for char in value):
            return json.dumps(value, ensure_ascii=False)
        return value
    return str(value)


class TextFormatter(logging.Formatter):
    """Format a record as ``ts LEVEL logger: message key=value ...`` for people."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        fields = _fields(record)
        if fields:
            text += " " + " ".join(f"{key}={_text_value(value)}" for key, value in fields.items())
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            text += "\n" + record.exc_text
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text


class _RaytradeHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `configure_logging` installs (so a second call replaces it)."""


def configure_logging(
    format: LogFormat = "text",
    level: int | str = logging.INFO,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send every logger's lines to ``stream`` (stderr) in ``format`` from ``level`` up.

    Install one handler on the root logger, replacing the one an earlier call installed and
    leaving any other handler alone; return it. Raise `ValueError` for an unknown format.
    """
    if format == "json":
        formatter: logging.Formatter = JsonFormatter()
    elif format == "text":
        formatter = TextFormatter()
    else:
        raise ValueError(f"log format {format!r}: use 'text' or 'json'")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _RaytradeHandler):
            root.removeHandler(handler)
            handler.close()
    handler = _RaytradeHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler


def configure_logging_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """Configure this process from ``RAYTRADE_LOG_FORMAT`` and ``RAYTRADE_LOG_LEVEL``.

    Return False, changing nothing, when neither is set; raise `ValueError` for a format or
    level that does not exist (a typo should not leave a worker logging nothing).
    """
    environ = os.environ if environ is None else environ
    format_name = environ.get(FORMAT_ENV, "").strip().lower()
    level_name = environ.get(LEVEL_ENV, "").strip().upper()
    if not format_name and not level_name:
        return False
    if format_name not in ("", "text", "json"):
        raise ValueError(f"{FORMAT_ENV}={format_name!r}: use 'text' or 'json'")
    level: int | str = logging.INFO
    if level_name:
        if not isinstance(logging.getLevelName(level_name), int):
            raise ValueError(f"{LEVEL_ENV}={level_name!r} is not a log level")
        level = level_name
    configure_logging("json" if format_name == "json" else "text", level)
    return True
