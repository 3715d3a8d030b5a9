"""Usage reports and monthly statements in-process, on a real SQLite file, across months.

Requests are made through the store (reserve, then settle or release) with chosen request
times; credits are added through the store and then re-dated in the file (the store stamps
them with the real clock). Every expected figure below is computed by hand from the list
prices (pico-USD per token = USD per 1M tokens x 10^6):

    gpt-4o-mini v1: in 150_000, out 600_000     gpt-4o-mini v2 (from mid-March): in 100_000, out 400_000
    gpt-4o:         in 2_500_000, out 10_000_000
"""

from __future__ import annotations

import csv
import io
import os
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pypdf
import pytest

from nemorouter.errors import InvalidRequest
from nemorouter.money import Prices, format_usd
from nemorouter.service.accounting.reports import Reports, Statement, parse_month, usage_range
from nemorouter.service.accounting.statement_render import statement_csv, statement_html, statement_pdf
from nemorouter.service.administration.admin import Admin
from nemorouter.store.records import Account, ApiKey, Generation, Hold
from nemorouter.store.sqlite import SqliteStore
from nemorouter.timeutil import new_id
from nemorouter.vault import Vault

USD = 10**12
NOW = datetime(2026, 5, 20, 12, 0, tzinfo=UTC)
MINI, GPT4O = "openai/gpt-4o-mini", "openai/gpt-4o"

# Hand-computed charges (pico-USD): tokens x rate.
A = 1000 * 150_000 + 500 * 600_000  # Feb 10, key1, mini v1: 450_000_000
B = 2000 * 2_500_000 + 1000 * 10_000_000  # Feb 28 23:59:59.999999, key2, gpt-4o: 15_000_000_000
C = 100 * 150_000 + 50 * 600_000  # Mar 1 00:00:00, key1, mini v1: 45_000_000
D = 3000 * 150_000 + 700 * 600_000  # Mar 10, key2, mini v1: 870_000_000
E = 1000 * 100_000 + 1000 * 400_000  # Mar 20, key1, mini v2: 500_000_000
F = 10 * 2_500_000 + 3 * 10_000_000  # Mar 31 23:59:59.999999, key2, gpt-4o: 55_000_000
G = 100 * 2_500_000 + 100 * 10_000_000  # Apr 1 00:00:00, key1, gpt-4o: 1_250_000_000

FEB_CLOSING = 10 * USD - (A + B)
MAR_CLOSING = FEB_CLOSING + 7 * USD - (C + D + E + F)
APR_CLOSING = MAR_CLOSING - G


@dataclass
class World:
    store: SqliteStore
    account: Account
    key1: ApiKey
    key2: ApiKey
    versions: dict[str, int]


def test_hand_computed_figures() -> None:
    assert (A, B, C, D, E, F, G) == (
        450_000_000,
        15_000_000_000,
        45_000_000,
        870_000_000,
        500_000_000,
        55_000_000,
        1_250_000_000,
    )
    assert FEB_CLOSING == 9_984_550_000_000
    assert MAR_CLOSING == 16_983_080_000_000
    assert APR_CLOSING == 16_981_830_000_000


async def _charge(
    w: World, key: ApiKey, at: str, model: str, version: str, prompt: int, completion: int, cost: int
) -> None:
    hold = Hold(new_id("gen_"), key.account_id, key.id, USD // 10, "all", "proc-test", at, model=model)
    assert (await w.store.reserve(hold, at)).ok
    done = Generation(
        id=hold.request_id,
        account_id=key.account_id,
        key_id=key.id,
        model=model,
        endpoint="chat",
        streamed=False,
        status="success",
        created_at=at,
        provider="sim",
        upstream_model=model.split("/")[1],
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost=cost,
        hold=hold.amount,
        price_version_id=w.versions[version],
    )
    assert await w.store.settle(hold.request_id, done, "all")


def _redate(db_path: Path, credit_id: str, at: str) -> None:
    with sqlite3.connect(db_path, timeout=10) as db:
        assert db.execute("UPDATE credits SET created_at = ? WHERE id = ?", (at, credit_id)).rowcount == 1


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    db_path = tmp_path / "reports.db"
    store = SqliteStore(str(db_path))
    await store.migrate()
    admin = Admin(store, Vault(os.urandom(32)), lambda: NOW)
    account = await admin.create_account({"name": "acme"})
    for amount, reason, at in (
        ("10", "opening deposit", "2026-02-03T09:00:00.000000Z"),
        ("5", "top-up", "2026-03-01T00:00:00.000000Z"),  # the first instant of March is March's
        ("2", "second top-up", "2026-03-18T12:00:00.000000Z"),
    ):
        credit, _ = await admin.add_credit(account.id, {"amount": amount, "reason": reason})
        _redate(db_path, credit.id, at)
    _, key1 = await admin.create_key(account.id, {"name": "first"})
    _, key2 = await admin.create_key(account.id, {"name": "second"})
    versions = {}
    for name, model, pricing in (
        ("mini-v1", MINI, {"input": "0.15", "output": "0.6"}),
        ("4o", GPT4O, {"input": "2.5", "output": "10"}),
        ("mini-v2", MINI, {"input": "0.10", "output": "0.40"}),  # the mid-March price change
    ):
        made = await store.upsert_model(
            model, model, "chat", 128000, 16384, Prices.from_json(pricing), [], False
        )
        versions[name] = made.price_version_id
    w = World(store, account, key1, key2, versions)

    await _charge(w, key1, "2026-02-10T12:00:00.000000Z", MINI, "mini-v1", 1000, 500, A)
    await _charge(w, key2, "2026-02-28T23:59:59.999999Z", GPT4O, "4o", 2000, 1000, B)
    await _charge(w, key1, "2026-03-01T00:00:00.000000Z", MINI, "mini-v1", 100, 50, C)
    await _charge(w, key2, "2026-03-10T08:00:00.000000Z", MINI, "mini-v1", 3000, 700, D)
    await _charge(w, key1, "2026-03-20T09:30:00.000000Z", MINI, "mini-v2", 1000, 1000, E)
    await _charge(w, key2, "2026-03-31T23:59:59.999999Z", GPT4O, "4o", 10, 3, F)
    await _charge(w, key1, "2026-04-01T00:00:00.000000Z", GPT4O, "4o", 100, 100, G)
    # A request that failed before output (released: no charge) and one still in flight
    # (an open hold is not a charge): neither is on any bill.
    failed = Hold(
        new_id("gen_"), account.id, key1.id, USD // 10, "all", "p", "2026-03-15T00:00:00.000000Z", MINI
    )
    assert (await store.reserve(failed, failed.created_at)).ok
    assert await store.release(failed.request_id, None)
    open_ = Hold(
        new_id("gen_"), account.id, key2.id, USD // 10, "all", "p", "2026-03-16T00:00:00.000000Z", MINI
    )
    assert (await store.reserve(open_, open_.created_at)).ok
    yield w
    await store.close()


async def _statement(w: World, month: str) -> Statement:
    start, end = parse_month(month, NOW.date())
    account = await w.store.get_account(w.account.id)
    assert account is not None
    return await Reports(w.store).statement(account, start, end, NOW)


async def test_statement_opening_balance_carries_previous_months(world: World) -> None:
    feb = await _statement(world, "2026-02")
    assert (feb.opening_balance, feb.total_credits, feb.total_usage) == (0, 10 * USD, A + B)
    assert feb.closing_balance == FEB_CLOSING
    assert feb.final is True

    mar = await _statement(world, "2026-03")
    assert mar.opening_balance == FEB_CLOSING  # credits before March minus charges before March
    assert [(c.at, c.amount, c.reason) for c in mar.credits] == [
        ("2026-03-01T00:00:00Z", 5 * USD, "top-up"),
        ("2026-03-18T12:00:00Z", 2 * USD, "second top-up"),
    ]
    assert mar.total_credits == 7 * USD
    assert mar.total_usage == C + D + E + F == 1_470_000_000
    assert mar.closing_balance == MAR_CLOSING
    assert mar.opening_balance + mar.total_credits - mar.total_usage == mar.closing_balance

    apr = await _statement(world, "2026-04")
    assert (apr.opening_balance, apr.credits, apr.total_usage) == (MAR_CLOSING, [], G)
    assert apr.closing_balance == APR_CLOSING
    # The last closing balance is the account's balance (the open hold is not a charge).
    account = await world.store.get_account(world.account.id)
    assert account is not None and account.balance == APR_CLOSING


async def test_price_change_mid_month_gives_two_lines(world: World) -> None:
    mar = await _statement(world, "2026-03")
    v = world.versions
    found = [
        (
            line.model,
            line.provider,
            line.price_version_id,
            line.first_day,
            line.last_day,
            line.tally.requests,
            line.tally.prompt_tokens,
            line.tally.completion_tokens,
            line.tally.cost,
        )
        for line in mar.lines
    ]
    assert found == [
        (GPT4O, "sim", v["4o"], "2026-03-31", "2026-03-31", 1, 10, 3, F),
        (MINI, "sim", v["mini-v1"], "2026-03-01", "2026-03-10", 2, 3100, 750, C + D),
        (MINI, "sim", v["mini-v2"], "2026-03-20", "2026-03-20", 1, 1000, 1000, E),
    ]
    prices = [line.prices.to_json() if line.prices else None for line in mar.lines]
    assert prices == [
        {"input": "2.5", "output": "10"},
        {"input": "0.15", "output": "0.6"},
        {"input": "0.1", "output": "0.4"},
    ]
    keys = [(k.key_id, k.name, k.tally.requests, k.tally.cost) for k in mar.keys]
    assert sorted(keys) == sorted([(world.key1.id, "first", 2, C + E), (world.key2.id, "second", 2, D + F)])


async def test_month_without_activity_answers_zeros(world: World) -> None:
    jan = await _statement(world, "2026-01")
    assert (jan.opening_balance, jan.credits, jan.lines, jan.keys) == (0, [], [], [])
    assert (jan.total_credits, jan.total_usage, jan.closing_balance) == (0, 0, 0)
    may = await _statement(world, "2026-05")  # the current month, no activity yet
    assert may.opening_balance == may.closing_balance == APR_CLOSING
    assert may.lines == [] and may.final is False
    for text in (statement_csv(jan), statement_html(jan)):
        assert "0.0" in text
    assert (
        pypdf.PdfReader(io.BytesIO(statement_pdf(may))).pages[0].extract_text().count(format_usd(APR_CLOSING))
        >= 2
    )


def test_bad_or_future_months_are_refused() -> None:
    today = date(2026, 5, 20)
    assert parse_month("2026-05", today) == (date(2026, 5, 1), date(2026, 6, 1))
    assert parse_month("2025-12", today) == (date(2025, 12, 1), date(2026, 1, 1))
    for bad in ("2026-06", "2027-01", "2026-13", "2026-00", "2026-5", "26-05", "May", "0000-01", ""):
        with pytest.raises(InvalidRequest):
            parse_month(bad, today)


def test_usage_range_defaults_to_the_current_month() -> None:
    today = date(2026, 12, 20)
    assert usage_range(None, None, today) == (date(2026, 12, 1), date(2027, 1, 1))
    assert usage_range("2026-11-05", None, today) == (date(2026, 11, 5), date(2027, 1, 1))
    assert usage_range("2026-12-02", "2026-12-03", today) == (date(2026, 12, 2), date(2026, 12, 3))
    for since, until in (
        ("2026-12-03", "2026-12-03"),
        ("2026-02-30", None),
        ("yesterday", None),
        (None, "2026-1-1"),
    ):
        with pytest.raises(InvalidRequest):
            usage_range(since, until, today)


async def test_usage_groupings_sum_exactly(world: World) -> None:
    reports = Reports(world.store)
    mar, apr = date(2026, 3, 1), date(2026, 4, 1)
    by_day = await reports.usage(world.account.id, mar, apr, "day")
    assert [(g.group, g.tally.requests, g.tally.cost) for g in by_day] == [
        ("2026-03-01", 1, C),
        ("2026-03-10", 1, D),
        ("2026-03-20", 1, E),
        ("2026-03-31", 1, F),
    ]
    by_model = await reports.usage(world.account.id, mar, apr, "model")
    assert [(g.group, g.tally.requests, g.tally.prompt_tokens, g.tally.cost) for g in by_model] == [
        (GPT4O, 1, 10, F),
        (MINI, 3, 4100, C + D + E),
    ]
    by_key = await reports.usage(world.account.id, mar, apr, "key")
    assert sorted((g.group, g.name, g.tally.cost) for g in by_key) == sorted(
        [(world.key1.id, "first", C + E), (world.key2.id, "second", D + F)]
    )
    by_provider = await reports.usage(world.account.id, mar, apr, "provider")
    assert [(g.group, g.tally.requests, g.tally.cost) for g in by_provider] == [("sim", 4, C + D + E + F)]
    for groups in (by_day, by_model, by_key, by_provider):
        assert sum(g.tally.cost for g in groups) == (await _statement(world, "2026-03")).total_usage

    # Ranges include `from` and exclude `to`, to the microsecond.
    edge = await reports.usage(world.account.id, date(2026, 2, 28), date(2026, 3, 2), "day")
    assert [(g.group, g.tally.cost) for g in edge] == [("2026-02-28", B), ("2026-03-01", C)]
    assert await reports.usage(world.account.id, date(2026, 1, 1), date(2026, 2, 1), "model") == []
    # Another account sees none of it.
    other = await world.store.create_account("other", None)
    assert await reports.usage(other.id, date(2026, 1, 1), date(2026, 6, 1), "key") == []


async def test_renderings_show_the_same_figures(world: World) -> None:
    mar = await _statement(world, "2026-03")
    rows = list(csv.DictReader(io.StringIO(statement_csv(mar))))
    by_type = {r["type"]: r for r in rows if r["type"] not in ("credit", "usage")}
    assert by_type["opening_balance"]["amount"] == format_usd(FEB_CLOSING) == "9.98455"
    assert by_type["total_credits"]["amount"] == "7.0"
    assert by_type["total_usage"]["amount"] == format_usd(C + D + E + F) == "0.00147"
    assert by_type["closing_balance"]["amount"] == format_usd(MAR_CLOSING) == "16.98308"
    usage = [r for r in rows if r["type"] == "usage"]
    assert [(r["model"], r["input_per_1m"], r["output_per_1m"], r["amount"]) for r in usage] == [
        (GPT4O, "2.5", "10", "0.000055"),
        (MINI, "0.15", "0.6", "0.000915"),
        (MINI, "0.1", "0.4", "0.0005"),
    ]
    assert [r["amount"] for r in rows if r["type"] == "credit"] == ["5.0", "2.0"]

    html = statement_html(mar)
    text = pypdf.PdfReader(io.BytesIO(statement_pdf(mar))).pages[0].extract_text()
    for figure in ("9.98455", "7.0", "0.00147", "16.98308", "0.000055", "0.000915", "0.0005", "March 2026"):
        assert figure in html and figure in text, figure


async def test_sums_past_64_bits_stay_exact(tmp_path: Path) -> None:
    """Money is summed in Python, never by SQLite's SUM (raises past 2^63) or TOTAL (a float)."""
    path = tmp_path / "big.db"
    store = SqliteStore(str(path))
    await store.migrate()
    big = 4_000_000 * USD + 1  # each fits a 64-bit column; three do not fit a 64-bit sum
    with sqlite3.connect(path) as db:
        for i in range(3):
            db.execute(
                "INSERT INTO generations (id, account_id, key_id, model, provider, endpoint, streamed, status,"
                " cost, created_at) VALUES (?, 'acct', 'key', ?, 'sim', 'chat', 0, 'success', ?, ?)",
                (f"gen_{i}", MINI, big, f"2026-03-0{i + 1}T00:00:00.000000Z"),
            )
    try:
        rows = await store.usage_rows("acct", "2026-03-01T00:00:00.000000Z", "2026-04-01T00:00:00.000000Z")
        assert sum(r.cost for r in rows) == 3 * big > 2**63
        assert await store.charges_before("acct", "2026-04-01T00:00:00.000000Z") == 3 * big
        assert format_usd(3 * big) == "12000000.000000000003"
    finally:
        await store.close()
