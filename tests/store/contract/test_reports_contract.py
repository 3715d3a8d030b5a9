"""Store contract (SQLite and PostgreSQL): usage records and the sums billing reports are made of
(exact integer sums, charged requests only, per UTC day, key, model and price snapshot)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from nemorouter.service.administration.admin import Admin
from nemorouter.store.base import Store
from nemorouter.store.records import Generation, Hold, UsageRow

from .test_accounts_contract import NOW_TEXT, hold, make_key


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
