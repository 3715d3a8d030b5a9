"""Pure money: integer pico-USD amounts, prices, the cost of a usage, hold sizing, budget windows.

No I/O, no clock, no floats.
"""

from nemorouter.money.amounts import PICO_PER_USD, Usd, format_usd, parse_usd
from nemorouter.money.cost import CostBreakdown, cost_of
from nemorouter.money.holds import max_affordable_output, worst_case_cost
from nemorouter.money.prices import Prices, parse_per_million, parse_per_request
from nemorouter.money.settlement import Charge, charge_for
from nemorouter.money.usage import Usage, named, overrun_reason, within_limits
from nemorouter.money.windows import LIMIT_RESETS, window_start

__all__ = [
    "LIMIT_RESETS",
    "PICO_PER_USD",
    "Charge",
    "CostBreakdown",
    "Prices",
    "Usage",
    "Usd",
    "charge_for",
    "cost_of",
    "format_usd",
    "max_affordable_output",
    "named",
    "overrun_reason",
    "parse_per_million",
    "parse_per_request",
    "parse_usd",
    "window_start",
    "within_limits",
    "worst_case_cost",
]
