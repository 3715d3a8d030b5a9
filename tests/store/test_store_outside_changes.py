"""Store contract (SQLite and PostgreSQL): a change made by another process (the CLI, an operator's
SQL) between two requests binds the very next `reserve`, and settlements made afterwards add to
what that process wrote instead of overwriting it.

The SQLite store decides holds from counters it mirrors in memory (store/sqlite/money.py); these
tests change the rows around its back, after it has loaded them, and check that it notices.
"""

from __future__ import annotations

from typing import Any

import pytest

from nemorouter.service.administration.admin import Admin
from nemorouter.store.base import Store
from nemorouter.store.records import ApiKey, Hold
from nemorouter.timeutil import new_id

from .conftest import RawSql, batches_committed
from .contract.test_leases_contract import charge
from .contract.test_money_contract import NOW_TEXT, USD, hold, make_key


async def settled_once(store: Store, key: ApiKey, cost: int = 1) -> Hold:
    """One request reserved and settled, so the store has the key and account in hand."""
    h = hold(key, 2 * USD)
    assert (await store.reserve(h, NOW_TEXT)).ok
    assert await store.settle(h.request_id, charge(h, cost), "all")
    return h


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("UPDATE api_keys SET revoked_at = '2026-03-01T00:00:00.000000Z' WHERE id = ?", "key_revoked"),
        ("UPDATE api_keys SET disabled = TRUE WHERE id = ?", "key_disabled"),
        ("UPDATE api_keys SET expires_at = '2026-03-01T00:00:00.000000Z' WHERE id = ?", "key_expired"),
        ("UPDATE api_keys SET limit_pico = usage WHERE id = ?", "key_limit_exceeded"),
    ],
)
async def test_a_key_changed_elsewhere_binds_the_next_reserve(
    admin: Admin, store: Store, raw_sql: RawSql, sql: str, reason: str
) -> None:
    key = await make_key(admin, "10", limit="5")
    await settled_once(store, key)
    assert await raw_sql(sql, key.id) == 1
    result = await store.reserve(hold(key, USD), NOW_TEXT)
    assert (result.reason, result.available) == (reason, 0)
    assert await store.open_holds() == []


async def test_a_balance_changed_elsewhere_binds_the_next_reserve(
    admin: Admin, store: Store, raw_sql: RawSql
) -> None:
    key = await make_key(admin, "10")
    await settled_once(store, key, cost=3)
    # Another process's charge takes all but 0.5 USD of the balance.
    assert await raw_sql(
        "UPDATE accounts SET total_usage = total_credits - ? WHERE id = ?", USD // 2, key.account_id
    )
    result = await store.reserve(hold(key, USD), NOW_TEXT)
    assert (result.reason, result.available) == ("insufficient_credits", USD // 2)
    assert (await store.reserve(hold(key, USD // 2), NOW_TEXT)).ok  # exactly what is left fits


async def test_settling_after_a_change_elsewhere_adds_to_it(
    admin: Admin, store: Store, raw_sql: RawSql
) -> None:
    key = await make_key(admin, "10", limit="5")
    await settled_once(store, key, cost=7)
    open_hold = hold(key, USD)
    assert (await store.reserve(open_hold, NOW_TEXT)).ok
    # While the request runs, an operator grants 2 USD and books 5 pico of usage on the key.
    assert await raw_sql(
        "UPDATE accounts SET total_credits = total_credits + ? WHERE id = ?", 2 * USD, key.account_id
    )
    assert await raw_sql(
        "INSERT INTO credits (id, account_id, amount, reason, created_at) VALUES (?, ?, ?, 'ops', ?)",
        new_id("cr_"),
        key.account_id,
        2 * USD,
        NOW_TEXT,
    )
    assert await raw_sql(
        "UPDATE api_keys SET usage = usage + 5, window_usage = window_usage + 5 WHERE id = ?", key.id
    )
    assert await store.settle(open_hold.request_id, charge(open_hold, 11), "all")
    account, found = await store.get_account(key.account_id), await store.get_key(key.id)
    assert account is not None and found is not None
    assert (account.total_credits, account.total_usage, account.held) == (12 * USD, 18, 0)
    assert (found.usage, found.window_usage, found.held) == (23, 23, 0)
    # The key's room is what its row now says: 5 USD - 23 pico.
    big = hold(key, 5 * USD - 23)
    assert (await store.reserve(big, NOW_TEXT)).ok
    result = await store.reserve(hold(key, 1), NOW_TEXT)
    assert (result.reason, result.available) == ("key_limit_exceeded", 0)


async def test_a_credit_in_the_same_process_is_seen_at_once(admin: Admin, store: Store) -> None:
    key = await make_key(admin, "2")
    await settled_once(store, key, cost=USD // 2)  # 1.5 USD left
    assert not (await store.reserve(hold(key, 2 * USD), NOW_TEXT)).ok
    await admin.add_credit(key.account_id, {"amount": "1", "reason": "top-up"})
    assert (await store.reserve(hold(key, 2 * USD), NOW_TEXT)).ok


async def test_two_stores_on_one_database_never_pass_the_balance(
    admin: Admin, store: Store, store_url: str
) -> None:
    """Two stores (two processes, say) taking turns on one account: each sees the other's holds."""
    from nemorouter.store.open import open_store

    key = await make_key(admin, "0.000000000010")  # 10 pico
    other = open_store(store_url)
    try:
        taken: list[Any] = []
        for i in range(12):
            s = store if i % 2 == 0 else other
            taken.append((await s.reserve(hold(key, 1), NOW_TEXT)).ok)
            await batches_committed()  # (one SQLite writer at a time)
        assert taken == [True] * 10 + [False] * 2
        account = await store.get_account(key.account_id)
        assert account is not None and account.held == 10
        assert (await store.verify_ledger()).ok
    finally:
        await other.close()


async def test_a_hold_released_elsewhere_is_not_settled_twice(
    admin: Admin, store: Store, raw_sql: RawSql
) -> None:
    key = await make_key(admin, "10")
    await settled_once(store, key, cost=5)
    h = hold(key, USD)
    assert (await store.reserve(h, NOW_TEXT)).ok
    # Another process's recovery takes the hold back, as `orphan_holds` does.
    assert await raw_sql("UPDATE generations SET status = 'orphaned' WHERE id = ?", h.request_id)
    assert await raw_sql("UPDATE accounts SET held = held - ? WHERE id = ?", USD, key.account_id)
    assert await raw_sql("UPDATE api_keys SET held = held - ? WHERE id = ?", USD, key.id)
    assert not await store.settle(h.request_id, charge(h, 9), "all")
    account, found = await store.get_account(key.account_id), await store.get_key(key.id)
    assert account is not None and found is not None
    assert (account.total_usage, account.held, found.usage, found.held) == (5, 0, 5, 0)
    assert (await store.verify_ledger()).ok
