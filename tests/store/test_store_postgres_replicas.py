"""PostgreSQL under several replicas: independent connection pools (one per simulated
`nemorouter serve` process) reserving against one key limit and one account balance at once.

Dozens of transactions are in flight together, so a reserve that read the remaining room and
then wrote a new total (a read-then-write race) would grant more than fits; the conditional
UPDATEs must grant exactly what fits, on every replica, and leave the ledger exact.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from nemorouter.service.administration.admin import Admin
from nemorouter.store.postgres import PostgresStore
from nemorouter.store.records import Account, ApiKey, Generation, Hold, ReserveResult
from nemorouter.timeutil import iso, new_id
from nemorouter.vault import Vault

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
NOW_TEXT = iso(NOW)
REPLICAS = 4
POOL = 8  # connections per replica: up to 32 transactions at once
PER_REPLICA = 60
AMOUNT = 3_000_000_007  # odd, so no sum is a round number


@pytest.fixture
async def replicas(pg_url: str) -> AsyncIterator[list[PostgresStore]]:
    stores = [PostgresStore(pg_url, min_size=POOL, max_size=POOL) for _ in range(REPLICAS)]
    try:
        # Every replica starts (and migrates, which the first has done) at once.
        assert await asyncio.gather(*(s.migrate() for s in stores)) == [[]] * REPLICAS
        yield stores
    finally:
        await asyncio.gather(*(s.close() for s in stores))


@pytest.fixture
def admin(replicas: list[PostgresStore]) -> Admin:
    return Admin(replicas[0], Vault(os.urandom(32)), lambda: NOW)


def usd(pico: int) -> str:
    return str(Decimal(pico).scaleb(-12))


def hold(key: ApiKey, replica: int) -> Hold:
    return Hold(new_id("gen_"), key.account_id, key.id, AMOUNT, "all", f"replica-{replica}", NOW_TEXT)


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


async def storm(replicas: list[PostgresStore], keys: list[ApiKey]) -> list[tuple[int, Hold, ReserveResult]]:
    """PER_REPLICA reserves from every replica, all at once, spread over `keys`."""
    plan = [(i % REPLICAS, hold(keys[i % len(keys)], i % REPLICAS)) for i in range(REPLICAS * PER_REPLICA)]
    results = await asyncio.gather(*(replicas[r].reserve(h, NOW_TEXT) for r, h in plan))
    return [(r, h, res) for (r, h), res in zip(plan, results, strict=True)]


async def state(store: PostgresStore, key: ApiKey) -> tuple[Account, ApiKey]:
    account = await store.get_account(key.account_id)
    found = await store.get_key(key.id)
    assert account is not None and found is not None
    return account, found


async def new_key(admin: Admin, account_id: str, **fields: Any) -> ApiKey:
    _, key = await admin.create_key(account_id, {"name": "k", **fields})
    return key


async def test_replicas_never_pass_the_key_limit(replicas: list[PostgresStore], admin: Admin) -> None:
    account = await admin.create_account({"name": "acme"})
    await admin.add_credit(account.id, {"amount": "1000"})
    key = await new_key(admin, account.id, limit="0.111000000259")
    assert key.limit == 37 * AMOUNT
    outcomes = await storm(replicas, [key])
    granted = [(r, h) for r, h, res in outcomes if res.ok]
    assert len(granted) == 37  # exactly what fits: not one more, not one fewer
    assert {(res.reason, res.available) for _, _, res in outcomes if not res.ok} == {
        ("key_limit_exceeded", 0)
    }
    # The replicas really competed: holds were granted on several, or a replica that was granted
    # none was refused for holds another one made (group commit may let one replica's batches
    # take every slot first: that is the cap holding across replicas too).
    winners = {r for r, _ in granted}
    refused_elsewhere = {r for r, _, res in outcomes if not res.ok} - winners
    assert len(winners) > 1 or refused_elsewhere, outcomes
    acct, found = await state(replicas[1], key)
    assert acct.held == found.held == 37 * AMOUNT
    assert len(await replicas[2].open_holds()) == 37
    assert (await replicas[3].verify_ledger()).ok

    # A replica that restarts releases its own holds only; the others' stay in force.
    mine = [h.request_id for r, h in granted if r == 0]
    recovered = await replicas[0].recover_holds("replica-0")
    assert sorted(h.request_id for h in recovered) == sorted(mine)
    acct, found = await state(replicas[0], key)
    assert acct.held == found.held == (37 - len(mine)) * AMOUNT
    assert {h.owner for h in await replicas[1].open_holds()} <= {f"replica-{i}" for i in range(1, REPLICAS)}
    assert (await replicas[1].verify_ledger()).ok


async def test_replicas_never_pass_the_balance(replicas: list[PostgresStore], admin: Admin) -> None:
    # Two keys of one account: each may hold 30, the account's balance only 50 in all.
    account = await admin.create_account({"name": "acme"})
    await admin.add_credit(account.id, {"amount": usd(50 * AMOUNT)})
    keys = [await new_key(admin, account.id, limit=usd(30 * AMOUNT)) for _ in range(2)]
    assert keys[0].limit == 30 * AMOUNT
    outcomes = await storm(replicas, keys)
    per_key = Counter(h.key_id for _, h, res in outcomes if res.ok)
    assert sum(per_key.values()) == 50
    assert all(count <= 30 for count in per_key.values())
    assert {res.reason for _, _, res in outcomes if not res.ok} <= {
        "insufficient_credits",
        "key_limit_exceeded",
    }
    acct = await replicas[0].get_account(account.id)
    assert acct is not None and acct.held == acct.balance == 50 * AMOUNT
    for key in keys:
        _, found = await state(replicas[0], key)
        assert found.held == per_key[key.id] * AMOUNT
    assert (await replicas[2].verify_ledger()).ok


async def test_replicas_reserve_settle_and_release_keep_the_cap(
    replicas: list[PostgresStore], admin: Admin
) -> None:
    # 32 clients, 8 requests each: a request reserves AMOUNT on one replica, then settles half
    # of it or releases it on another, so holds come and go while others are being granted.
    account = await admin.create_account({"name": "acme"})
    await admin.add_credit(account.id, {"amount": "1000"})
    key = await new_key(admin, account.id, limit="0.030000000070")  # 10 * AMOUNT
    cost = AMOUNT // 2
    counter = itertools.count()

    async def request() -> str:
        n = next(counter)
        h = hold(key, n % REPLICAS)
        if not (await replicas[n % REPLICAS].reserve(h, NOW_TEXT)).ok:
            return "refused"
        other = replicas[(n + 1) % REPLICAS]
        if n % 3 == 0:
            assert await other.release(h.request_id, None)
            assert not await replicas[n % REPLICAS].release(h.request_id, None)  # once only
            return "released"
        assert await other.settle(h.request_id, outcome(h, cost), "all")
        assert not await replicas[n % REPLICAS].settle(h.request_id, outcome(h, cost), "all")
        return "settled"

    async def client() -> list[str]:
        return [await request() for _ in range(8)]

    done = Counter(itertools.chain(*await asyncio.gather(*(client() for _ in range(4 * POOL)))))
    acct, found = await state(replicas[0], key)
    assert found.usage == acct.total_usage == done["settled"] * cost <= 10 * AMOUNT
    assert (acct.held, found.held) == (0, 0)
    assert done["settled"] >= 10 and done["refused"] > 0  # the cap was reached and held
    assert await replicas[0].open_holds() == []
    assert (await replicas[1].verify_ledger()).ok


async def test_replicas_sealing_together_make_one_chain(replicas: list[PostgresStore], admin: Admin) -> None:
    # Every replica charges requests and tops up while every replica's sealer runs, as in a
    # deployment: one chain comes out, each final entry sealed once, no fork, no gap.
    account = await admin.create_account({"name": "acme"})
    await admin.add_credit(account.id, {"amount": "1000"})
    key = await new_key(admin, account.id)
    working = True
    sealed: Counter[int] = Counter()

    async def sealer(r: int) -> None:
        while working:
            sealed[r] += await replicas[r].seal_ledger()
            await asyncio.sleep(0.002)

    async def traffic(r: int) -> None:
        for n in range(40):
            h = hold(key, r)
            assert (await replicas[r].reserve(h, NOW_TEXT)).ok
            if n % 5 == 4:
                assert await replicas[r].release(h.request_id, None)  # no charge: never sealed
            else:
                assert await replicas[r].settle(h.request_id, outcome(h, AMOUNT + n), "all")
            if n % 10 == 0:
                await replicas[r].add_credit(account.id, 10**12, f"top-up {r}/{n}", None)

    sealers = [asyncio.create_task(sealer(r)) for r in range(REPLICAS)]
    await asyncio.gather(*(traffic(r) for r in range(REPLICAS)))
    working = False
    await asyncio.gather(*sealers)
    finals = await asyncio.gather(*(s.seal_ledger() for s in replicas))
    assert sum(finals) + sum(sealed.values()) == 1 + REPLICAS * (32 + 4)  # credits and charges
    assert sum(1 for count in sealed.values() if count) > 1  # several replicas did seal

    conn = await asyncpg.connect(replicas[0]._dsn)
    try:
        rows = await conn.fetch("SELECT seq, kind, row_id FROM ledger_seals ORDER BY seq")
        assert await conn.fetchval("SELECT count(*) FROM seal_queue") == 0
        charged = await conn.fetchval("SELECT count(*) FROM generations WHERE status = 'success'")
    finally:
        await conn.close()
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert len({(r["kind"], r["row_id"]) for r in rows}) == len(rows) == 1 + REPLICAS * 4 + charged
    report = await replicas[1].verify_ledger()
    assert report.ok, report.problems
