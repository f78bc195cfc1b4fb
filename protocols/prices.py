"""The one spelling of a decimal price on the wire, parsed without ever expanding a number.

Clients may send a limit price as a decimal string (``price_decimal``) instead of integer
units. Every RPC that takes one (SubmitOrder, SubmitOrders, ReplaceOrder) goes through
`parse_price`, so a price string means the same thing, and is refused for the same reasons,
everywhere.

The spelling, checked on the raw text before any arithmetic::

    price    = whole [ "." fraction ]
    whole    = "0" | nonzero { digit }          no leading zeros
    fraction = digit { digit }                  1 to price_scale digits
    digit    = "0" ... "9"                      ASCII only

and at most `MAX_PRICE_TEXT` characters. Nothing else: no sign (a book only holds prices of
at least 1, so a negative price never means anything; ``+`` would be a second spelling), no
exponent (``1e999997`` would be a million-digit number: `Decimal` and `int` expand it, which
once held the gateway's event loop for 38 s), no ``_`` separators, no whitespace, and no
non-ASCII digits (``str.isdigit`` and ``Decimal`` accept Arabic-Indic and fullwidth digits,
so neither is used here). A fraction may be shorter than the instrument's ``price_scale``
(``189.5`` is ``189.50``) but never longer, not even by trailing zeros: "at most price_scale
decimal places" is one rule a client can read off `ListInstruments`, and a longer fraction is
more often a wrong scale than a formatting habit.

`format_price` is the inverse: the canonical spelling of an integer price, which parses back
to the same integer.

Exceptions (from `protocols.errors`)::

    ValueError
    └── InvalidFieldError      the text is not a price of this instrument (-> INVALID_ARGUMENT)
"""

from __future__ import annotations

import re
from typing import Final

from protocols.errors import InvalidFieldError
from protocols.messages import INT64_MAX

__all__ = ["MAX_PRICE_TEXT", "format_price", "parse_price"]

MAX_PRICE_TEXT: Final = 40
"""Longest price string accepted: 19 integer digits, a point and room for any scale."""

# [0-9], not \d: \d matches every Unicode decimal digit, even under fullmatch
_PRICE: Final = re.compile(r"(0|[1-9][0-9]*)(?:\.([0-9]+))?")


def _shown(text: str) -> str:
    if len(text) <= MAX_PRICE_TEXT:
        return repr(text)
    return f"{text[:MAX_PRICE_TEXT]!r}... ({len(text)} characters)"


def parse_price(field: str, text: str, scale: int, symbol: str) -> int:
    """Return the integer price (units of ``10**-scale``) that ``text`` spells.

    Raise `InvalidFieldError` naming ``field`` when ``text`` is not in the one spelling (see
    the module docstring), has more than ``scale`` decimal places, or is beyond int64. The
    tick and the instrument's price band are the caller's checks, shared with integer prices.
    The work is bounded by `MAX_PRICE_TEXT` whatever the text: its length is checked first.
    """
    if len(text) > MAX_PRICE_TEXT:
        raise InvalidFieldError(field, f"{_shown(text)} is longer than {MAX_PRICE_TEXT} "
                                       "characters")
    match = _PRICE.fullmatch(text)
    if match is None:
        raise InvalidFieldError(field, _problem(text, scale))
    whole, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > scale:
        raise InvalidFieldError(
            field, f"{_shown(text)} has more than {scale} decimal places "
                   f"(price_scale of {symbol})",
        )
    # at most 40 + scale ASCII digits: a small integer, whatever the input
    price = int(whole + fraction + "0" * (scale - len(fraction)))
    if price > INT64_MAX:
        raise InvalidFieldError(field, f"{_shown(text)} is beyond the 64-bit price range")
    return price


def format_price(price: int, scale: int) -> str:
    """Return the canonical spelling of a non-negative integer price: ``scale`` decimals."""
    if price < 0:
        raise ValueError(f"a price is never negative: {price}")
    if scale == 0:
        return str(price)
    whole, fraction = divmod(price, 10**scale)
    return f"{whole}.{fraction:0{scale}d}"


def _problem(text: str, scale: int) -> str:
    """Say what is wrong with text that does not match the spelling (the most useful first)."""
    shown = _shown(text)
    if text.startswith("-"):
        return f"{shown} is negative: a limit price must be positive"
    if text.startswith("+"):
        return f"{shown} has a sign: write the digits alone"
    if text != text.strip():
        return f"{shown} has surrounding whitespace"
    if not text.isascii():
        return f"{shown} is not plain ASCII (digits must be 0-9)"
    if "e" in text or "E" in text:
        return f"{shown} has an exponent: write the digits out"
    if len(text) > 1 and text[0] == "0" and text[1] in "0123456789":
        return f"{shown} has a leading zero"
    return (f"{shown} is not a decimal price: ASCII digits, optionally a '.' and up to "
            f"{scale} decimal places, no sign, exponent, separator or space")
