"""The operator's reconciliation: what each provider key was used for, at list price, per day —
and, given the provider's usage export, where the two disagree.

Invoice CSV (a documented simple format): a header row `date,model,category,tokens,amount`,
then one row per day, upstream model and token category (`input`, `cached`, `cache_write`,
`output`) or unit (a model priced per unit: the unit's name, `image/1024x1024/hd`, `second`...,
with its count in `tokens`), with `amount` in USD as an exact decimal. Our side is built the same way, and the
differences are listed line by line (a line on one side only counts as a difference).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Any

from nemorouter.errors import InvalidRequest, NotFound
from nemorouter.money import Usage, Usd, cost_of, parse_usd
from nemorouter.money.amounts import MoneyFormatError
from nemorouter.money.prices import UNIT_NAME
from nemorouter.service.accounting.reports import bound, parse_month
from nemorouter.store.base import Store
from nemorouter.store.records import UsageRow

CATEGORIES = ("input", "cached", "cache_write", "output")
Line = tuple[str, str, str]  # date, model, category


@dataclass(frozen=True, slots=True)
class Amount:
    tokens: int
    pico: int


async def provider_month(store: Store, provider: str, month: str, today: date) -> list[UsageRow]:
    found = await store.get_provider(provider)
    if found is None:
        raise NotFound(f"no provider {provider}")
    start, end = parse_month(month, today)
    return await store.provider_usage_rows(found.name, bound(start), bound(end))


async def provider_overruns(store: Store, provider: str, month: str, today: date) -> list[dict[str, Any]]:
    """Per vault key: the requests whose provider reported more than their hold covered. The
    customer paid the hold (inside `cost` above); `overrun` is what the provider bills on top."""
    start, end = parse_month(month, today)
    found = await store.list_overruns(provider, bound(start), bound(end))
    groups: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for o in found:
        totals = groups[o.provider_key_id or ""]
        totals[0] += 1
        totals[1] += o.reported_cost
        totals[2] += o.overrun
    return [
        {"provider_key_id": key_id, "requests": t[0], "reported_cost": Usd(t[1]), "overrun": Usd(t[2])}
        for key_id, t in sorted(groups.items())
    ]


def by_key_and_day(rows: list[UsageRow]) -> list[dict[str, Any]]:
    """The admin API's view: per vault key and day, requests, tokens by category, cost at list price."""
    groups: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0] * 7)
    for row in rows:
        found = groups[(row.key_id, row.day, row.model)]
        for i, value in enumerate(
            (
                row.requests,
                row.prompt_tokens,
                row.completion_tokens,
                row.cached_tokens,
                row.cache_write_tokens,
                row.reasoning_tokens,
                row.cost,
            )
        ):
            found[i] += value
    return [
        {
            "provider_key_id": key_id,
            "day": day,
            "model": model,
            "requests": t[0],
            "tokens": {
                "prompt": t[1],
                "completion": t[2],
                "cached": t[3],
                "cache_write": t[4],
                "reasoning": t[5],
            },
            "cost": Usd(t[6]),
        }
        for (key_id, day, model), t in sorted(groups.items())
    ]


async def our_lines(store: Store, rows: list[UsageRow]) -> dict[Line, Amount]:
    """Our usage as invoice lines: tokens and list-price amount per day, model and category."""
    prices = await store.price_versions([r.price_version_id for r in rows if r.price_version_id is not None])
    lines: dict[Line, list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        usage = Usage(
            prompt_tokens=row.prompt_tokens,
            completion_tokens=row.completion_tokens,
            cached_tokens=row.cached_tokens,
            cache_write_tokens=row.cache_write_tokens,
        )
        rates = prices.get(row.price_version_id) if row.price_version_id is not None else None
        parts = cost_of(usage, rates) if rates is not None else None
        uncached = row.prompt_tokens - row.cached_tokens - row.cache_write_tokens
        if row.unit and row.units:
            found = lines[(row.day, row.model, row.unit)]
            found[0] += row.units
            found[1] += row.units * rates.unit_rate(row.unit) if rates is not None else 0
        for category, tokens, pico in (
            ("input", uncached, parts.input if parts else 0),
            ("cached", row.cached_tokens, parts.cache_read if parts else 0),
            (
                "cache_write",
                row.cache_write_tokens,
                (parts.cache_write + parts.cache_write_1h) if parts else 0,
            ),
            ("output", row.completion_tokens, parts.output if parts else 0),
        ):
            if tokens:
                found = lines[(row.day, row.model, category)]
                found[0] += tokens
                found[1] += pico
    return {line: Amount(t, p) for line, (t, p) in lines.items()}


def parse_invoice(text: str) -> dict[Line, Amount]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not {"date", "model", "category", "tokens", "amount"} <= set(
        reader.fieldnames
    ):
        raise InvalidRequest("the invoice CSV needs a header row: date,model,category,tokens,amount")
    lines: dict[Line, list[int]] = defaultdict(lambda: [0, 0])
    for number, row in enumerate(reader, start=2):
        if row["category"] not in CATEGORIES and UNIT_NAME.fullmatch(row["category"] or "") is None:
            raise InvalidRequest(
                f"invoice line {number}: category must be one of {', '.join(CATEGORIES)}, or a unit's name"
            )
        try:
            tokens, pico = int(row["tokens"]), parse_usd(row["amount"])
        except (ValueError, MoneyFormatError) as exc:
            raise InvalidRequest(f"invoice line {number}: {exc}") from None
        found = lines[(row["date"].strip(), row["model"].strip(), row["category"])]
        found[0] += tokens
        found[1] += pico
    return {line: Amount(t, p) for line, (t, p) in lines.items()}


def differences(ours: dict[Line, Amount], theirs: dict[Line, Amount]) -> list[dict[str, Any]]:
    out = []
    for line in sorted(set(ours) | set(theirs)):
        mine, billed = ours.get(line), theirs.get(line)
        if mine == billed:
            continue
        out.append(
            {
                "date": line[0],
                "model": line[1],
                "category": line[2],
                "ours": {"tokens": mine.tokens, "amount": Usd(mine.pico)} if mine else None,
                "theirs": {"tokens": billed.tokens, "amount": Usd(billed.pico)} if billed else None,
            }
        )
    return out
