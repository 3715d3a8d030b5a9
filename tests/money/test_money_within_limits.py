"""Settlement's rule (`charge_for`): whatever a provider reports, no charge exceeds the hold."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from test_money_holds_windows import prices  # the same price strategy as the hold properties

from nemorouter.money import (
    Prices,
    Usage,
    charge_for,
    cost_of,
    overrun_reason,
    within_limits,
    worst_case_cost,
)
from nemorouter.money.usage import PLAUSIBLE_TOKENS

PROPERTY = settings(max_examples=300, deadline=None, database=None)
_any_count = st.integers(0, 10**30)
_FIELDS = ("prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens")
GPT_4O = Prices.from_json({"input": "2.5", "output": "10", "cache_read": "1.25"})


@st.composite
def any_usage(draw: st.DrawFn) -> Usage:
    """A report as a hostile provider might send it: any counts, consistent only as Usage demands."""
    prompt = draw(st.integers(0, 3_000) | _any_count)
    cached = draw(st.integers(0, prompt))
    writes = draw(st.integers(0, prompt - cached))
    completion = draw(st.integers(0, 3_000) | _any_count)
    return Usage(
        prompt, completion, cached, writes, draw(st.integers(0, writes)), draw(st.integers(0, completion))
    )


@PROPERTY
@given(prices(), any_usage(), st.integers(0, 100_000), st.integers(0, 100_000))
def test_no_report_is_charged_more_than_the_hold(value, usage, input_bound, max_output) -> None:  # type: ignore[no-untyped-def]
    hold = worst_case_cost(value, input_bound, max_output)
    charge = charge_for(usage, value, hold, input_bound, max_output)
    assert 0 <= charge.cost <= hold
    assert charge.reported_cost == cost_of(usage, value).total
    assert charge.overrun == max(0, charge.reported_cost - charge.cost)
    assert charge.usage.completion_tokens <= max_output  # output past the limit sent is never billed
    assert charge.usage.prompt_tokens <= PLAUSIBLE_TOKENS  # every recorded count fits a 64-bit column
    for field in _FIELDS:  # never more of any category than was reported
        assert getattr(charge.usage, field) <= getattr(usage, field)
    if charge.cost < hold and usage.prompt_tokens <= PLAUSIBLE_TOKENS:
        # below the ceiling, the record's counts are exactly what was charged (an implausible
        # prompt that still costs less than the hold is recorded cut to the bound, to fit a column)
        assert cost_of(charge.usage, value).total == charge.cost


def test_usage_within_the_limits_is_billed_as_reported() -> None:
    usage = Usage(prompt_tokens=100, completion_tokens=10, cached_tokens=40, reasoning_tokens=5)
    hold = worst_case_cost(GPT_4O, 100, 10)
    charge = charge_for(usage, GPT_4O, hold, 100, 10)
    assert (charge.usage, charge.cost, charge.overrun) == (usage, cost_of(usage, GPT_4O).total, 0)


def test_ten_million_tokens_for_a_limit_of_ten_is_not_believed() -> None:
    """The reproduction: 10M output tokens reported for max_tokens 10 would be $100 at $10/1M."""
    usage = Usage(prompt_tokens=20, completion_tokens=10_000_000)
    hold = worst_case_cost(GPT_4O, 30, 10)
    charge = charge_for(usage, GPT_4O, hold, 30, 10)
    assert charge.reported_cost == 100 * 10**12 + 20 * 2_500_000
    assert (charge.usage.prompt_tokens, charge.usage.completion_tokens) == (20, 10)
    assert charge.cost == cost_of(Usage(20, 10), GPT_4O).total < hold
    assert charge.overrun == charge.reported_cost - charge.cost
    assert overrun_reason(usage, 30, 10) == "10000000 output tokens reported for a limit of 10"


def test_a_prompt_beyond_the_bound_is_billed_up_to_the_hold() -> None:
    """Gemini's search results are prompt tokens no bound can see: billed while the hold covers them."""
    hold = worst_case_cost(GPT_4O, 100, 1_000)
    within = charge_for(Usage(prompt_tokens=400, completion_tokens=10), GPT_4O, hold, 100, 1_000)
    assert (within.usage.prompt_tokens, within.overrun) == (400, 0)
    beyond = charge_for(Usage(prompt_tokens=10**30, completion_tokens=10), GPT_4O, hold, 100, 1_000)
    assert beyond.cost == hold and beyond.usage == Usage(prompt_tokens=100, completion_tokens=10)
    assert beyond.overrun == 10**30 * 2_500_000 + 10 * 10_000_000 - hold


def test_an_absurd_prompt_on_a_free_model_is_recorded_within_the_bound() -> None:
    free = Prices(input=0, output=0)
    charge = charge_for(Usage(prompt_tokens=10**30), free, 0, 150, 0)
    assert (charge.cost, charge.usage.prompt_tokens) == (0, 150)


def test_within_limits_keeps_the_parts_inside_the_whole() -> None:
    usage = Usage(
        prompt_tokens=10**30, cached_tokens=10**29, cache_write_tokens=10**29, cache_write_1h_tokens=5
    )
    billed = within_limits(usage, 150, 0)
    assert billed.prompt_tokens == 150 and billed.cached_tokens + billed.cache_write_tokens <= 150
    assert "prompt tokens reported for a bound of 150" in overrun_reason(usage, 150, 0)
