"""Store contract (SQLite and PostgreSQL) under concurrency within one process: the hard cap must
hold and an acknowledged hold must stay in force. (On SQLite the requests of one event-loop
iteration share one group-committed transaction; on PostgreSQL each is its own transaction on a
pooled connection. Several processes at once: `test_store_postgres_replicas.py`.)"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from nemorouter.service.administration.admin import Admin
from nemorouter.store.base import Store, StoreError
from nemorouter.store.records import Account, ApiKey, Generation, Hold
from nemorouter.timeutil import iso, new_id

from .conftest import batches_committed

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
NOW_TEXT = iso(NOW)


async def make_key(admin: Admin, credits: str = "10", **fields: Any) -> ApiKey:
    account = await admin.create_account({"name": "acme"})
    await admin.add_credit(account.id, {"amount": credits})
    _, key = await admin.create_key(account.id, {"name": "k", **fields})
    return key


def hold(key: ApiKey, amount: int, owner: str = "proc-a", request_id: str | None = None) -> Hold:
    return Hold(request_id or new_id("gen_"), key.account_id, key.id, amount, "all", owner, NOW_TEXT)


def outcome(h: Hold, cost: int) -> Generation:
    return Generation(
        id=h.request_id,
        account_id=h.account_id,
        key_id=h.key_id,
        model=h.model,
        endpoint="chat",
        streamed=False,
        status="success",
        created_at=h.created_at,
        cost=cost,
        hold=h.amount,
    )


async def state(store: Store, key: ApiKey) -> tuple[Account, ApiKey]:
    account = await store.get_account(key.account_id)
    found = await store.get_key(key.id)
    assert account is not None and found is not None
    return account, found


N_FIT = 37
AMOUNT = 3_000_000_007  # an odd amount, so sums are not round numbers


async def test_concurrent_reserves_never_pass_the_key_limit(admin: Admin, store: Store) -> None:
    key = await make_key(admin, "1000", limit="0.111000000259")
    assert key.limit == N_FIT * AMOUNT  # 37 * 3_000_000_007 = 111_000_000_259
    holds = [hold(key, AMOUNT, owner=f"proc-{i % 3}") for i in range(200)]
    results = await asyncio.gather(*(store.reserve(h, NOW_TEXT) for h in holds))
    won = [h for h, r in zip(holds, results, strict=True) if r.ok]
    refused = [r for r in results if not r.ok]
    assert len(won) == N_FIT
    assert {(r.reason, r.available) for r in refused} == {("key_limit_exceeded", 0)}
    account, found = await state(store, key)
    assert account.held == found.held == N_FIT * AMOUNT
    assert len(await store.open_holds()) == N_FIT
    assert (await store.verify_ledger()).ok
    costs = [AMOUNT - 1_000 * i for i in range(N_FIT)]
    settled = await asyncio.gather(
        *(store.settle(h.request_id, outcome(h, c), "all") for h, c in zip(won, costs, strict=True))
    )
    assert all(settled)
    account, found = await state(store, key)
    assert found.usage == found.window_usage == sum(costs) == 111_000_000_259 - 1_000 * (36 * 37 // 2)
    assert account.total_usage == sum(costs)
    assert (account.held, found.held) == (0, 0)
    assert (await store.verify_ledger()).ok


async def test_concurrent_reserves_never_pass_the_balance(admin: Admin, store: Store) -> None:
    key = await make_key(admin, "0.111000000259")  # exactly N_FIT holds of AMOUNT; no key limit
    results = await asyncio.gather(*(store.reserve(hold(key, AMOUNT), NOW_TEXT) for _ in range(200)))
    assert sum(r.ok for r in results) == N_FIT
    assert {(r.reason, r.available) for r in results if not r.ok} == {("insufficient_credits", 0)}
    account, found = await state(store, key)
    assert account.held == found.held == account.balance == N_FIT * AMOUNT
    assert (await store.verify_ledger()).ok


async def test_interleaved_reserve_and_settle_keep_the_cap(admin: Admin, store: Store) -> None:
    # Each request reserves AMOUNT and settles half of it; settles yield to the loop (they wait for
    # their commit), so reserves and settles of different requests interleave in shared batches.
    key = await make_key(admin, "1000", limit="0.030000000070")  # 10 * AMOUNT
    cost = AMOUNT // 2

    async def request() -> bool:
        h = hold(key, AMOUNT)
        if not (await store.reserve(h, NOW_TEXT)).ok:
            return False
        await asyncio.sleep(0)
        assert await store.settle(h.request_id, outcome(h, cost), "all")
        return True

    served = sum(await asyncio.gather(*(request() for _ in range(200))))
    account, found = await state(store, key)
    assert found.usage == account.total_usage == served * cost
    assert (found.held, account.held) == (0, 0)
    assert found.usage <= 10 * AMOUNT
    assert served >= 10
    assert (await store.verify_ledger()).ok


async def test_an_acknowledged_hold_survives_another_requests_failure(admin: Admin, store: Store) -> None:
    key = await make_key(admin, "10")
    first, second = hold(key, 100), hold(key, 200)
    duplicate = hold(key, 300, request_id=first.request_id)
    results = await asyncio.gather(
        store.reserve(first, NOW_TEXT),
        store.reserve(second, NOW_TEXT),
        store.reserve(duplicate, NOW_TEXT),
        return_exceptions=True,
    )
    # `first` and its duplicate race (on PostgreSQL each runs on a pooled connection): exactly one
    # of them is acknowledged and the other refused; `second` is acknowledged either way.
    assert getattr(results[1], "ok", False)
    assert sorted(type(r).__name__ for r in (results[0], results[2])) == ["ReserveResult", "StoreError"]
    assert all(r.ok for r in (results[0], results[2]) if not isinstance(r, BaseException))
    await batches_committed()
    account, _ = await state(store, key)
    assert account.held >= 200  # actual: 0, both acknowledged holds were rolled back
    assert await store.settle(second.request_id, outcome(second, 150), "all")  # actual: False
    account, _ = await state(store, key)
    assert account.total_usage == 150


async def test_reserving_a_used_request_id_does_not_leak_a_driver_error(admin: Admin, store: Store) -> None:
    key = await make_key(admin, "10")
    first = hold(key, 100)
    assert (await store.reserve(first, NOW_TEXT)).ok
    await batches_committed()
    try:
        await store.reserve(hold(key, 100, request_id=first.request_id), NOW_TEXT)
    except (sqlite3.Error, asyncpg.PostgresError) as exc:
        pytest.fail(f"driver error leaked: {exc!r}")
    except StoreError:
        pass
    else:
        pytest.fail("a second reserve under one request id was accepted")
    account, _ = await state(store, key)
    assert account.held == 100
