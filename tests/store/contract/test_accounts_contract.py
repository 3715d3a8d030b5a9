"""Store contract (SQLite and PostgreSQL), the accounts and keys role: accounts and their credits,
key administration and rotation, leak reports (usage records and report sums:
test_reports_contract.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from nemorouter.service.administration.admin import Admin
from nemorouter.service.keyformat import hash_key, key_scope
from nemorouter.store.base import Store, StoreError
from nemorouter.store.records import ApiKey, Hold
from nemorouter.timeutil import iso, time_ordered_id, utcnow

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


async def test_new_account_is_empty(admin: Admin, store: Store) -> None:
    account = await admin.create_account({"name": "acme", "email": "a@b.test"})
    found = await store.get_account(account.id)
    assert found is not None
    assert (found.name, found.email, found.total_credits, found.total_usage, found.held) == (
        "acme",
        "a@b.test",
        0,
        0,
        0,
    )
    assert found.balance == 0


async def test_credit_with_idempotency_key(admin: Admin, store: Store) -> None:
    account = await admin.create_account({"name": "acme"})
    first, created = await store.add_credit(account.id, 2_500_000_000_000, "stripe", "evt_1")
    assert created is True
    assert (first.amount, first.reason, first.idempotency_key) == (2_500_000_000_000, "stripe", "evt_1")
    again, created_again = await store.add_credit(account.id, 2_500_000_000_000, "stripe", "evt_1")
    assert created_again is False
    assert again == first
    # A different amount under the same key is still the same, already-applied credit.
    other, _ = await store.add_credit(account.id, 9 * USD, "stripe", "evt_1")
    assert other == first
    found = await store.get_account(account.id)
    assert found is not None and found.total_credits == found.balance == 2_500_000_000_000
    assert len(await store.list_credits(account.id)) == 1


async def test_credit_through_admin_parses_exactly(admin: Admin, store: Store) -> None:
    account = await admin.create_account({"name": "acme"})
    entry, created = await admin.add_credit(account.id, {"amount": "0.1", "idempotency_key": "a"})
    await admin.add_credit(account.id, {"amount": "0.2", "idempotency_key": "b"})
    await admin.add_credit(account.id, {"amount": "0.2", "idempotency_key": "b"})
    assert created and entry.amount == 100_000_000_000
    found = await store.get_account(account.id)
    assert found is not None and found.total_credits == 300_000_000_000  # exactly 0.3 USD


async def test_credits_without_idempotency_key_all_apply(admin: Admin, store: Store) -> None:
    account = await admin.create_account({"name": "acme"})
    for _ in range(3):
        assert (await store.add_credit(account.id, 7, "x", None))[1] is True
    found = await store.get_account(account.id)
    assert found is not None and found.total_credits == 21


async def test_idempotency_keys_are_per_account(admin: Admin, store: Store) -> None:
    one = await admin.create_account({"name": "one"})
    two = await admin.create_account({"name": "two"})
    await store.add_credit(one.id, 5, "x", "same")
    _, created = await store.add_credit(two.id, 5, "x", "same")
    assert created is True


async def test_credit_to_unknown_account(store: Store) -> None:
    with pytest.raises(StoreError):
        await store.add_credit("acct_missing", 5, "x", None)
    assert await store.list_credits("acct_missing") == []


async def test_created_key_is_stored_by_hash(admin: Admin, store: Store) -> None:
    account = await admin.create_account({"name": "acme"})
    secret, key = await admin.create_key(account.id, {"name": "k", "limit": "1.5", "limit_reset": "weekly"})
    assert key_scope(secret) == "inference"
    assert (key.limit, key.limit_reset, key.usage, key.held, key.window_usage) == (
        1_500_000_000_000,
        "weekly",
        0,
        0,
        0,
    )
    found = await store.find_key(hash_key(secret))
    assert found is not None and found[0] == key and found[1] is None
    assert await store.find_key(hash_key(secret + "x")) is None
    assert secret not in repr(key)
