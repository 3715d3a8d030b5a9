"""Store contract (SQLite and PostgreSQL): holds are released per owner. Each serving process
keeps a lease; the holds of an owner whose lease lapsed, or who has none, are released (once,
exactly, records kept as `orphaned`); a live owner's holds are never touched."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

import pytest

from nemorouter.service.administration.admin import Admin
from nemorouter.settings import Settings
from nemorouter.store.base import Store
from nemorouter.store.postgres import PostgresStore
from nemorouter.store.records import ApiKey, Generation, Hold
from nemorouter.timeutil import iso, new_id
from nemorouter.vault import Vault

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
NOW_TEXT = iso(NOW)
AMOUNT = 1_000_000_007


async def make_key(admin: Admin) -> ApiKey:
    account = await admin.create_account({"name": "acme"})
    await admin.add_credit(account.id, {"amount": "100"})
    _, key = await admin.create_key(account.id, {"name": "k"})
    return key


async def hold(store: Store, key: ApiKey, owner: str) -> Hold:
    h = Hold(new_id("gen_"), key.account_id, key.id, AMOUNT, "all", owner, NOW_TEXT, model="m/x")
    assert (await store.reserve(h, NOW_TEXT)).ok
    return h


def charge(h: Hold, cost: int) -> Generation:
    return Generation(
        h.request_id,
        h.account_id,
        h.key_id,
        "m/x",
        "chat",
        False,
        "success",
        NOW_TEXT,
        cost=cost,
        hold=h.amount,
    )


async def held(store: Store, key: ApiKey) -> tuple[int, int]:
    account, found = await store.get_account(key.account_id), await store.get_key(key.id)
    assert account is not None and found is not None
    return account.held, found.held


async def test_only_the_holds_of_dead_owners_are_released(admin: Admin, store: Store) -> None:
    key = await make_key(admin)
    assert not await store.renew_lease("proc_dying", 0.3)  # no lease before: created
    assert not await store.renew_lease("proc_live", 60)
    assert await store.renew_lease("proc_live", 60)  # renewed
    dying = [await hold(store, key, "proc_dying") for _ in range(3)]
    live = [await hold(store, key, "proc_live") for _ in range(2)]
    ownerless = await hold(store, key, "proc_never_leased")  # from before leases, say

    assert [h.request_id for h in await store.recover_dead_holds()] == [ownerless.request_id]
    assert await held(store, key) == (5 * AMOUNT, 5 * AMOUNT)
    await asyncio.sleep(0.4)  # proc_dying stopped renewing
    released = await store.recover_dead_holds()
    assert sorted(h.request_id for h in released) == sorted(h.request_id for h in dying)
    assert await store.recover_dead_holds() == []  # once
    assert await held(store, key) == (2 * AMOUNT, 2 * AMOUNT)
    assert {h.request_id for h in await store.open_holds()} == {h.request_id for h in live}

    # The dead owner comes back: its lease is gone, and its holds' records say so.
    assert not await store.renew_lease("proc_dying", 60)
    assert not await store.settle(dying[0].request_id, charge(dying[0], 5), "all")
    record = await store.get_generation(dying[0].request_id)
    assert record is not None and record.status == "orphaned" and record.cost == 0
    # The live owner settles as usual; a clean stop drops its lease.
    assert await store.settle(live[0].request_id, charge(live[0], 77), "all")
    await store.drop_lease("proc_live")
    assert [h.request_id for h in await store.recover_dead_holds()] == [live[1].request_id]
    assert await held(store, key) == (0, 0)
    report = await store.verify_ledger()
    assert report.ok, report.problems


async def test_a_renewed_lease_keeps_its_holds(admin: Admin, store: Store) -> None:
    key = await make_key(admin)
    await store.renew_lease("proc_a", 0.3)
    mine = await hold(store, key, "proc_a")
    for _ in range(6):
        await asyncio.sleep(0.1)
        assert await store.renew_lease("proc_a", 0.3)
        assert await store.recover_dead_holds() == []
    assert [h.request_id for h in await store.open_holds()] == [mine.request_id]


async def test_replicas_recovering_at_once_release_each_hold_once(pg_url: str) -> None:
    """Every live replica runs recovery; while they race, the live owner keeps settling."""
    replicas = [PostgresStore(pg_url, min_size=1, max_size=4) for _ in range(4)]
    try:
        store = replicas[0]
        admin_key = await make_key(Admin(store, Vault(os.urandom(32)), lambda: NOW))
        await store.renew_lease("proc_dead", 0.2)
        await store.renew_lease("proc_live", 60)
        dead = [await hold(replicas[n % 4], admin_key, "proc_dead") for n in range(40)]
        live = [await hold(replicas[n % 4], admin_key, "proc_live") for n in range(40)]
        await asyncio.sleep(0.3)

        async def settle_live() -> int:
            done = 0
            for n, h in enumerate(live):
                done += await replicas[n % 4].settle(h.request_id, charge(h, 1_000 + n), "all")
            return done

        settled, *released = await asyncio.gather(settle_live(), *(r.recover_dead_holds() for r in replicas))
        assert settled == len(live)  # not one live hold was taken
        ids = [h.request_id for batch in released for h in batch]
        assert sorted(ids) == sorted(h.request_id for h in dead)  # each dead hold once
        assert await held(store, admin_key) == (0, 0)
        report = await store.verify_ledger()
        assert report.ok, report.problems
    finally:
        await asyncio.gather(*(r.close() for r in replicas))


def test_lease_settings() -> None:
    assert (Settings.from_env({}).lease_seconds, Settings.from_env({}).lease_renew) == (15, 5)
    short = Settings.from_env({"NEMO_PROCESS_LEASE": "2", "NEMO_PROCESS_LEASE_RENEW": "0.3"})
    assert (short.lease_seconds, short.lease_renew) == (2, 0.3)
    for lease, renew in (("5", "5"), ("0", ""), ("15", "-1")):
        with pytest.raises(ValueError, match="NEMO_PROCESS_LEASE_RENEW < NEMO_PROCESS_LEASE"):
            Settings.from_env({"NEMO_PROCESS_LEASE": lease, "NEMO_PROCESS_LEASE_RENEW": renew})
