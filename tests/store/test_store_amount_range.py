"""Store contract (SQLite and PostgreSQL): an account's total credits stay within MAX_AMOUNT, so
every running total (usage, holds, a key's usage) does too; at the top of the range the money
path still works to the pico-dollar, and nothing is ever stored as a REAL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from nemorouter.money.amounts import MAX_AMOUNT, AmountRangeError
from nemorouter.service.administration.admin import Admin
from nemorouter.store.base import Store
from nemorouter.store.records import Generation, Hold
from nemorouter.timeutil import new_id

NOW_TEXT = "2026-03-02T10:00:00.000000Z"


async def test_credits_stop_at_the_maximum_and_charges_stay_exact(
    admin: Admin, store: Store, raw_query: Callable[..., Awaitable[list[tuple[Any, ...]]]]
) -> None:
    account = await admin.create_account({"name": "whale"})
    await store.add_credit(account.id, MAX_AMOUNT - 5, "wire", "a")
    with pytest.raises(AmountRangeError, match=r"at most \$0\.000000000005 more"):
        await store.add_credit(account.id, 6, "wire", "b")
    again, created = await store.add_credit(account.id, 6, "wire", "a")  # a repeat answers the first
    assert created is False and again.amount == MAX_AMOUNT - 5
    await store.add_credit(account.id, 5, "wire", "c")
    with pytest.raises(AmountRangeError):
        await store.add_credit(account.id, 1, "wire", "d")
    found = await store.get_account(account.id)
    assert found is not None and found.total_credits == MAX_AMOUNT and found.balance == MAX_AMOUNT
    _, key = await admin.create_key(account.id, {"name": "k"})
    h = Hold(new_id("gen_"), account.id, key.id, MAX_AMOUNT, "all", "p", NOW_TEXT, model="m/x")
    assert (await store.reserve(h, NOW_TEXT)).ok
    gen = Generation(
        id=h.request_id,
        account_id=account.id,
        key_id=key.id,
        model="m/x",
        endpoint="chat",
        streamed=False,
        status="success",
        created_at=NOW_TEXT,
        cost=MAX_AMOUNT - 1,
        hold=MAX_AMOUNT,
    )
    assert await store.settle(h.request_id, gen, "all")
    found = await store.get_account(account.id)
    stored = await store.get_key(key.id)
    assert found is not None and stored is not None
    assert (found.total_usage, found.held, found.balance) == (MAX_AMOUNT - 1, 0, 1)
    assert (stored.usage, stored.window_usage, stored.held) == (MAX_AMOUNT - 1, MAX_AMOUNT - 1, 0)
    rows = await raw_query("SELECT total_credits, total_usage, held FROM accounts WHERE id = ?", account.id)
    assert [tuple(int(v) for v in r) for r in rows] == [(MAX_AMOUNT, MAX_AMOUNT - 1, 0)]
    assert not any(isinstance(v, float) for v in rows[0])  # SQLite: INTEGER, never REAL
    assert (await store.verify_ledger()).ok
