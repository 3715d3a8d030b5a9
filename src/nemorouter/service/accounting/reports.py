"""Billing reports: usage over a date range and the account's monthly statement.

Every figure is an exact integer (pico-USD for money) summed in Python from the store's
`usage_rows`, so the groupings of a range add up to its total to the last digit, and a
statement's `opening_balance + total_credits - total_usage == closing_balance` exactly.
Dates are UTC; a range includes its start and excludes its end.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

from nemorouter.errors import InvalidRequest
from nemorouter.money import Prices, Usd
from nemorouter.store.base import Store
from nemorouter.store.records import Account, UsageRow
from nemorouter.timeutil import iso, to_api

GROUP_BY = ("day", "model", "key", "provider")
STATEMENT_FORMATS = ("json", "csv", "html", "pdf")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_MONTH = re.compile(r"(\d{4})-(\d{2})")


@dataclass(frozen=True, slots=True)
class Tally:
    """Requests, tokens, units (of models priced per unit) and cost (pico-USD) of a set of charged
    requests."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost: int = 0
    units: int = 0

    def plus(self, other: Tally | UsageRow) -> Tally:
        return Tally(
            self.requests + other.requests,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.cost + other.cost,
            self.units + other.units,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "units": self.units,
            "cost": Usd(self.cost),
        }


def tally(rows: Iterable[Tally | UsageRow]) -> Tally:
    total = Tally()
    for row in rows:
        total = total.plus(row)
    return total


@dataclass(frozen=True, slots=True)
class UsageGroup:
    group: str | None
    tally: Tally
    name: str | None = None  # the key's name when grouped by key


@dataclass(frozen=True, slots=True)
class StatementCredit:
    id: str
    at: str
    amount: int
    reason: str


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One model on one provider at one price snapshot (a price change mid-month makes two lines),
    and for a model priced per unit, one unit (each image size and quality is its own line)."""

    model: str
    provider: str | None
    price_version_id: int | None
    unit: str | None
    prices: Prices | None
    first_day: str
    last_day: str
    tally: Tally


@dataclass(frozen=True, slots=True)
class KeySubtotal:
    key_id: str
    name: str | None
    tally: Tally


@dataclass(frozen=True, slots=True)
class Statement:
    account_id: str
    account_name: str
    month: str
    start: date
    end: date
    final: bool  # the month is over (a current month's statement is "to date")
    generated_at: str
    opening_balance: int
    credits: list[StatementCredit] = field(default_factory=list)
    lines: list[StatementLine] = field(default_factory=list)
    keys: list[KeySubtotal] = field(default_factory=list)

    @property
    def total_credits(self) -> int:
        return sum(c.amount for c in self.credits)

    @property
    def total_usage(self) -> int:
        return sum(line.tally.cost for line in self.lines)

    @property
    def closing_balance(self) -> int:
        return self.opening_balance + self.total_credits - self.total_usage

    @property
    def usage(self) -> Tally:
        return tally(line.tally for line in self.lines)


# -- parsing the request ------------------------------------------------------------------------


def parse_day(text: str, name: str) -> date:
    if not _DAY.fullmatch(text.strip()):
        raise InvalidRequest(f"`{name}` must be a date YYYY-MM-DD (UTC), not {text!r}")
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidRequest(f"`{name}` is not a valid date: {text!r}") from None


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    return date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)


def usage_range(since: str | None, until: str | None, today: date) -> tuple[date, date]:
    """`from`..`to` (to excluded); each end left out defaults to the current month's."""
    start = parse_day(since, "from") if since else month_start(today)
    end = parse_day(until, "to") if until else next_month(today)
    if start >= end:
        raise InvalidRequest("`from` must be before `to` (the range includes `from` and excludes `to`)")
    return start, end


def parse_group_by(value: str | None) -> str:
    group_by = value or "day"
    if group_by not in GROUP_BY:
        raise InvalidRequest(f"`group_by` must be one of {', '.join(GROUP_BY)}")
    return group_by


def parse_month(text: str, today: date) -> tuple[date, date]:
    """`YYYY-MM` -> its first day and the next month's; a month that has not begun is refused."""
    found = _MONTH.fullmatch(text.strip())
    if not found or not 1 <= int(found.group(2)) <= 12 or int(found.group(1)) < 1:
        raise InvalidRequest(f"the month must be YYYY-MM, not {text!r}")
    start = date(int(found.group(1)), int(found.group(2)), 1)
    if start > today:
        raise InvalidRequest(f"{text} has not begun yet: there is no statement for it")
    return start, next_month(start)


def parse_format(value: str | None, allowed: tuple[str, ...]) -> str:
    fmt = (value or "json").lower()
    if fmt not in allowed:
        raise InvalidRequest(f"`format` must be one of {', '.join(allowed)}")
    return fmt


def bound(day: date) -> str:
    """The stored-time text of a UTC midnight (stored times compare as text)."""
    return iso(datetime(day.year, day.month, day.day, tzinfo=UTC))


# -- the reports ---------------------------------------------------------------------------------


_GROUP_OF: dict[str, Callable[[UsageRow], str | None]] = {
    "day": lambda r: r.day,
    "model": lambda r: r.model,
    "key": lambda r: r.key_id,
    "provider": lambda r: r.provider,
}


def _ordered(group: str | None) -> tuple[bool, str]:
    return group is None, group or ""


class Reports:
    """The usage API and the monthly statement, on any `Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def usage(self, account_id: str, start: date, end: date, group_by: str) -> list[UsageGroup]:
        rows = await self.store.usage_rows(account_id, bound(start), bound(end))
        sums: dict[str | None, Tally] = {}
        pick = _GROUP_OF[group_by]
        for row in rows:
            group = pick(row)
            sums[group] = sums.get(group, Tally()).plus(row)
        names = await self._key_names(account_id) if group_by == "key" else {}
        return [
            UsageGroup(group, sums[group], names.get(group) if group is not None else None)
            for group in sorted(sums, key=_ordered)
        ]

    async def statement(self, account: Account, start: date, end: date, now: datetime) -> Statement:
        since, until = bound(start), bound(end)
        credits = await self.store.list_credits(account.id)
        earlier_credits = sum(c.amount for c in credits if c.created_at < since)
        opening = earlier_credits - await self.store.charges_before(account.id, since)
        rows = await self.store.usage_rows(account.id, since, until)
        return Statement(
            account_id=account.id,
            account_name=account.name,
            month=f"{start.year:04d}-{start.month:02d}",
            start=start,
            end=end,
            final=iso(now) >= until,
            generated_at=to_api(iso(now)) or "",
            opening_balance=opening,
            credits=[
                StatementCredit(c.id, to_api(c.created_at) or "", c.amount, c.reason)
                for c in credits
                if since <= c.created_at < until
            ],
            lines=await self._lines(rows),
            keys=await self._keys(account.id, rows),
        )

    async def _lines(self, rows: list[UsageRow]) -> list[StatementLine]:
        versions = [r.price_version_id for r in rows if r.price_version_id is not None]
        prices = await self.store.price_versions(versions)
        lines: dict[tuple[str, str | None, int | None, str | None], StatementLine] = {}
        for row in sorted(rows, key=lambda r: r.day):
            group = (row.model, row.provider, row.price_version_id, row.unit)
            line = lines.get(group)
            if line is None:
                version = row.price_version_id
                line = StatementLine(
                    *group, prices.get(version) if version is not None else None, row.day, row.day, Tally()
                )
            lines[group] = replace(line, last_day=row.day, tally=line.tally.plus(row))
        return sorted(
            lines.values(),
            key=lambda x: (x.model, x.provider or "", x.first_day, x.price_version_id or 0, x.unit or ""),
        )

    async def _keys(self, account_id: str, rows: list[UsageRow]) -> list[KeySubtotal]:
        sums: dict[str, Tally] = {}
        for row in rows:
            sums[row.key_id] = sums.get(row.key_id, Tally()).plus(row)
        names = await self._key_names(account_id) if sums else {}
        return [KeySubtotal(k, names.get(k), sums[k]) for k in sorted(sums)]

    async def _key_names(self, account_id: str) -> dict[str, str]:
        return {k.id: k.name for k in await self.store.list_keys(account_id)}


# -- JSON shapes ---------------------------------------------------------------------------------


def usage_json(groups: list[UsageGroup], group_by: str, start: date, end: date) -> dict[str, Any]:
    data = []
    for g in groups:
        item: dict[str, Any] = {"group": g.group, **g.tally.to_json()}
        if group_by == "key":
            item["name"] = g.name
        data.append(item)
    return {"data": data, "group_by": group_by, "from": start.isoformat(), "to": end.isoformat()}


def line_json(line: StatementLine) -> dict[str, Any]:
    return {
        "model": line.model,
        "provider": line.provider,
        **line.tally.to_json(),
        "price_version_id": line.price_version_id,
        # USD per 1M tokens (`request`: USD per request; `units`: USD per unit), exact decimal strings.
        "unit_prices": line.prices.to_json() if line.prices is not None else None,
        "unit": line.unit,  # of a model priced per unit: what `units` counts ("image/1024x1024/hd")
        "unit_price": (
            _unit_price(line.prices, line.unit) if line.prices is not None and line.unit else None
        ),
        "first_day": line.first_day,
        "last_day": line.last_day,
    }


def _unit_price(prices: Prices, unit: str) -> Usd:
    """USD per one `unit` at `prices` (what `units` of the line were billed at)."""
    return Usd(prices.unit_rate(unit))


def statement_json(st: Statement) -> dict[str, Any]:
    return {
        "data": {
            "account_id": st.account_id,
            "account_name": st.account_name,
            "month": st.month,
            "from": st.start.isoformat(),
            "to": st.end.isoformat(),
            "final": st.final,
            "currency": "USD",
            "opening_balance": Usd(st.opening_balance),
            "credits": [
                {"id": c.id, "at": c.at, "amount": Usd(c.amount), "reason": c.reason} for c in st.credits
            ],
            "total_credits": Usd(st.total_credits),
            "lines": [line_json(line) for line in st.lines],
            "total_usage": Usd(st.total_usage),
            "closing_balance": Usd(st.closing_balance),
            "keys": [{"key_id": k.key_id, "name": k.name, **k.tally.to_json()} for k in st.keys],
            "generated_at": st.generated_at,
        }
    }
