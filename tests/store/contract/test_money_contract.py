"""Store contract (SQLite and PostgreSQL), the money role: `reserve` (DESIGN.md "Holds: the hard
cap"). The rule's table of cases: test_cap_rule_contract.py; settle, release and recovery:
test_money_settle_contract.py.

Keys and accounts are made through `Admin`, as the API does; money is pico-USD (1 USD = 10**12).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nemorouter.service.administration.admin import Admin
from nemorouter.store.base import Store, StoreError
from nemorouter.store.records import ApiKey, Generation, Hold
from nemorouter.timeutil import iso, new_id

USD = 10**12
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday (the `admin` fixture's clock)
NOW_TEXT = iso(NOW)


async def make_key(admin: Admin, credits: str | None = "10", **fields: Any) -> ApiKey:
    account = await admin.create_account({"name": "acme", "email": "ops@acme.test"})
    if credits is not None:
        await admin.add_credit(account.id, {"amount": credits, "reason": "test"})
    _, key = await admin.create_key(account.id, {"name": "k", **fields})
    return key


def hold(key: ApiKey, amount: int, window: str = "all", owner: str = "proc-a") -> Hold:
    return Hold(new_id("gen_"), key.account_id, key.id, amount, window, owner, NOW_TEXT, model="m/x")


async def held(store: Store, key: ApiKey) -> tuple[int, int, int]:
    """(account held, key held, open holds) — what a refusal must leave unchanged."""
    account = await store.get_account(key.account_id)
    found = await store.get_key(key.id)
    assert account is not None and found is not None
    return account.held, found.held, len(await store.open_holds())


async def test_reserve_holds_against_key_and_account(admin: Admin, store: Store) -> None:
    key = await make_key(admin, "10", limit="5")
    result = await store.reserve(hold(key, 3 * USD), NOW_TEXT)
    assert result.ok and result.reason == "ok"
    assert await held(store, key) == (3 * USD, 3 * USD, 1)
    account = await store.get_account(key.account_id)
    assert account is not None and (account.total_credits, account.total_usage) == (10 * USD, 0)


async def test_reserve_refuses_beyond_the_balance(admin: Admin, store: Store) -> None:
    key = await make_key(admin, "1")
    assert (await store.reserve(hold(key, 600_000_000_000), NOW_TEXT)).ok
    before = await held(store, key)
    refused = await store.reserve(hold(key, 500_000_000_000), NOW_TEXT)
    assert (refused.ok, refused.reason, refused.available) == (False, "insufficient_credits", 400_000_000_000)
    assert await held(store, key) == before  # the key's share of the hold was undone too
    exact = await store.reserve(hold(key, 400_000_000_000), NOW_TEXT)
    assert exact.ok  # exactly the balance fits
    refused = await store.reserve(hold(key, 1), NOW_TEXT)
    assert (refused.reason, refused.available) == ("insufficient_credits", 0)
    assert (await store.verify_ledger()).ok


async def test_reserve_without_any_credit(admin: Admin, store: Store) -> None:
    key = await make_key(admin, None)
    refused = await store.reserve(hold(key, 1), NOW_TEXT)
    assert (refused.reason, refused.available) == ("insufficient_credits", 0)
    assert (await store.reserve(hold(key, 0), NOW_TEXT)).ok


async def test_reserve_refuses_beyond_the_key_limit(admin: Admin, store: Store) -> None:
    key = await make_key(admin, "100", limit="1")
    assert (await store.reserve(hold(key, 700_000_000_000), NOW_TEXT)).ok
    before = await held(store, key)
    refused = await store.reserve(hold(key, 400_000_000_000), NOW_TEXT)
    assert (refused.reason, refused.available) == ("key_limit_exceeded", 300_000_000_000)
    assert await held(store, key) == before
    assert (await store.reserve(hold(key, 300_000_000_000), NOW_TEXT)).ok
    assert (await store.reserve(hold(key, 1), NOW_TEXT)).reason == "key_limit_exceeded"


async def test_key_limit_is_checked_before_the_balance(admin: Admin, store: Store) -> None:
    key = await make_key(admin, "1", limit="2")
    refused = await store.reserve(hold(key, 3 * USD), NOW_TEXT)
    assert (refused.reason, refused.available) == ("key_limit_exceeded", 2 * USD)
    refused = await store.reserve(hold(key, 1_500_000_000_000), NOW_TEXT)
    assert (refused.reason, refused.available) == ("insufficient_credits", 1 * USD)


async def test_a_new_window_resets_the_usage(admin: Admin, store: Store) -> None:
    key = await make_key(admin, "100", limit="1", limit_reset="daily")
    first = hold(key, 800_000_000_000, window="2026-03-02")
    assert (await store.reserve(first, NOW_TEXT)).ok
    gen = await _generation(store, first, cost=800_000_000_000)
    assert await store.settle(first.request_id, gen, "2026-03-02")
    stored = await store.get_key(key.id)
    assert stored is not None and (stored.window_start, stored.window_usage) == (
        "2026-03-02",
        800_000_000_000,
    )
    # Same window: only 0.2 USD left.
    refused = await store.reserve(hold(key, 500_000_000_000, window="2026-03-02"), NOW_TEXT)
    assert (refused.reason, refused.available) == ("key_limit_exceeded", 200_000_000_000)
    # The next day's window starts from zero.
    assert (await store.reserve(hold(key, 500_000_000_000, window="2026-03-03"), NOW_TEXT)).ok
    refused = await store.reserve(hold(key, 600_000_000_000, window="2026-03-03"), NOW_TEXT)
    assert (refused.reason, refused.available) == ("key_limit_exceeded", 500_000_000_000)


async def _generation(store: Store, h: Hold, cost: int) -> Generation:
    pending = await store.get_generation(h.request_id)
    assert pending is not None and pending.status == "pending" and pending.hold == h.amount
    return replace(pending, status="success", cost=cost, prompt_tokens=100, completion_tokens=20)


async def test_revoked_key(admin: Admin, store: Store) -> None:
    key = await make_key(admin, None)  # no credit either: the key is checked first
    await admin.revoke_key(key.id)
    before = await held(store, key)
    assert (await store.reserve(hold(key, 1), NOW_TEXT)).reason == "key_revoked"
    assert await held(store, key) == before


async def test_disabled_key(admin: Admin, store: Store) -> None:
    key = await make_key(admin, "10")
    await admin.update_key(key.id, {"disabled": True})
    assert (await store.reserve(hold(key, 1), NOW_TEXT)).reason == "key_disabled"
    assert await held(store, key) == (0, 0, 0)
    await admin.update_key(key.id, {"disabled": False})
    assert (await store.reserve(hold(key, 1), NOW_TEXT)).ok


async def test_revoked_wins_over_disabled(admin: Admin, store: Store) -> None:
    key = await make_key(admin, "10")
    await admin.update_key(key.id, {"disabled": True})
    await admin.revoke_key(key.id)
    assert (await store.reserve(hold(key, 1), NOW_TEXT)).reason == "key_revoked"


async def test_expired_key(admin: Admin, store: Store) -> None:
    expires = NOW + timedelta(hours=1)
    key = await make_key(admin, "10", expires_at=expires.isoformat())
    assert key.expires_at == iso(expires)
    just_before = iso(expires - timedelta(microseconds=1))
    assert (await store.reserve(hold(key, 1), just_before)).ok
    assert (await store.reserve(hold(key, 1), iso(expires))).reason == "key_expired"
    assert (await store.reserve(hold(key, 1), iso(expires + timedelta(days=3)))).reason == "key_expired"
    assert await held(store, key) == (1, 1, 1)


async def test_unknown_key(admin: Admin, store: Store) -> None:
    key = await make_key(admin, "10")
    ghost = Hold("gen_ghost", key.account_id, "key_missing", 1, "all", "proc-a", NOW_TEXT)
    assert (await store.reserve(ghost, NOW_TEXT)).reason == "key_missing"
    assert await held(store, key) == (0, 0, 0)


async def test_a_second_reserve_of_a_request_is_refused(admin: Admin, store: Store) -> None:
    key = await make_key(admin)
    h = Hold(new_id("gen_"), key.account_id, key.id, 1 * USD, "all", "p", NOW_TEXT)
    assert (await store.reserve(h, NOW_TEXT)).ok
    with pytest.raises(StoreError, match="already has a record"):
        await store.reserve(replace(h, amount=2 * USD), NOW_TEXT)
    account = await store.get_account(key.account_id)
    assert account is not None and account.held == 1 * USD
    assert (await store.verify_ledger()).ok
