"""Store contract (SQLite and PostgreSQL): alerts out. Webhook settings, the outbox (queued once,
claimed with a lease and counted, delivered, retried or given up) and the low-balance mark;
on PostgreSQL, replicas claiming at once never take one alert twice."""

from __future__ import annotations

import asyncio
from collections import Counter

from nemorouter.service.administration.admin import Admin
from nemorouter.store.alert_records import Alert
from nemorouter.store.base import Store
from nemorouter.store.postgres import PostgresStore

T0 = "2026-03-02T10:00:00.000000Z"
T1 = "2026-03-02T10:00:01.000000Z"
T2 = "2026-03-02T10:00:02.000000Z"
LATER = "2026-03-02T10:05:00.000000Z"
USD = 10**12


def alert(alert_id: str, account_id: str | None, at: str = T0) -> Alert:
    return Alert(alert_id, account_id, "credits.low", f'{{"id": "{alert_id}"}}', at)


async def test_webhook_settings_keep_their_secret(admin: Admin, store: Store) -> None:
    account = await admin.create_account({"name": "acme"})
    assert await store.get_alert_settings(account.id) is None
    first, created = await store.put_alert_settings(account.id, "https://a.test/h", 5 * USD, "env-1", T0)
    assert created and first.secret_envelope == "env-1" and first.low_balance_threshold == 5 * USD
    assert await store.set_low_balance(account.id, alert("evt_low_1", account.id), T1)

    # The same threshold again: the mark stays. The secret is never replaced.
    same, created = await store.put_alert_settings(account.id, "https://b.test/h", 5 * USD, "env-2", T1)
    assert not created and same.url == "https://b.test/h" and same.secret_envelope == "env-1"
    assert same.low_since == T1 and same.created_at == T0 and same.updated_at == T1
    # A new threshold is judged afresh; None turns the alert off.
    other, _ = await store.put_alert_settings(account.id, "https://b.test/h", 7 * USD, "env-3", T2)
    assert other.low_since is None and other.low_balance_threshold == 7 * USD
    off, _ = await store.put_alert_settings(account.id, "https://b.test/h", None, "env-4", T2)
    assert off.low_balance_threshold is None
    assert await store.get_alert_settings(account.id) == off


async def test_alerts_are_queued_once_and_only_with_a_webhook(admin: Admin, store: Store) -> None:
    account = await admin.create_account({"name": "acme"})
    assert not await store.enqueue_alert(alert("evt_1", account.id))  # no webhook set: dropped
    await store.put_alert_settings(account.id, "https://a.test/h", None, "env", T0)
    assert await store.enqueue_alert(alert("evt_1", account.id))
    assert not await store.enqueue_alert(alert("evt_1", account.id))  # the same fact, again
    assert await store.enqueue_alert(alert("evt_op", None))  # an operator alert needs no settings
    listed = await store.list_alerts(account.id, 10)
    assert [a["id"] for a in listed] == ["evt_1"]
    assert listed[0]["attempts"] == 0 and listed[0]["next_attempt_at"] == T0


async def test_low_balance_is_marked_once_until_cleared(admin: Admin, store: Store) -> None:
    account = await admin.create_account({"name": "acme"})
    await admin.add_credit(account.id, {"amount": "3"})
    await store.put_alert_settings(account.id, "https://a.test/h", 5 * USD, "env", T0)
    (watched,) = await store.low_balance_watch()
    assert watched[0].account_id == account.id and watched[1] == 3 * USD
    assert await store.set_low_balance(account.id, alert("evt_low_1", account.id), T1)
    assert not await store.set_low_balance(account.id, alert("evt_low_2", account.id), T2)
    assert [a["id"] for a in await store.list_alerts(account.id, 10)] == ["evt_low_1"]
    assert await store.set_low_balance(account.id, None, T2)
    assert not await store.set_low_balance(account.id, None, T2)
    assert await store.set_low_balance(account.id, alert("evt_low_2", account.id), T2)
    settings = await store.get_alert_settings(account.id)
    assert settings is not None and settings.low_since == T2


async def test_claims_lease_count_and_finish_deliveries(admin: Admin, store: Store) -> None:
    account = await admin.create_account({"name": "acme"})
    await store.put_alert_settings(account.id, "https://a.test/h", None, "env", T0)
    for n, at in enumerate((T0, T1, T2)):
        assert await store.enqueue_alert(alert(f"evt_{n}", account.id, at))
    await store.enqueue_alert(alert("evt_op", None, T0))

    assert await store.claim_alerts("2026-03-02T09:59:59.000000Z", LATER, 10) == []  # nothing due yet
    first = await store.claim_alerts(T1, LATER, 10)
    assert sorted(i.id for i in first) == ["evt_0", "evt_1", "evt_op"]
    by_id = {i.id: i for i in first}
    assert by_id["evt_0"].attempts == 1 and by_id["evt_0"].url == "https://a.test/h"
    assert by_id["evt_0"].secret_envelope == "env"
    assert by_id["evt_op"].url is None and by_id["evt_op"].account_id is None
    assert [i.id for i in await store.claim_alerts(T2, LATER, 10)] == ["evt_2"]  # the others are leased

    await store.alert_attempted("evt_0", delivered=True, now=T2, retry_at=None, error=None)
    await store.alert_attempted("evt_1", delivered=False, now=T2, retry_at=T2, error="503")
    await store.alert_attempted("evt_2", delivered=False, now=T2, retry_at=None, error="gone")
    again = await store.claim_alerts(T2, LATER, 10)
    assert [(i.id, i.attempts) for i in again] == [("evt_1", 2)]
    # A lease that ran out (the sender died mid-send): claimed again, one more attempt.
    assert sorted(
        (i.id, i.attempts) for i in await store.claim_alerts(LATER, "2026-03-02T11:00:00.000000Z", 10)
    ) == [
        ("evt_1", 3),
        ("evt_op", 2),
    ]
    listed = {a["id"]: a for a in await store.list_alerts(account.id, 10)}
    assert listed["evt_0"]["delivered_at"] == T2 and listed["evt_0"]["next_attempt_at"] is None
    assert listed["evt_2"]["failed_at"] == T2 and listed["evt_2"]["last_error"] == "gone"
    assert listed["evt_1"]["last_error"] == "503"
    # A late failure report never undoes a delivery.
    await store.alert_attempted("evt_0", delivered=False, now=LATER, retry_at=LATER, error="late")
    assert (await store.list_alerts(account.id, 10))[-1]["delivered_at"] == T2


async def test_replicas_claiming_at_once_take_each_alert_once(pg_url: str) -> None:
    replicas = [PostgresStore(pg_url, min_size=1, max_size=4) for _ in range(4)]
    try:
        account = await replicas[0].create_account("acme", None)
        await replicas[0].put_alert_settings(account.id, "https://a.test/h", None, "env", T0)
        for n in range(200):
            assert await replicas[n % 4].enqueue_alert(alert(f"evt_{n:03}", account.id))

        async def worker(store: PostgresStore) -> list[str]:
            taken: list[str] = []
            while batch := await store.claim_alerts(T1, LATER, 7):
                taken += [i.id for i in batch]
            return taken

        claims = await asyncio.gather(*(worker(r) for r in replicas for _ in range(3)))
    finally:
        await asyncio.gather(*(r.close() for r in replicas))
    counts = Counter(i for taken in claims for i in taken)
    assert len(counts) == 200 and set(counts.values()) == {1}
    assert sum(1 for taken in claims if taken) > 1  # the workers really competed
