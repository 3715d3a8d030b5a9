"""The charge for a provider's usage report: the hold is the ceiling (docs/money-trail.md).

Pure: the gateway settles every request (stream or not, any front door, any provider) with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from nemorouter.money.cost import cost_of
from nemorouter.money.prices import Prices
from nemorouter.money.usage import PLAUSIBLE_TOKENS, Usage, within_limits, within_output_limit


@dataclass(slots=True, init=False)
class Charge:
    """What a request is charged (`cost`, never above its hold) for which counts (`usage`, what
    its record shows), and the cost of the report as the provider sent it (`reported_cost`):
    the excess, when there is one, is the operator's overrun. A value: never changed once made."""

    usage: Usage
    cost: int
    reported_cost: int

    # A hand-written __init__: compiled, a direct constructor (docs/architecture.md, "Speed").
    def __init__(self, usage: Usage, cost: int, reported_cost: int) -> None:
        self.usage = usage
        self.cost = cost
        self.reported_cost = reported_cost

    @property
    def overrun(self) -> int:
        return max(0, self.reported_cost - self.cost)


def charge_for(
    reported: Usage, prices: Prices, hold: int, input_bound: int, max_output: int, max_units: int = 0
) -> Charge:
    """Bill `reported` at `prices` within the request's `hold`.

    Output beyond `max_output` (the limit sent upstream) cannot have been generated and is not
    billed. The prompt is billed as reported (a provider may bill tokens our bound cannot see,
    such as Gemini's search results), up to the hold. When the cost reaches the hold, the charge
    is the hold and the record's counts are the report cut to the request's limits (`max_units`:
    the units held, for a request priced per unit).
    """
    reported_cost = cost_of(reported, prices).total
    usage = within_output_limit(reported, max_output)
    cost = reported_cost if usage is reported else cost_of(usage, prices).total
    if cost > hold:
        return Charge(within_limits(reported, input_bound, max_output, max_units), hold, reported_cost)
    if usage.prompt_tokens > PLAUSIBLE_TOKENS or usage.units > max_units:
        # a free prompt reported absurdly (fits a column), or free units beyond those held
        usage = within_limits(reported, input_bound, max_output, max_units)
    return Charge(usage, cost, reported_cost)
