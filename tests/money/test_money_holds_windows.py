"""Hold sizing (`worst_case_cost`, `max_affordable_output`) and budget windows (`window_start`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemorouter.money import Prices, Usage, cost_of, max_affordable_output, window_start, worst_case_cost

PROPERTY = settings(max_examples=200, deadline=None, database=None)

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
GEMINI_PRO = Prices.from_json(
    {
        "input": "1.25",
        "output": "10",
        "cache_read": "0.125",
        "long_context": {"threshold": 200_000, "input": "2.5", "output": "15", "cache_read": "0.25"},
    }
)


def test_worst_case_uses_the_dearest_input_rate() -> None:
    # The 1-hour cache write (6 USD/1M) is dearer than plain input (3 USD/1M).
    assert SONNET.max_input_rate == 6_000_000
    # 1000 * 6_000_000 + 2000 * 15_000_000 + 1_000_000_000
    assert worst_case_cost(SONNET, 1_000, 2_000) == 37_000_000_000


def test_worst_case_uses_the_long_context_tier() -> None:
    assert (GEMINI_PRO.max_input_rate, GEMINI_PRO.max_output_rate) == (2_500_000, 15_000_000)
    # Even a small prompt is sized at the long-context rates: 1000 * 2.5e6 + 100 * 15e6.
    assert worst_case_cost(GEMINI_PRO, 1_000, 100) == 4_000_000_000


def test_worst_case_of_nothing_is_the_request_fee() -> None:
    assert worst_case_cost(SONNET, 0, 0) == 1_000_000_000


@pytest.mark.parametrize(
    ("available", "expected"),
    [
        (37_000_000_000, 2_000),  # exactly the worst case of 2000 output tokens
        (37_000_000_000 - 1, 1_999),
        (37_000_000_000 + 14_999_999, 2_000),
        (7_000_000_000 + 15_000_000, 1),  # the fixed part (6e9 input + 1e9 fee) plus one token
        (7_000_000_000 + 15_000_000 - 1, None),
        (7_000_000_000, None),  # zero output tokens is not an allowance
        (0, None),
    ],
)
def test_max_affordable_output_examples(available: int, expected: int | None) -> None:
    assert max_affordable_output(SONNET, 1_000, available) == expected


def test_max_affordable_output_with_free_output_is_unbounded() -> None:
    free_output = Prices(input=1_000_000, output=0)
    assert max_affordable_output(free_output, 10, 10_000_000) == 2**31 - 1
    assert max_affordable_output(free_output, 10, 9_999_999) is None


_rate = st.integers(min_value=0, max_value=10**8)


@st.composite
def prices(draw: st.DrawFn, tier: bool = True) -> Prices:
    long_context = draw(prices(tier=False)) if tier and draw(st.booleans()) else None
    return Prices(
        input=draw(_rate),
        output=draw(_rate),
        cache_read=draw(st.none() | _rate),
        cache_write=draw(st.none() | _rate),
        cache_write_1h=draw(st.none() | _rate),
        request=draw(st.integers(min_value=0, max_value=10**10)),
        long_context_threshold=draw(st.integers(0, 3_000)) if long_context else None,
        long_context=long_context,
    )


@st.composite
def bounded_usage(draw: st.DrawFn) -> tuple[int, int, Usage]:
    input_bound = draw(st.integers(0, 5_000))
    max_output = draw(st.integers(0, 5_000))
    prompt = draw(st.integers(0, input_bound))
    cached = draw(st.integers(0, prompt))
    writes = draw(st.integers(0, prompt - cached))
    writes_1h = draw(st.integers(0, writes))
    completion = draw(st.integers(0, max_output))
    reasoning = draw(st.integers(0, completion))
    usage = Usage(prompt, completion, cached, writes, writes_1h, reasoning)
    return input_bound, max_output, usage


@PROPERTY
@given(prices(), bounded_usage())
def test_worst_case_is_never_below_the_real_cost(value: Prices, bounds: tuple[int, int, Usage]) -> None:
    input_bound, max_output, usage = bounds
    assert cost_of(usage, value).total <= worst_case_cost(value, input_bound, max_output)


@PROPERTY
@given(prices(), bounded_usage())
def test_worst_case_is_reached_by_some_usage_without_tiers(
    value: Prices, bounds: tuple[int, int, Usage]
) -> None:
    # Without a long-context tier the bound is tight: all prompt tokens in the dearest category.
    flat = Prices(value.input, value.output, value.cache_read, value.cache_write, value.cache_write_1h, 1)
    input_bound, max_output, _ = bounds
    dearest = max(
        (
            Usage(input_bound, max_output),
            Usage(input_bound, max_output, cached_tokens=input_bound),
            Usage(input_bound, max_output, cache_write_tokens=input_bound),
            Usage(input_bound, max_output, cache_write_tokens=input_bound, cache_write_1h_tokens=input_bound),
        ),
        key=lambda u: cost_of(u, flat).total,
    )
    assert cost_of(dearest, flat).total == worst_case_cost(flat, input_bound, max_output)


@PROPERTY
@given(
    prices().filter(lambda p: p.max_output_rate > 0),
    st.integers(0, 100_000),
    st.integers(0, 10**14),
)
def test_max_affordable_output_is_the_largest_that_fits(
    value: Prices, input_bound: int, available: int
) -> None:
    result = max_affordable_output(value, input_bound, available)
    if result is None:
        assert worst_case_cost(value, input_bound, 1) > available
    else:
        assert result >= 1
        assert worst_case_cost(value, input_bound, result) <= available
        assert worst_case_cost(value, input_bound, result + 1) > available


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("reset", "moment", "label"),
    [
        (None, _utc(2026, 3, 1, 12), "all"),
        ("daily", _utc(2026, 3, 1, 23, 59, 59, 999_999), "2026-03-01"),
        ("daily", _utc(2026, 3, 2, 0, 0), "2026-03-02"),
        # 2026-03-01 is a Sunday: its week began on Monday 2026-02-23.
        ("weekly", _utc(2026, 3, 1, 23, 59, 59, 999_999), "2026-02-23"),
        ("weekly", _utc(2026, 3, 2, 0, 0), "2026-03-02"),
        ("weekly", _utc(2026, 3, 8, 23, 59, 59, 999_999), "2026-03-02"),
        ("weekly", _utc(2026, 1, 1, 9), "2025-12-29"),  # a week across the new year
        ("monthly", _utc(2026, 1, 31, 23, 59, 59, 999_999), "2026-01-01"),
        ("monthly", _utc(2026, 2, 1, 0, 0), "2026-02-01"),
        ("monthly", _utc(2025, 12, 31, 23, 59, 59, 999_999), "2025-12-01"),
        ("monthly", _utc(2026, 4, 30, 23, 59, 59, 999_999), "2026-04-01"),
        # Leap day 2024-02-29 (a Thursday).
        ("daily", _utc(2024, 2, 29, 12), "2024-02-29"),
        ("weekly", _utc(2024, 2, 29, 12), "2024-02-26"),
        ("monthly", _utc(2024, 2, 29, 23, 59, 59, 999_999), "2024-02-01"),
        ("monthly", _utc(2024, 3, 1, 0, 0), "2024-03-01"),
    ],
)
def test_window_start_edges(reset: str | None, moment: datetime, label: str) -> None:
    assert window_start(reset, moment) == label


PLUS_ONE = timezone(timedelta(hours=1))
MINUS_FIVE = timezone(timedelta(hours=-5))


@pytest.mark.parametrize(
    ("reset", "moment", "label"),
    [
        # Monday 00:30 in UTC+1 is still Sunday 23:30 UTC.
        ("daily", datetime(2026, 3, 2, 0, 30, tzinfo=PLUS_ONE), "2026-03-01"),
        ("weekly", datetime(2026, 3, 2, 0, 30, tzinfo=PLUS_ONE), "2026-02-23"),
        # Saturday 20:00 in UTC-5 is already Sunday 01:00 UTC, in March.
        ("daily", datetime(2026, 2, 28, 20, 0, tzinfo=MINUS_FIVE), "2026-03-01"),
        ("monthly", datetime(2026, 2, 28, 20, 0, tzinfo=MINUS_FIVE), "2026-03-01"),
        ("monthly", datetime(2026, 3, 1, 0, 59, tzinfo=PLUS_ONE), "2026-02-01"),
    ],
)
def test_window_start_converts_to_utc(reset: str, moment: datetime, label: str) -> None:
    assert window_start(reset, moment) == label


def test_unknown_reset_is_refused() -> None:
    with pytest.raises(ValueError, match="yearly"):
        window_start("yearly", _utc(2026, 1, 1))
