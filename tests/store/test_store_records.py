"""Store contract (SQLite and PostgreSQL): accounts, key administration and rotation, leak
reports, usage records and the sums billing reports are made of."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from nemorouter.service.administration.admin import Admin
from nemorouter.service.keyformat import hash_key
from nemorouter.store.base import Store, StoreError
from nemorouter.store.records import ApiKey, Generation, Hold, UsageRow
from nemorouter.timeutil import iso, new_id, time_ordered_id, utcnow

USD = 10**12
NOW_TEXT = iso(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))


async def make_key(admin: Admin, **fields: Any) -> tuple[str, ApiKey]:
    account = await admin.create_account({"name": "acme"})
    await admin.add_credit(account.id, {"amount": "100"})
    return await admin.create_key(account.id, {"name": "k", **fields})


async def test_accounts(admin: Admin, store: Store) -> None:
    first = await store.create_account("one", None)
    second = await store.create_account("two", "b@two.test")
    assert {a.id for a in await store.list_accounts()} == {first.id, second.id}
    changed = await store.update_account(
        first.id, {"name": "uno", "email": "a@one.test", "rpm": 60, "tpm": None}
    )
    assert changed is not None and (changed.name, changed.email, changed.rpm, changed.tpm) == (
        "uno",
        "a@one.test",
        60,
        None,
    )
    with pytest.raises(StoreError):
        await store.update_account(first.id, {"total_credits": 5})
    assert await store.get_account("acct_missing") is None


async def test_keys_listing_and_changes(admin: Admin, store: Store) -> None:
    _, key = await make_key(admin, limit="2", limit_reset="monthly", allowed_models=["a/x", "a/y"], rpm=5)
    assert key.allowed_models == ("a/x", "a/y") and key.rpm == 5
    mgmt = await admin.create_key(key.account_id, {"name": "m"}, scope="management")
    _, elsewhere = await make_key(admin)
    assert {k.id for k in await store.list_keys(key.account_id)} == {key.id, mgmt[1].id}
    assert [k.id for k in await store.list_keys(key.account_id, scope="inference")] == [key.id]
    assert {k.id for k in await store.list_keys()} == {key.id, mgmt[1].id, elsewhere.id}
    version = await store.config_version()
    changed = await store.update_key(
        key.id, {"disabled": True, "limit": None, "allowed_models": None, "tpm": 10_000_000_000}
    )
    assert changed is not None
    assert (changed.disabled, changed.limit, changed.allowed_models, changed.tpm) == (
        True,
        None,
        None,
        10**10,
    )
    assert await store.config_version() > version
    changed = await store.update_key(key.id, {"disabled": False, "allowed_models": ("a/z",)})
    assert changed is not None and (changed.disabled, changed.allowed_models) == (False, ("a/z",))
    with pytest.raises(StoreError):
        await store.update_key(key.id, {"usage": 0})
    assert await store.get_key("key_missing") is None


async def test_rotation_keeps_the_old_secret_until_its_grace_ends(admin: Admin, store: Store) -> None:
    old, key = await make_key(admin)
    await store.add_key_secret(key.id, hash_key("sk-new"), "2026-03-02T11:00:00.000000Z")
    found_old, found_new = await store.find_key(hash_key(old)), await store.find_key(hash_key("sk-new"))
    assert found_old is not None and found_new is not None
    assert found_old[0] == found_new[0] and found_old[0].id == key.id
    assert (found_old[1], found_new[1]) == ("2026-03-02T11:00:00.000000Z", None)
    assert (found_old[0].account_rpm, found_old[0].account_tpm) == (None, None)
    # A rotation with no grace retires every earlier secret at once.
    await store.add_key_secret(key.id, hash_key("sk-newer"), None)
    for secret in (old, "sk-new"):
        found = await store.find_key(hash_key(secret))
        assert found is not None and found[1] is not None and found[1] <= iso(utcnow())


async def test_leaks_revoke_live_keys_once(admin: Admin, store: Store) -> None:
    _, key = await make_key(admin)
    _, other = await make_key(admin)
    found = [(key.id, "https://paste.test/1", "scanner"), (key.id, None, None), ("key_missing", None, None)]
    assert await store.record_leaks(found, 5, "203.0.113.9", NOW_TEXT) == 1
    assert await store.record_leaks([(key.id, None, "again")], 1, None, NOW_TEXT) == 0
    revoked = await store.get_key(key.id)
    assert revoked is not None and revoked.revoked_at == NOW_TEXT
    events = await store.list_leak_events(key.account_id)
    assert len(events) == 3 and {e["key_id"] for e in events} == {key.id}
    assert {(e["url"], e["source"]) for e in events} == {
        ("https://paste.test/1", "scanner"),
        (None, None),
        (None, "again"),
    }
    assert set(events[0]) == {"id", "key_id", "url", "source", "reported_at"}
    assert await store.list_leak_events(other.account_id) == []
    assert (await store.reserve(hold(revoked, 1, NOW_TEXT), NOW_TEXT)).reason == "key_revoked"


def hold(key: ApiKey, amount: int, created_at: str) -> Hold:
    return Hold(time_ordered_id("gen_"), key.account_id, key.id, amount, "all", "p", created_at, model="m/x")


async def charge(store: Store, h: Hold, cost: int, **fields: Any) -> Generation:
    assert (await store.reserve(h, NOW_TEXT)).ok
    pending = await store.get_generation(h.request_id)
    assert pending is not None
    done = replace(pending, status="success", cost=cost, **fields)
    assert await store.settle(h.request_id, done, "all")
    return done


async def test_usage_records_and_report_sums(admin: Admin, store: Store) -> None:
    _, key = await make_key(admin)
    _, second = await admin.create_key(key.account_id, {"name": "second"})
    day1, day2, day3 = (
        "2026-03-01T23:59:59.999999Z",
        "2026-03-02T00:00:00.000000Z",
        "2026-03-03T08:00:00.000000Z",
    )
    big = 4 * 10**18  # large single amounts (4 million USD); every total still fits 64 bits
    await store.add_credit(key.account_id, big, "big", None)
    await store.add_credit(key.account_id, big, "big", None)
    a = await charge(store, hold(key, big, day1), big, prompt_tokens=10, completion_tokens=2, provider="sim")
    b = await charge(store, hold(key, big, day2), big, prompt_tokens=20, completion_tokens=4, provider="sim")
    c = await charge(store, hold(second, 7, day2), 5, prompt_tokens=1, cached_tokens=1, provider="sim")
    failed = hold(key, 3, day2)
    assert (await store.reserve(failed, NOW_TEXT)).ok
    assert await store.release(failed.request_id, None)
    open_ = hold(key, 4, day3)
    assert (await store.reserve(open_, NOW_TEXT)).ok

    newest_first = [open_.request_id, failed.request_id, c.id, b.id, a.id]
    assert [g.id for g in await store.list_generations(key.account_id, None, 10)] == newest_first
    assert [g.id for g in await store.list_generations(key.account_id, None, 2)] == newest_first[:2]
    assert [g.id for g in await store.list_generations(key.account_id, second.id, 10)] == [c.id]
    assert await store.list_generations("acct_missing", None, 10) == []

    assert await store.key_spend_since(key.id, day2) == big
    assert await store.key_spend_since(key.id, "2026-01-01") == 2 * big
    assert await store.charges_before(key.account_id, day3) == 2 * big + 5
    assert await store.charges_before(key.account_id, day2) == big

    found = await store.usage_rows(key.account_id, "2026-03-01", "2026-03-04")
    assert sorted(found, key=lambda r: (r.day, r.key_id)) == sorted(
        [
            UsageRow("2026-03-01", key.id, "m/x", "sim", None, 1, 10, 2, 0, 0, 0, big),
            UsageRow("2026-03-02", key.id, "m/x", "sim", None, 1, 20, 4, 0, 0, 0, big),
            UsageRow("2026-03-02", second.id, "m/x", "sim", None, 1, 1, 0, 1, 0, 0, 5),
        ],
        key=lambda r: (r.day, r.key_id),
    )
    assert await store.usage_rows(key.account_id, "2026-03-02", "2026-03-02") == []
    assert (await store.verify_ledger()).ok


async def test_a_second_reserve_of_a_request_is_refused(admin: Admin, store: Store) -> None:
    _, key = await make_key(admin)
    h = Hold(new_id("gen_"), key.account_id, key.id, 1 * USD, "all", "p", NOW_TEXT)
    assert (await store.reserve(h, NOW_TEXT)).ok
    with pytest.raises(StoreError, match="already has a record"):
        await store.reserve(replace(h, amount=2 * USD), NOW_TEXT)
    account = await store.get_account(key.account_id)
    assert account is not None and account.held == 1 * USD
    assert (await store.verify_ledger()).ok
