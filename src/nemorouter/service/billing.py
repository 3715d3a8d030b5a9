"""Hold sizing and the words of a 402, from the pure money core."""

from __future__ import annotations

from nemorouter.errors import AuthError, PaymentRequired
from nemorouter.money import Prices, Usd, format_usd, max_affordable_output, worst_case_cost
from nemorouter.store.records import ReserveResult


def dearest(
    prices: list[Prices], input_bound: int, max_output: int, unit: str = "", units: int = 0
) -> tuple[int, Prices]:
    """The worst case over every candidate deployment, and the prices that produce it."""
    return max(
        ((worst_case_cost(p, input_bound, max_output, unit, units), p) for p in prices),
        key=lambda pair: pair[0],
    )


def refusal(
    result: ReserveResult, needed: int, prices: Prices, input_bound: int, n: int, units: int = 0
) -> Exception:
    """The error for a reserve that did not fit: a 402 that says what would, or a 401."""
    if result.reason in ("key_revoked", "key_disabled", "key_expired", "key_missing"):
        kind = "invalid_key" if result.reason == "key_missing" else result.reason
        return AuthError(f"this key cannot be used ({result.reason.removeprefix('key_')})", type=kind)
    available = result.available
    affordable = None if units else max_affordable_output(prices, input_bound, available)
    if affordable is not None:
        affordable //= n
    whose = "the key's remaining limit" if result.reason == "key_limit_exceeded" else "the account's balance"
    if units:  # priced per image, character, second...: no max_tokens to lower
        hint = "Ask for fewer (or smaller) outputs, add credits or raise the limit."
    elif affordable:
        hint = f"The largest max_tokens that would fit is {affordable}."
    else:
        hint = "No max_tokens would fit; add credits or raise the limit."
    return PaymentRequired(
        f"This request needs up to ${format_usd(needed)} (its worst case) but {whose} has "
        f"${format_usd(available)} available. {hint}",
        type=result.reason,
        needed=Usd(needed),
        available=Usd(available),
        max_tokens_affordable=affordable or None,
    )
