"""The one spelling of a decimal price (protocols.prices), without a server.

One rule per test; the property tests hold the two promises every RPC relies on: an accepted
string is exactly one integer (and the integer's canonical spelling parses back to it), and a
refused string is an `InvalidFieldError` naming the field, whatever the text.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from protocols.errors import InvalidFieldError
from protocols.messages import INT64_MAX
from protocols.prices import MAX_PRICE_TEXT, format_price, parse_price

FIELD = "orders[3].price_decimal"


def parse(text: str, scale: int = 2) -> int:
    return parse_price(FIELD, text, scale, "AAPL")


def refused(text: str, scale: int = 2) -> InvalidFieldError:
    with pytest.raises(InvalidFieldError) as caught:
        parse(text, scale)
    assert caught.value.field == FIELD
    assert len(str(caught.value)) < 300  # a long input is not echoed back whole
    return caught.value


@pytest.mark.parametrize(
    ("text", "scale", "price"),
    [
        ("189.50", 2, 18950),
        ("189.5", 2, 18950),
        ("189", 2, 18900),
        ("0.01", 2, 1),
        ("0", 2, 0),  # parses; "must be positive" is the caller's rule, shared with `price`
        ("1.23456", 5, 123456),
        ("42", 0, 42),
        ("92233720368547758.07", 2, INT64_MAX),
    ],
)
def test_plain_decimals_convert_exactly(text: str, scale: int, price: int) -> None:
    """ASCII digits with an optional fraction of up to price_scale digits are that price."""
    assert parse(text, scale) == price


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("1e999997", "exponent"),  # issue 9, item 2: once 38.7 s of a blocked event loop
        ("9e999999", "exponent"),  # item 3: once INTERNAL (decimal.Overflow)
        ("-9e999999", "negative"),
        ("1.895e2", "exponent"),
        ("1E+3", "exponent"),
        ("+189.5", "sign"),
        ("-1", "negative"),
        ("1_89.50", "not a decimal price"),
        (" 189.5", "whitespace"),
        ("189.5\n", "whitespace"),
        ("\u0661\u0668\u0669", "ASCII"),  # Arabic-Indic 189
        ("\uff11\uff18\uff19", "ASCII"),  # fullwidth 189
        ("NaN", "not a decimal price"),
        ("Infinity", "not a decimal price"),
        ("0x10", "not a decimal price"),
        ("007.5", "leading zero"),
        (".5", "not a decimal price"),
        ("5.", "not a decimal price"),
        ("1.2.3", "not a decimal price"),
        ("1,5", "not a decimal price"),
        ("189.505", "more than 2 decimal places"),
        ("189.500", "more than 2 decimal places"),  # trailing zeros too: one rule
        ("92233720368547758.08", "64-bit"),
        ("9" * 40, "64-bit"),
        ("1" * 41, "longer than 40"),
        ("1" * 1_000_000, "longer than 40"),
    ],
    ids=lambda value: ascii(value)[:24],
)
def test_every_other_spelling_is_refused_naming_the_field(text: str, words: str) -> None:
    """Sign, exponent, separator, whitespace, non-ASCII digit, excess decimals, overflow."""
    assert words in refused(text).reason


def test_a_huge_exponent_is_refused_in_microseconds() -> None:
    """The length and the spelling are checked before any arithmetic: nothing is expanded.

    Before, ``1e999997`` took 38.7 s in the gateway; the budget here is a thousand times what
    the parser needs and still a thousand times less than one old call.
    """
    started = time.perf_counter()
    for _ in range(1000):
        for text in ("1e999997", "9e999999", "-9e999999", "1" * 40, "1" * 1_000_000):
            with pytest.raises(InvalidFieldError):
                parse(text)
    assert time.perf_counter() - started < 1.0


# ------------------------------------------------------------------------------ properties

plain_prices = st.builds(
    lambda whole, fraction: whole + (f".{fraction}" if fraction else ""),
    st.one_of(st.just("0"), st.from_regex(r"[1-9][0-9]{0,19}", fullmatch=True)),
    st.one_of(st.just(""), st.from_regex(r"[0-9]{1,6}", fullmatch=True)),
)
"""Strings in (or just past) the spelling: the accepted side of the boundary, mostly."""

price_alphabet = st.sampled_from([
    *"0123456789.-+eE_ ,\t\n",
    "\u0661", "\uff11", "\u00b2", "\u2070", "\u0966", "\U0001d7ce", "\u00a0", "\u2212",
])


@given(price=st.integers(0, INT64_MAX), scale=st.integers(0, 8))
def test_every_integer_price_round_trips_through_its_canonical_spelling(price: int,
                                                                         scale: int) -> None:
    """integer -> canonical decimal string -> the same integer."""
    assert parse(format_price(price, scale), scale) == price


@given(text=plain_prices, scale=st.integers(0, 8))
@example(text="189.50", scale=2)
def test_every_accepted_string_is_one_integer(text: str, scale: int) -> None:
    """An accepted string's integer, spelled canonically, parses back to the same integer;
    a refused one names the field."""
    try:
        price = parse(text, scale)
    except InvalidFieldError as error:
        assert error.field == FIELD
        return
    assert 0 <= price <= INT64_MAX
    assert parse(format_price(price, scale), scale) == price
    # and it is the value the text says, read the slow exact way (safe: bounded ASCII)
    whole, _, fraction = text.partition(".")
    assert price == int(whole) * 10**scale + int(fraction.ljust(scale, "0") or "0")


@given(text=st.one_of(st.text(), st.text(price_alphabet, max_size=45),
                      st.text(min_size=38, max_size=42)),
       scale=st.integers(0, 8))
@example(text="1e999997", scale=2)
@example(text="\uff11\uff10", scale=2)
def test_any_text_is_a_price_or_an_invalid_field(text: str, scale: int) -> None:
    """Fuzz: random text and Unicode never raise anything but InvalidFieldError (naming the
    field), and what is accepted is in the one spelling."""
    try:
        price = parse(text, scale)
    except InvalidFieldError as error:
        assert error.field == FIELD
        return
    assert text.isascii() and len(text) <= MAX_PRICE_TEXT
    assert set(text) <= set("0123456789.")
    assert parse(format_price(price, scale), scale) == price
