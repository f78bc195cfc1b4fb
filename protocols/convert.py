"""Validation and conversion between the gRPC API (protobuf) and raytrade's internal messages.

These are the only modules that see both vocabularies, split by job: `protocols.requests`
validates requests and turns them into commands, `protocols.reports` turns events and
read-model rows into replies. `Converter` joins the two for the gateway, which holds one per
cluster; this module re-exports what the gateway imports, so it keeps one import line.

Exceptions (from `protocols.errors`)::

    ValueError
    └── InvalidFieldError      a request field is malformed (-> INVALID_ARGUMENT)
"""

from __future__ import annotations

from protocols.errors import InvalidFieldError
from protocols.reports import ReportBuilder
from protocols.requests import (
    ALL_ACCOUNTS,
    DEFAULT_BOOK_DEPTH,
    MAX_BOOK_DEPTH,
    MAX_ID_LENGTH,
    MAX_SYMBOL_LENGTH,
    InstrumentSpec,
    OrderBatch,
    RequestValidator,
    WireRow,
    check_id,
    check_seq,
    new_order_row,
    shown,
)

__all__ = [
    "ALL_ACCOUNTS",
    "DEFAULT_BOOK_DEPTH",
    "MAX_BOOK_DEPTH",
    "MAX_ID_LENGTH",
    "MAX_SYMBOL_LENGTH",
    "Converter",
    "InstrumentSpec",
    "InvalidFieldError",
    "OrderBatch",
    "WireRow",
    "check_id",
    "check_seq",
    "new_order_row",
    "shown",
]


class Converter(RequestValidator, ReportBuilder):
    """Validate and convert requests for one cluster's instruments; build the replies."""
