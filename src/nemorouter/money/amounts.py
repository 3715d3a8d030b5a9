"""Amounts are Python ints in pico-USD (1 USD = 10**12); Decimal only at the edges."""

from __future__ import annotations

import re
from decimal import Context, Decimal, InvalidOperation

PICO_PER_USD = 10**12
_PICO_DIGITS = 12
_PLAIN_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
# Enough digits that scaling never rounds, whatever the size of the amount.
_EXACT = Context(prec=1000, Emax=10**6, Emin=-(10**6))


# The largest amount the store holds: a signed 64-bit integer of pico-USD (SQLite INTEGER,
# PostgreSQL BIGINT), about 9.2 million USD. Every amount that enters (a credit, a key limit, a
# price, a threshold, a charge) and every running total (an account's credits, so its usage and
# holds, which never pass its credits) stays within it.
MAX_AMOUNT = 2**63 - 1


class MoneyFormatError(ValueError):
    """A money literal that is not an exact, finite decimal with at most 12 places."""


class AmountRangeError(MoneyFormatError):
    """An amount (or a total it would make) outside what the store holds: +/- MAX_AMOUNT."""


def max_amount_text() -> str:
    """The maximum as operators read it: `$9223372.036854775807`."""
    return "$" + format_usd(MAX_AMOUNT)


def check_amount(pico: int) -> int:
    """`pico` if the store can hold it (|pico| <= MAX_AMOUNT); AmountRangeError otherwise."""
    if -MAX_AMOUNT <= pico <= MAX_AMOUNT:
        return pico
    if pico > 0:
        raise AmountRangeError(f"amount is too large: the most the ledger holds is {max_amount_text()}")
    raise AmountRangeError(f"amount is too negative: the least the ledger holds is -{max_amount_text()}")


def parse_usd(value: object) -> int:
    """Parse a USD amount given as a decimal string, int or Decimal into exact pico-USD.

    Floats are refused: a float has already lost exactness before we see it; so is an amount
    past MAX_AMOUNT either way (AmountRangeError), which the store could not hold.
    """
    if isinstance(value, (bool, float)):
        raise MoneyFormatError("amounts must be decimal strings or exact number literals, not floats")
    if isinstance(value, int):
        return check_amount(value * PICO_PER_USD)
    if isinstance(value, str):
        text = value.strip()
        if not _PLAIN_DECIMAL.fullmatch(text):
            raise MoneyFormatError(f"not a plain decimal amount: {value!r}")
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise MoneyFormatError(f"not a decimal amount: {value!r}") from None
    if not isinstance(value, Decimal):
        raise MoneyFormatError(f"not an amount: {value!r}")
    if not value.is_finite():
        raise MoneyFormatError("amount must be finite")
    if value.adjusted() > 30:  # far past the range: refused before scaling a huge exponent
        return check_amount(MAX_AMOUNT + 1 if value > 0 else -MAX_AMOUNT - 1)
    scaled = value.scaleb(_PICO_DIGITS, context=_EXACT)
    if scaled != scaled.to_integral_value(context=_EXACT):
        raise MoneyFormatError("amount has more than 12 decimal places")
    return check_amount(int(scaled))


def format_usd(pico: int) -> str:
    """Exact decimal text of a pico-USD amount: `0.00012345`, `5.0`, `-0.5`."""
    if pico < 0:
        return "-" + format_usd(-pico)
    whole = pico // PICO_PER_USD
    frac = pico - whole * PICO_PER_USD
    if frac == 0:
        return str(whole) + ".0"
    # Twice as fast as f"{frac:012d}" (no format-spec parsing; this runs twice per request):
    # adding 10**12 gives the zero-padded 12 digits after a leading "1".
    return str(whole) + "." + str(frac + PICO_PER_USD)[1:].rstrip("0")


class Usd:
    """A pico-USD amount marked for JSON: serialized as an exact number literal, never via float."""

    __slots__ = ("pico",)

    def __init__(self, pico: int) -> None:
        self.pico = pico

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Usd) and other.pico == self.pico

    def __hash__(self) -> int:
        return hash(self.pico)

    def __repr__(self) -> str:
        return f"Usd({format_usd(self.pico)})"
