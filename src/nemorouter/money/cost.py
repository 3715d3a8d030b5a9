"""The exact cost of a usage: sum over token categories of tokens x rate, plus units x their rate."""

from __future__ import annotations

from dataclasses import dataclass

from nemorouter.money.prices import Prices
from nemorouter.money.usage import Usage


@dataclass(slots=True, init=False)
class CostBreakdown:
    """Pico-USD per category; `total` is their exact sum."""

    input: int
    cache_read: int
    cache_write: int
    cache_write_1h: int
    output: int
    request: int
    units: int = 0

    # A hand-written __init__: compiled, a direct constructor (docs/architecture.md, "Speed").
    def __init__(
        self,
        input: int,
        cache_read: int,
        cache_write: int,
        cache_write_1h: int,
        output: int,
        request: int,
        units: int = 0,
    ) -> None:
        self.input = input
        self.cache_read = cache_read
        self.cache_write = cache_write
        self.cache_write_1h = cache_write_1h
        self.output = output
        self.request = request
        self.units = units

    @property
    def total(self) -> int:
        return (
            self.input
            + self.cache_read
            + self.cache_write
            + self.cache_write_1h
            + self.output
            + self.request
            + self.units
        )


def cost_of(usage: Usage, prices: Prices) -> CostBreakdown:
    """Cost of `usage` at `prices`; the long-context tier applies to the whole request's tokens
    (units have one rate whatever the prompt)."""
    rates = prices.for_prompt(usage.prompt_tokens)
    uncached = usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens
    writes_5m = usage.cache_write_tokens - usage.cache_write_1h_tokens
    return CostBreakdown(
        input=uncached * rates.input,
        cache_read=usage.cached_tokens * rates.cache_read_rate,
        cache_write=writes_5m * rates.cache_write_rate,
        cache_write_1h=usage.cache_write_1h_tokens * rates.cache_write_1h_rate,
        output=usage.completion_tokens * rates.output,
        request=rates.request,
        units=usage.units * prices.unit_rate(usage.unit) if usage.units else 0,
    )
