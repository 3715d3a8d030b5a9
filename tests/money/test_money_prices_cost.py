"""Prices (USD per 1M tokens -> pico-USD per token), `Usage` validation and `cost_of` per category.

Expected totals are computed by hand in the comments: a rate of X USD per 1M tokens is
X * 10**12 / 10**6 = X * 10**6 pico-USD per token.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemorouter.money import Prices, Usage, cost_of, parse_per_million, parse_per_request
from nemorouter.money.amounts import MoneyFormatError

PROPERTY = settings(max_examples=150, deadline=None, database=None)

# Claude-Sonnet-like: 3 / 15 per 1M, cache read 0.30, 5-minute write 3.75, 1-hour write 6, plus a fee.
SONNET = Prices.from_json(
    {
        "input": "3",
        "output": "15",
        "cache_read": "0.30",
        "cache_write": "3.75",
        "cache_write_1h": "6",
        "request": "0.001",
    }
)
# gemini-2.5-pro: 1.25 / 10 / 0.125 up to 200k prompt tokens, 2.5 / 15 / 0.25 above.
GEMINI_PRO = Prices.from_json(
    {
        "input": "1.25",
        "output": "10",
        "cache_read": "0.125",
        "long_context": {"threshold": 200_000, "input": "2.5", "output": "15", "cache_read": "0.25"},
    }
)


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("0", 0),
        ("1", 1_000_000),
        ("0.15", 150_000),
        ("1.25", 1_250_000),
        ("0.125", 125_000),
        ("0.000001", 1),
        ("3.75", 3_750_000),
        ("150", 150_000_000),
        (2, 2_000_000),
    ],
)
def test_parse_per_million(text: object, rate: int) -> None:
    assert parse_per_million(text) == rate


@pytest.mark.parametrize("text", ["0.0000001", "1.2345678", "0.0000005"])
def test_more_than_six_decimals_per_million_is_refused(text: str) -> None:
    with pytest.raises(MoneyFormatError, match="6 decimal"):
        parse_per_million(text)


@pytest.mark.parametrize("text", ["-1", "-0.000001"])
def test_negative_prices_are_refused(text: str) -> None:
    with pytest.raises(MoneyFormatError, match="negative"):
        parse_per_million(text)
    with pytest.raises(MoneyFormatError, match="negative"):
        parse_per_request(text)


def test_parse_per_request_keeps_twelve_places() -> None:
    assert parse_per_request("0.001") == 1_000_000_000
    assert parse_per_request("0.000000000001") == 1


def test_from_json_rates_and_defaults() -> None:
    assert SONNET.input == 3_000_000
    assert SONNET.output == 15_000_000
    assert SONNET.cache_read == 300_000
    assert SONNET.cache_write == 3_750_000
    assert SONNET.cache_write_1h == 6_000_000
    assert SONNET.request == 1_000_000_000
    bare = Prices.from_json({"input": "2"})
    assert (bare.input, bare.output, bare.request) == (2_000_000, 0, 0)
    # Missing cache rates fall back: read and write to input, 1h write to the 5-minute write rate.
    assert (bare.cache_read_rate, bare.cache_write_rate, bare.cache_write_1h_rate) == (2_000_000,) * 3
    five_min_only = Prices.from_json({"input": "1", "cache_write": "1.25"})
    assert five_min_only.cache_write_1h_rate == 1_250_000


@pytest.mark.parametrize(
    "data",
    [
        {"input": "0.0000001", "output": "1"},
        {"input": "1", "output": "-1"},
        {"input": "1", "cache_read": "0.00000001"},
        {"input": "1", "request": "-0.5"},
        {"input": 0.5},
        {"input": "1e2"},
        {"output": "1"},
        {"input": "1", "long_context": {"input": "2"}},
        {"input": "1", "long_context": {"threshold": "many", "input": "2"}},
        {"input": "1", "long_context": {"threshold": 10, "input": "-2"}},
    ],
)
def test_from_json_refusals(data: dict[str, object]) -> None:
    with pytest.raises(MoneyFormatError):
        Prices.from_json(data)


def test_to_json_is_exact_text_and_round_trips() -> None:
    assert SONNET.to_json() == {
        "input": "3",
        "output": "15",
        "cache_read": "0.3",
        "cache_write": "3.75",
        "cache_write_1h": "6",
        "request": "0.001",
    }
    assert Prices.from_json(SONNET.to_json()) == SONNET
    assert GEMINI_PRO.to_json()["long_context"] == {
        "threshold": 200_000,
        "input": "2.5",
        "output": "15",
        "cache_read": "0.25",
    }
    assert Prices.from_json(GEMINI_PRO.to_json()) == GEMINI_PRO


_rate = st.integers(min_value=0, max_value=10**9)


@st.composite
def prices(draw: st.DrawFn, tier: bool = True) -> Prices:
    long_context = draw(prices(tier=False)) if tier and draw(st.booleans()) else None
    return Prices(
        input=draw(_rate),
        output=draw(_rate),
        cache_read=draw(st.none() | _rate),
        cache_write=draw(st.none() | _rate),
        cache_write_1h=draw(st.none() | _rate),
        request=draw(st.integers(min_value=0, max_value=10**13)),
        long_context_threshold=draw(st.integers(1, 10**6)) if long_context else None,
        long_context=long_context,
    )


@PROPERTY
@given(prices())
def test_prices_json_round_trip_property(value: Prices) -> None:
    assert Prices.from_json(value.to_json()) == value


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prompt_tokens": -1}, "non-negative"),
        ({"completion_tokens": -5}, "non-negative"),
        ({"prompt_tokens": 10, "cached_tokens": -1}, "non-negative"),
        ({"prompt_tokens": True}, "non-negative"),
        ({"prompt_tokens": 1.0}, "non-negative"),
        ({"prompt_tokens": 10, "cached_tokens": 6, "cache_write_tokens": 5}, "exceed prompt"),
        ({"prompt_tokens": 10, "cached_tokens": 11}, "exceed prompt"),
        ({"prompt_tokens": 10, "cache_write_tokens": 2, "cache_write_1h_tokens": 3}, "one-hour"),
        ({"completion_tokens": 3, "reasoning_tokens": 4}, "reasoning"),
    ],
)
def test_usage_validation(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Usage(**fields)  # type: ignore[arg-type]


def test_usage_at_the_bounds_is_valid() -> None:
    usage = Usage(
        prompt_tokens=10,
        cached_tokens=4,
        cache_write_tokens=6,
        cache_write_1h_tokens=6,
        completion_tokens=7,
        reasoning_tokens=7,
    )
    assert usage.total_tokens == 17


def test_cost_of_every_category() -> None:
    usage = Usage(
        prompt_tokens=10_000,
        cached_tokens=2_000,
        cache_write_tokens=3_000,
        cache_write_1h_tokens=1_000,
        completion_tokens=500,
        reasoning_tokens=200,
    )
    cost = cost_of(usage, SONNET)
    assert cost.input == 5_000 * 3_000_000 == 15_000_000_000  # 10000 - 2000 read - 3000 written
    assert cost.cache_read == 2_000 * 300_000 == 600_000_000
    assert cost.cache_write == 2_000 * 3_750_000 == 7_500_000_000  # 3000 writes, 1000 of them 1h
    assert cost.cache_write_1h == 1_000 * 6_000_000 == 6_000_000_000
    assert cost.output == 500 * 15_000_000 == 7_500_000_000  # reasoning is part of the 500
    assert cost.request == 1_000_000_000
    assert cost.total == 37_600_000_000  # 0.0376 USD


def test_reasoning_tokens_are_not_billed_twice() -> None:
    plain = cost_of(Usage(prompt_tokens=0, completion_tokens=100), SONNET)
    reasoning = cost_of(Usage(prompt_tokens=0, completion_tokens=100, reasoning_tokens=90), SONNET)
    assert plain == reasoning
    assert plain.total == 100 * 15_000_000 + 1_000_000_000


def test_missing_cache_rates_bill_at_the_input_rate() -> None:
    prices_ = Prices.from_json({"input": "2", "output": "8"})
    usage = Usage(prompt_tokens=100, cached_tokens=30, cache_write_tokens=20, cache_write_1h_tokens=5)
    cost = cost_of(usage, prices_)
    # 50 uncached + 30 read + 15 written (5m) + 5 written (1h), all at 2_000_000 pico per token.
    assert (cost.input, cost.cache_read, cost.cache_write, cost.cache_write_1h) == (
        100_000_000,
        60_000_000,
        30_000_000,
        10_000_000,
    )
    assert cost.total == 200_000_000


def test_zero_usage_costs_only_the_request_fee() -> None:
    assert cost_of(Usage(), SONNET).total == 1_000_000_000
    assert cost_of(Usage(), GEMINI_PRO).total == 0


def test_gemini_pro_at_the_threshold_uses_base_rates() -> None:
    usage = Usage(prompt_tokens=200_000, cached_tokens=50_000, completion_tokens=1_000, reasoning_tokens=400)
    cost = cost_of(usage, GEMINI_PRO)
    assert cost.input == 150_000 * 1_250_000 == 187_500_000_000
    assert cost.cache_read == 50_000 * 125_000 == 6_250_000_000
    assert cost.output == 1_000 * 10_000_000 == 10_000_000_000
    assert cost.total == 203_750_000_000  # 0.20375 USD


def test_gemini_pro_above_the_threshold_bills_the_whole_request_at_the_long_rates() -> None:
    usage = Usage(prompt_tokens=200_001, cached_tokens=50_000, completion_tokens=1_000, reasoning_tokens=400)
    cost = cost_of(usage, GEMINI_PRO)
    assert cost.input == 150_001 * 2_500_000 == 375_002_500_000
    assert cost.cache_read == 50_000 * 250_000 == 12_500_000_000
    assert cost.output == 1_000 * 15_000_000 == 15_000_000_000
    assert cost.total == 402_502_500_000  # 0.4025025 USD: not just the tokens above 200k


def test_for_prompt_picks_the_tier() -> None:
    assert GEMINI_PRO.for_prompt(200_000) is GEMINI_PRO
    assert GEMINI_PRO.for_prompt(200_001) is GEMINI_PRO.long_context
    assert SONNET.for_prompt(10**9) is SONNET
