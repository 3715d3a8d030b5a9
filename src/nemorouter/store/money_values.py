"""What a money write may carry, checked before it reaches SQL.

A value SQL cannot take (an int past 64 bits, an object the driver cannot bind) or a charge no
ledger should hold (a negative cost, one past MAX_AMOUNT) is refused here with a StoreError
naming the request, so it fails that request alone: it never reaches a SQLite batch, where it
would fail every request sharing it, nor a PostgreSQL statement. Running totals are checked
where they are known (`money_mirror`, `sqlite_money`): SQLite would silently turn an
overflowing INTEGER sum into a REAL.
"""

from __future__ import annotations

from collections.abc import Iterable

from nemorouter.money.amounts import MAX_AMOUNT, AmountRangeError, format_usd, max_amount_text
from nemorouter.store.base import StoreError
from nemorouter.store.records import Generation

_INT64_MIN = -(2**63)


def check_amount_of(request_id: str, what: str, value: object) -> int:
    """`value` if it is a whole pico-USD amount from 0 to MAX_AMOUNT; StoreError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_AMOUNT:
        return value
    raise StoreError(
        f"request {request_id}: {what} {value!r} is not an amount from 0 to {format_usd(MAX_AMOUNT)} USD"
        " (pico-USD integer); nothing was written"
    )


def check_columns(request_id: str, values: Iterable[object]) -> None:
    """Every value is one SQL can hold: NULL, text, or a signed 64-bit integer."""
    for value in values:
        if value is None or isinstance(value, str):
            continue
        if isinstance(value, int) and _INT64_MIN <= value <= MAX_AMOUNT:
            continue
        shown = repr(value)
        raise StoreError(
            f"request {request_id}: the value {shown[:80]} cannot be stored (not text or a 64-bit integer);"
            " nothing was written"
        )


def check_generation(g: Generation, values: Iterable[object]) -> None:
    """A settle's or release's record (`values`: the columns it writes) before it is written."""
    check_amount_of(g.id, "cost", g.cost)
    check_amount_of(g.id, "hold", g.hold)
    check_columns(g.id, values)


def check_total(request_id: str, what: str, total: int, change: int) -> None:
    """A running total may take `change` only if the sum stays within MAX_AMOUNT."""
    if total + change > MAX_AMOUNT:
        raise StoreError(
            f"request {request_id}: charging {format_usd(change)} USD would take the {what} past"
            f" {format_usd(MAX_AMOUNT)} USD, the most the ledger holds; nothing was written"
        )


def check_credit_total(total: int, amount: int) -> None:
    """A credit of `amount` onto an account whose total credits are `total`: refused
    (AmountRangeError, a 400) if the total would pass MAX_AMOUNT. Charges never exceed credits,
    so keeping this one total in range keeps every other running total in range too."""
    if total + amount > MAX_AMOUNT:
        room = max(0, MAX_AMOUNT - total)
        raise AmountRangeError(
            f"this credit would take the account's total credits past {max_amount_text()}, the most"
            f" the ledger holds; at most ${format_usd(room)} more can be credited to this account"
        )
