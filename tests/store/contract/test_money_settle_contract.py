"""Store contract (SQLite and PostgreSQL): settle, release, recovery and `verify_ledger`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from nemorouter.service.administration.admin import Admin
from nemorouter.store.base import Store
from nemorouter.store.records import Account, ApiKey, Generation, Hold
from nemorouter.timeutil import iso, new_id

USD = 10**12
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
NOW_TEXT = iso(NOW)
RawSql = Callable[..., Awaitable[int]]  # the `raw_sql` fixture: one statement behind the store's back


async def make_key(admin: Admin, credits: str = "10", **fields: Any) -> ApiKey:
    account = await admin.create_account({"name": "acme"})
    await admin.add_credit(account.id, {"amount": credits})
    _, key = await admin.create_key(account.id, {"name": "k", **fields})
    return key


def hold(key: ApiKey, amount: int, owner: str = "proc-a") -> Hold:
    return Hold(new_id("gen_"), key.account_id, key.id, amount, "all", owner, NOW_TEXT, model="m/x")


def outcome(h: Hold, cost: int, status: str = "success", **fields: Any) -> Generation:
    return Generation(
        id=h.request_id,
        account_id=h.account_id,
        key_id=h.key_id,
        model=h.model,
        endpoint="chat",
        streamed=False,
        status=status,
        created_at=h.created_at,
        cost=cost,
        hold=h.amount,
        **fields,
    )


async def state(store: Store, key: ApiKey) -> tuple[Account, ApiKey]:
    account = await store.get_account(key.account_id)
    found = await store.get_key(key.id)
    assert account is not None and found is not None
    return account, found


async def test_settle_moves_exactly_the_cost(admin: Admin, store: Store) -> None:
    key = await make_key(admin, "10", limit="5")
    h = hold(key, 500_000_000_000)
    assert (await store.reserve(h, NOW_TEXT)).ok
    cost = 123_456_789_012  # 0.123456789012 USD
    gen = outcome(
        h, cost, prompt_tokens=1_000, completion_tokens=250, cached_tokens=100, finish_reason="stop"
    )
    assert await store.settle(h.request_id, gen, "all") is True
    account, found = await state(store, key)
    assert (account.total_usage, account.held) == (cost, 0)
    assert account.balance == 10 * USD - cost == 9_876_543_210_988
    assert (found.usage, found.window_usage, found.window_start, found.held) == (cost, cost, "all", 0)
    record = await store.get_generation(h.request_id)
    assert record is not None
    assert (record.status, record.cost, record.hold, record.prompt_tokens, record.completion_tokens) == (
        "success",
        cost,
        500_000_000_000,
        1_000,
        250,
    )
    assert (record.cached_tokens, record.finish_reason) == (100, "stop")
    assert await store.open_holds() == []
    assert (await store.verify_ledger()).ok


async def test_settle_removes_only_its_own_hold(admin: Admin, store: Store) -> None:
    key = await make_key(admin, "10")
    first, second = hold(key, 2 * USD), hold(key, 3 * USD)
    assert (await store.reserve(first, NOW_TEXT)).ok and (await store.reserve(second, NOW_TEXT)).ok
    assert await store.settle(first.request_id, outcome(first, 1 * USD), "all")
    account, found = await state(store, key)
    assert (account.held, found.held, account.total_usage) == (3 * USD, 3 * USD, 1 * USD)
    assert [h.request_id for h in await store.open_holds()] == [second.request_id]
    assert (await store.verify_ledger()).ok


async def test_settle_twice_changes_nothing(admin: Admin, store: Store) -> None:
    key = await make_key(admin, "10")
    h = hold(key, 1 * USD)
    await store.reserve(h, NOW_TEXT)
    assert await store.settle(h.request_id, outcome(h, 400_000_000_000), "all") is True
    after_first = await state(store, key)
    record = await store.get_generation(h.request_id)
    assert await store.settle(h.request_id, outcome(h, 900_000_000_000), "all") is False
    assert await state(store, key) == after_first
    assert await store.get_generation(h.request_id) == record
    assert await store.release(h.request_id, None) is False  # and it cannot be released afterwards
    assert await state(store, key) == after_first
    assert (await store.verify_ledger()).ok


async def test_release_restores_and_settle_after_it_is_refused(admin: Admin, store: Store) -> None:
    key = await make_key(admin, "10", limit="1")
    h = hold(key, 1 * USD)
    before = await state(store, key)
    assert (await store.reserve(h, NOW_TEXT)).ok
    assert await store.release(h.request_id, None) is True
    assert await state(store, key) == before
    record = await store.get_generation(h.request_id)
    assert record is not None and (record.status, record.cost) == ("error", 0)
    assert await store.release(h.request_id, None) is False
    assert await store.settle(h.request_id, outcome(h, 1), "all") is False
    assert await state(store, key) == before
    # The whole limit is available again.
    assert (await store.reserve(hold(key, 1 * USD), NOW_TEXT)).ok


async def test_release_with_failure_details(admin: Admin, store: Store) -> None:
    key = await make_key(admin, "10")
    h = hold(key, 1 * USD)
    await store.reserve(h, NOW_TEXT)
    failure = outcome(h, 0, status="error", error="upstream_timeout", provider="openai")
    assert await store.release(h.request_id, failure) is True
    record = await store.get_generation(h.request_id)
    assert record is not None and (record.status, record.error, record.provider) == (
        "error",
        "upstream_timeout",
        "openai",
    )
    account, found = await state(store, key)
    assert (account.held, account.total_usage, found.held, found.usage) == (0, 0, 0, 0)
    assert (await store.verify_ledger()).ok


async def test_an_overrun_is_counted_not_a_problem(admin: Admin, store: Store) -> None:
    key = await make_key(admin, "10")
    h = hold(key, 100)
    await store.reserve(h, NOW_TEXT)
    assert await store.settle(h.request_id, outcome(h, 150), "all")
    account, _ = await state(store, key)
    assert (account.total_usage, account.held) == (150, 0)
    report = await store.verify_ledger()
    assert (report.ok, report.overruns) == (True, 1)


async def test_recover_all_holds(admin: Admin, store: Store) -> None:
    key = await make_key(admin, "10", limit="5")
    settled = hold(key, 1 * USD)
    await store.reserve(settled, NOW_TEXT)
    await store.settle(settled.request_id, outcome(settled, 250_000_000_000), "all")
    pending = [hold(key, 1 * USD, owner="proc-a"), hold(key, 2 * USD, owner="proc-b")]
    for h in pending:
        assert (await store.reserve(h, NOW_TEXT)).ok
    recovered = await store.recover_holds(None)
    assert sorted(h.request_id for h in recovered) == sorted(h.request_id for h in pending)
    assert sorted(h.amount for h in recovered) == [1 * USD, 2 * USD]
    for h in pending:
        record = await store.get_generation(h.request_id)
        assert record is not None and (record.status, record.cost) == ("orphaned", 0)
    record = await store.get_generation(settled.request_id)
    assert record is not None and record.status == "success"
    account, found = await state(store, key)
    assert (account.held, found.held) == (0, 0)
    assert (account.total_usage, found.usage) == (250_000_000_000, 250_000_000_000)
    assert await store.open_holds() == []
    assert (await store.verify_ledger()).ok
    # A recovered hold can be neither settled nor released any more.
    assert await store.settle(pending[0].request_id, outcome(pending[0], 1), "all") is False
    assert await store.release(pending[1].request_id, None) is False
    assert await store.recover_holds(None) == []


async def test_recover_one_owner(admin: Admin, store: Store) -> None:
    key = await make_key(admin, "10")
    mine, theirs = hold(key, 1 * USD, owner="proc-a"), hold(key, 2 * USD, owner="proc-b")
    await store.reserve(mine, NOW_TEXT)
    await store.reserve(theirs, NOW_TEXT)
    assert [h.request_id for h in await store.recover_holds("proc-a")] == [mine.request_id]
    account, found = await state(store, key)
    assert (account.held, found.held) == (2 * USD, 2 * USD)
    assert [h.request_id for h in await store.open_holds()] == [theirs.request_id]
    assert (await store.verify_ledger()).ok


async def _tamper(raw_sql: RawSql, sql: str, *params: Any) -> None:
    assert await raw_sql(sql, *params) == 1


async def _settled_key(admin: Admin, store: Store) -> ApiKey:
    key = await make_key(admin, "10", limit="5")
    h = hold(key, 1 * USD)
    await store.reserve(h, NOW_TEXT)
    await store.settle(h.request_id, outcome(h, 300_000_000_000), "all")
    await store.reserve(hold(key, 1 * USD), NOW_TEXT)
    assert (await store.verify_ledger()).ok
    return key


@pytest.mark.parametrize(
    ("sql", "names"),
    [
        ("UPDATE accounts SET total_credits = total_credits + 1 WHERE id = ?", "account"),
        ("UPDATE accounts SET total_usage = total_usage - 1 WHERE id = ?", "account"),
        ("UPDATE accounts SET held = held + 5 WHERE id = ?", "account"),
        ("UPDATE credits SET amount = amount + 1 WHERE account_id = ?", "account"),
        ("UPDATE api_keys SET usage = usage + 1 WHERE account_id = ?", "key"),
        ("UPDATE api_keys SET held = held - 1 WHERE account_id = ?", "key"),
        ("UPDATE generations SET cost = cost + 1 WHERE status = 'success' AND account_id = ?", "account"),
    ],
)
async def test_verify_ledger_finds_tampering(
    admin: Admin, store: Store, raw_sql: RawSql, sql: str, names: str
) -> None:
    key = await _settled_key(admin, store)
    await _tamper(raw_sql, sql, key.account_id)
    report = await store.verify_ledger()
    assert not report.ok
    named = key.account_id if names == "account" else key.id
    assert any(named in problem for problem in report.problems), report.problems


async def test_verify_ledger_flags_a_failed_request_with_a_charge(
    admin: Admin, store: Store, raw_sql: RawSql
) -> None:
    key = await make_key(admin, "10")
    h = hold(key, 1 * USD)
    await store.reserve(h, NOW_TEXT)
    await store.release(h.request_id, None)
    await _tamper(raw_sql, "UPDATE generations SET cost = 5 WHERE id = ?", h.request_id)
    await _tamper(raw_sql, "UPDATE accounts SET total_usage = 5 WHERE id = ?", key.account_id)
    await _tamper(raw_sql, "UPDATE api_keys SET usage = 5 WHERE id = ?", key.id)
    report = await store.verify_ledger()
    assert [p for p in report.problems if h.request_id in p]
