"""Token counts read from a provider's usage report: untrusted input.

A count that is absent is zero; one that is present but not an exact non-negative integer (a
negative number, a float, a string, a bool) makes the whole report unreadable, so the gateway
neither believes it nor silently reads it as zero: it bills an estimate (never above the
hold) and logs the report as a provider fault. Very large counts are readable; the gateway's
settlement caps what they can cost at the request's hold.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from nemorouter.money import Usage


class UnreadableUsage(ValueError):
    """A usage report with an impossible count."""


def count(value: Any) -> int:
    """A token count: 0 when absent, else an exact non-negative int."""
    if value is None:
        return 0
    if type(value) is not int or value < 0:
        raise UnreadableUsage(f"impossible token count {value!r}")
    return value


def lenient(parse: Callable[[dict[str, Any]], Usage]) -> Callable[[dict[str, Any]], Usage | None]:
    """`parse`, answering None (unreadable) instead of raising on an impossible report."""

    @wraps(parse)
    def parse_or_none(raw: dict[str, Any]) -> Usage | None:
        try:
            return parse(raw)
        except (ValueError, TypeError, AttributeError):
            return None

    return parse_or_none
