"""The audit log, on both backends: the service layer records every change with who did it,
entries list newest first with filters, the chain verifies, and an entry changed, removed or
reordered afterwards makes `verify_audit` fail naming it. Never a secret in any entry."""

from __future__ import annotations

import asyncio

import orjson

from nemorouter.service import audit
from nemorouter.service.administration.admin import Admin
from nemorouter.store.audit_records import AuditEntry
from nemorouter.store.base import Store

from ..conftest import RawSql


async def test_admin_actions_are_recorded_with_who_what_when(store: Store, admin: Admin) -> None:
    with audit.acting_as("admin"):
        account = await admin.create_account({"name": "acme", "email": "a@example.com"})
        await admin.add_credit(account.id, {"amount": "5.00", "reason": "top-up", "idempotency_key": "i1"})
        await admin.add_credit(account.id, {"amount": "5.00", "reason": "top-up", "idempotency_key": "i1"})
    with audit.acting_as("management_key:key_mgmt"):
        secret, key = await admin.create_key(account.id, {"name": "ci", "limit": "1.50"})
        await admin.update_key(key.id, {"disabled": True}, account_id=account.id)
        new_secret, _ = await admin.rotate_key(key.id, {"grace_seconds": 60}, account_id=account.id)
        await admin.revoke_key(key.id, account_id=account.id)
    await admin.create_provider({"name": "sim", "kind": "openai", "base_url": "http://127.0.0.1:1/v1"})
    provider_secret = "sk-provider-audit-" + "x" * 20
    await admin.add_provider_key("sim", {"secret": provider_secret, "label": "main"})

    found = await store.list_audit(limit=100)
    assert [r.entry.action for r in found] == [
        "provider_key.add",
        "provider.create",
        "key.revoke",
        "key.rotate",
        "key.update",
        "key.create",
        "credit.add",  # once: the repeated idempotency key changed nothing
        "account.create",
    ]
    assert [r.seq for r in found] == list(range(8, 0, -1))
    by_action = {r.entry.action: r.entry for r in found}
    assert by_action["account.create"].actor == "admin"
    assert by_action["key.create"].actor == "management_key:key_mgmt"
    assert by_action["provider.create"].actor == "system"  # nobody said who: a background caller
    assert by_action["key.create"].targets == {"account_id": account.id, "key_id": key.id}
    assert by_action["key.create"].params["limit"] == 1_500_000_000_000  # pico-USD, exact
    assert by_action["credit.add"].params["amount_pico"] == 5 * 10**12
    assert by_action["key.update"].params == {"disabled": True}
    assert by_action["key.rotate"].params["grace_seconds"] == 60
    assert by_action["provider_key.add"].params["fingerprint"]
    assert all(r.entry.at.endswith("Z") for r in found)
    text = orjson.dumps([audit.view(r) for r in found]).decode()
    for plaintext in (secret, new_secret, provider_secret):
        assert plaintext not in text

    # Filters: by actor, action, account, any target id, time.
    assert len(await store.list_audit(actor="admin")) == 2
    assert [r.entry.action for r in await store.list_audit(action="key.update")] == ["key.update"]
    assert {r.entry.action for r in await store.list_audit(account_id=account.id)} == {
        "account.create",
        "credit.add",
        "key.create",
        "key.update",
        "key.rotate",
        "key.revoke",
    }
    assert len(await store.list_audit(target=key.id)) == 4
    assert len(await store.list_audit(limit=3)) == 3
    assert await store.list_audit(since="2999-01-01T00:00:00.000000Z") == []
    assert await store.verify_audit() == ([], 8)


async def test_concurrent_appends_keep_one_unbroken_chain(store: Store) -> None:
    entries = [
        AuditEntry("2026-03-02T10:00:00.000000Z", "admin", "test.append", None, {"n": str(i)}, {"i": i})
        for i in range(40)
    ]
    await asyncio.gather(*(store.append_audit(e) for e in entries))
    problems, count = await store.verify_audit()
    assert (problems, count) == ([], 40)
    assert sorted(r.seq for r in await store.list_audit(limit=100)) == list(range(1, 41))


async def test_a_changed_removed_or_reordered_entry_fails_verify(store: Store, raw_sql: RawSql) -> None:
    for i in range(5):
        await store.append_audit(
            AuditEntry("2026-03-02T10:00:00.000000Z", "admin", f"test.{i}", "acct_1", {"id": str(i)}, {})
        )
    assert await store.verify_audit() == ([], 5)

    assert await raw_sql("UPDATE audit_log SET actor = ? WHERE seq = ?", "management_key:x", 2) == 1
    problems, _ = await store.verify_audit()
    assert problems == ["audit entry 2 (test.1): changed after it was written"]
    await raw_sql("UPDATE audit_log SET actor = ? WHERE seq = ?", "admin", 2)
    assert (await store.verify_audit())[0] == []

    # Rewriting the digest too breaks the link to the next entry's chain.
    assert await raw_sql("UPDATE audit_log SET params = ?, digest = ? WHERE seq = ?", '{"x":1}', "0" * 64, 3)
    problems, _ = await store.verify_audit()
    assert any("entry 3" in p and "changed" in p for p in problems)
    assert any("entry 3" in p and "does not follow" in p for p in problems)

    assert await raw_sql("DELETE FROM audit_log WHERE seq = ?", 4) == 1
    problems, count = await store.verify_audit()
    assert count == 4
    assert any("entries 4 missing" in p for p in problems)
