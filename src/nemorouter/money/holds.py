"""Hold sizing: the worst-case cost of a request, known before it is sent."""

from __future__ import annotations

from nemorouter.money.prices import Prices


def worst_case_cost(prices: Prices, input_bound: int, max_output: int, unit: str = "", units: int = 0) -> int:
    """Upper bound of what a request can cost: every prompt token at the dearest input rate,
    every allowed output token at the dearest output rate, the request fee, and `units` of
    `unit` at its dearest rate (a request priced per image, character, second...)."""
    fixed = input_bound * prices.max_input_rate + prices.max_request_fee
    if units:
        fixed += units * prices.unit_rate(unit)
    return fixed + max_output * prices.max_output_rate


def max_affordable_output(
    prices: Prices, input_bound: int, available: int, unit: str = "", units: int = 0
) -> int | None:
    """The largest output allowance whose worst case fits `available`, or None if none does."""
    fixed = worst_case_cost(prices, input_bound, 0, unit, units)
    if fixed > available:
        return None
    rate = prices.max_output_rate
    if rate == 0:
        return None if fixed > available else 2**31 - 1
    affordable = (available - fixed) // rate
    return affordable if affordable >= 1 else None
