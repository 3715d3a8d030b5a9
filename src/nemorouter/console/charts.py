"""Charts drawn on the server as inline SVG (no script, no library, nothing fetched): the
month's spend per day, stacked by model. Colours come from classes in console.css."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from nemorouter.console.money import PICO_PER_CENT, cents, exact
from nemorouter.store.records import UsageRow

SERIES = 6  # the dearest models get a colour each; the rest are one "other" series
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 220, 100, 22, 8  # LEFT: room for an exact axis label


@dataclass(frozen=True, slots=True)
class Bar:
    x: int
    y: int
    width: int
    height: int
    series: int
    title: str


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    legend: list[tuple[int, str, str]]  # series, model, month total (exact)
    ticks: list[tuple[int, str]]  # y, label
    labels: list[tuple[int, str]]  # x, day label
    baseline: int
    left: int
    empty: bool


def daily_by_model(rows: Iterable[UsageRow], start: date, end: date) -> Chart:
    """Stacked bars for each UTC day in [start, end). Heights are proportional to exact sums."""
    cost: dict[tuple[str, str], int] = {}
    totals: dict[str, int] = {}
    for row in rows:
        cost[(row.day, row.model)] = cost.get((row.day, row.model), 0) + row.cost
        totals[row.model] = totals.get(row.model, 0) + row.cost
    ranked = sorted(totals, key=lambda m: (-totals[m], m))
    series = {m: min(i, SERIES) for i, m in enumerate(ranked)}
    days = [start + timedelta(days=i) for i in range((end - start).days)]
    per_day = {d.isoformat(): 0 for d in days}
    for (when, _), amount in cost.items():
        if when in per_day:
            per_day[when] += amount
    top = max(per_day.values(), default=0)
    plot = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - LEFT) // max(1, len(days))
    bars: list[Bar] = []
    labels: list[tuple[int, str]] = []
    for i, day in enumerate(days):
        x = LEFT + i * slot
        if i % 5 == 0 or i == len(days) - 1:
            labels.append((x + slot // 2, str(day.day)))
        y = HEIGHT - BOTTOM
        stacked: dict[int, int] = {}
        names: dict[int, list[str]] = {}
        for model in ranked:
            amount = cost.get((day.isoformat(), model), 0)
            if amount:
                stacked[series[model]] = stacked.get(series[model], 0) + amount
                names.setdefault(series[model], []).append(model)
        for s in sorted(stacked):
            amount = stacked[s]
            h = max(1, amount * plot // top) if top else 0
            y -= h
            title = f"{day.isoformat()} {', '.join(names[s])}: {exact(amount)}"
            bars.append(Bar(x + 1, y, max(1, slot - 2), h, s, title))
    legend = []
    for model in ranked[:SERIES]:
        legend.append((series[model], model, exact(totals[model])))
    if len(ranked) > SERIES:
        legend.append((SERIES, "other models", exact(sum(totals[m] for m in ranked[SERIES:]))))
    # The axis in cents once a day's spend reaches a dollar; below that, exact (cents would read 0).
    label = cents if top >= 100 * PICO_PER_CENT else exact
    ticks = [(TOP, label(top)), (TOP + plot // 2, label(top // 2)), (HEIGHT - BOTTOM, "$0")] if top else []
    return Chart(WIDTH, HEIGHT, bars, legend, ticks, labels, HEIGHT - BOTTOM, LEFT, top == 0)
