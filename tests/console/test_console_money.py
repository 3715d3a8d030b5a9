"""Money on the console's pages: cents in summaries (halves away from zero), exact in details;
the spend chart's bars from exact sums."""

from __future__ import annotations

from datetime import date

from nemorouter.console.charts import daily_by_model
from nemorouter.console.money import cents, exact
from nemorouter.store.records import UsageRow

CENT = 10**10  # pico-USD


def test_cents_round_half_away_from_zero_and_exact_keeps_every_digit() -> None:
    assert cents(0) == "$0.00"
    assert cents(CENT // 2 - 1) == "$0.00"
    assert cents(CENT // 2) == "$0.01"
    assert cents(123_456 * CENT + CENT // 2) == "$1,234.57"
    assert cents(-(CENT // 2)) == "-$0.01"
    assert cents(10**12 * 10**6) == "$1,000,000.00"  # far past a float's exact range: still ints
    assert exact(1) == "$0.000000000001"
    assert exact(-2_500_000_000_000) == "-$2.5"
    assert exact(12_345_678_901_234_567) == "$12345.678901234567"


def row(day: str, model: str, cost: int) -> UsageRow:
    return UsageRow(day=day, key_id="k", model=model, provider="p", price_version_id=1, requests=1, cost=cost)


def test_daily_bars_stack_by_model() -> None:
    rows = [
        row("2026-03-02", "a", 3 * CENT),
        row("2026-03-02", "b", 1 * CENT),
        row("2026-03-02", "a", 1 * CENT),
        row("2026-03-05", "b", 2 * CENT),
    ]
    chart = daily_by_model(rows, date(2026, 3, 1), date(2026, 4, 1))
    assert not chart.empty
    assert [(series, model, total) for series, model, total in chart.legend] == [
        (0, "a", "$0.04"),
        (1, "b", "$0.03"),
    ]
    day2 = [b for b in chart.bars if b.title.startswith("2026-03-02")]
    assert [b.series for b in day2] == [0, 1]
    assert day2[0].height + day2[1].height == chart.baseline - 8  # the tallest day fills the plot
    assert day2[0].height == 4 * day2[1].height
    assert "$0.04" in day2[0].title and "$0.01" in day2[1].title  # exact amounts in each tooltip
    assert len(chart.labels) >= 6 and chart.ticks[0][1] == "$0.05"
    assert daily_by_model([], date(2026, 3, 1), date(2026, 4, 1)).empty
