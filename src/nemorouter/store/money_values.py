"""What a money write may carry, checked before it reaches SQL.

A value SQL cannot take (an int past 64 bits, an object the driver cannot bind) or a charge no
ledger should hold (a negative cost, one past MAX_AMOUNT) is refused here with a StoreError
naming the request, so it fails that request alone: it never reaches a SQLite batch, where it
would fail every request sharing it, nor a PostgreSQL statement. Running totals are checked
where they are known (`sqlite.money_mirror`, `sqlite.money`): SQLite would silently turn an
overflowing INTEGER sum into a REAL.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import attrgetter

from nemorouter.money.amounts import MAX_AMOUNT, AmountRangeError, format_usd, max_amount_text
from nemorouter.store.base import StoreError
from nemorouter.store.records import Generation

_INT64_MIN = -MAX_AMOUNT - 1  # the least a 64-bit column holds


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
        if isinstance(value, int) and _INT64_MIN <= value <= MAX_AMOUNT:  # a bool too: 0 or 1
            continue
        shown = repr(value)
        raise StoreError(
            f"request {request_id}: the value {shown[:80]} cannot be stored (not text or a 64-bit integer);"
            " nothing was written"
        )


_COUNTS = attrgetter(
    "cost",
    "hold",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "units",
)


def check_generation(g: Generation) -> None:
    """A settle's or release's record before it is written: its amounts from 0 to MAX_AMOUNT
    and every count (what a provider reports) a 64-bit integer. On every settle, so the common
    case is a few C-level tests; the text columns are not looped over (a text value no driver
    can bind still fails only its own request: SQLite's batch is rebuilt without it, and
    PostgreSQL runs each request on its own)."""
    counts: tuple[int, ...] = _COUNTS(g)  # ints by their types; checked here, as a provider sent them
    latency, version = g.latency_ms, g.price_version_id
    try:
        fast = (
            type(sum(counts)) is int  # a float, Decimal or str among them is not
            and min(counts) >= _INT64_MIN
            and max(counts) <= MAX_AMOUNT
            and g.cost >= 0
            and g.hold >= 0
        )
    except TypeError:
        fast = False
    if (
        fast
        and (latency is None or (type(latency) is int and _INT64_MIN <= latency <= MAX_AMOUNT))
        and (version is None or (type(version) is int and _INT64_MIN <= version <= MAX_AMOUNT))
    ):
        return
    check_amount_of(g.id, "cost", g.cost)
    check_amount_of(g.id, "hold", g.hold)
    for value in (*counts, latency, version):
        if value is not None and not (isinstance(value, int) and _INT64_MIN <= value <= MAX_AMOUNT):
            raise StoreError(
                f"request {g.id}: the count {repr(value)[:80]} is not a 64-bit integer; nothing was written"
            )


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
