"""The ledger's hash chain: every final entry is sealed once (at the latest by the next sealing
round; SQLite seals a charge in the batch that settles it), and an entry changed, removed or
reordered after it was sealed makes `verify_ledger` (and `nemorouter ledger verify`) fail, naming
it. On both stores (the `store` fixture), but for SQLite's own resume state; several PostgreSQL
replicas sealing at once are in test_store_postgres_replicas.py. What a round returns differs
(entries it found itself), so these tests count the seals."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from nemorouter.service.administration.admin import Admin
from nemorouter.store import seals
from nemorouter.store.base import Store
from nemorouter.store.records import ApiKey, Generation, Hold
from nemorouter.store.sqlite import SqliteStore
from nemorouter.timeutil import iso, time_ordered_id
from nemorouter.vault import Vault

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
NOW_TEXT = iso(NOW)
SealRow = tuple[int, str, str, str, str]
RawSql = Callable[..., Awaitable[int]]  # the conftest fixtures: around the store's back
RawQuery = Callable[..., Awaitable[list[tuple[Any, ...]]]]


async def make_key(admin: Admin, credits: str = "10") -> ApiKey:
    account = await admin.create_account({"name": "acme"})
    await admin.add_credit(account.id, {"amount": credits})
    _, key = await admin.create_key(account.id, {"name": "k"})
    return key


async def reserve(store: Store, key: ApiKey, gen_id: str | None = None, hold: int = 10**9) -> str:
    gen_id = gen_id or time_ordered_id("gen-")
    held = Hold(gen_id, key.account_id, key.id, hold, "all", "proc", NOW_TEXT, model="m/x")
    assert (await store.reserve(held, NOW_TEXT)).ok
    return gen_id


async def settle(store: Store, key: ApiKey, gen_id: str, cost: int, hold: int = 10**9) -> None:
    gen = Generation(
        id=gen_id,
        account_id=key.account_id,
        key_id=key.id,
        model="m/x",
        endpoint="chat",
        streamed=False,
        status="success",
        created_at=NOW_TEXT,
        prompt_tokens=12,
        completion_tokens=7,
        cost=cost,
        hold=hold,
    )
    assert await store.settle(gen_id, gen, "all")


async def charged(store: Store, key: ApiKey, cost: int) -> str:
    gen_id = await reserve(store, key)
    await settle(store, key, gen_id, cost)
    return gen_id


async def seal_rows(query: RawQuery) -> list[SealRow]:
    return [
        (int(r[0]), r[1], r[2], r[3], r[4])
        for r in await query("SELECT seq, kind, row_id, digest, chain FROM ledger_seals ORDER BY seq")
    ]


async def test_every_final_entry_is_sealed_once_and_chained(
    store: Store, admin: Admin, raw_query: RawQuery
) -> None:
    key = await make_key(admin)
    await admin.add_credit(key.account_id, {"amount": "2.5", "reason": "top-up"})
    done = [await charged(store, key, cost) for cost in (1_000, 0, 77_000)]
    open_hold = await reserve(store, key)
    failed = await reserve(store, key)
    assert await store.release(failed, None)

    credits = [c.id for c in await store.list_credits(key.account_id)]
    await store.seal_ledger()
    first = await seal_rows(raw_query)
    assert sorted(r[2] for r in first) == sorted([*credits, *done])  # two credits, three charges
    await store.seal_ledger()
    assert await seal_rows(raw_query) == first  # nothing twice
    await settle(store, key, open_hold, 5_000)
    await store.seal_ledger()

    rows = await seal_rows(raw_query)
    assert rows[:5] == first
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert {r[2] for r in rows if r[1] == "generation"} == {*done, open_hold}
    assert failed not in {r[2] for r in rows}
    previous = seals.GENESIS
    for _, _, _, digest, chain in rows:
        assert chain == hashlib.sha256((previous + digest).encode()).hexdigest()
        previous = chain
    report = await store.verify_ledger()
    assert report.ok, report.problems


async def test_both_stores_seal_an_entry_alike(store: Store, admin: Admin, raw_query: RawQuery) -> None:
    """The digest is over the values as SQLite stores them (booleans 0/1) in either store, so an
    entry seals to the same digest whichever database holds it."""
    key = await make_key(admin)
    gen_id = await charged(store, key, 4_242)
    await store.seal_ledger()
    columns = ", ".join(seals.GENERATION_FIELDS)
    (values,) = await raw_query(f"SELECT {columns} FROM generations WHERE id = ?", gen_id)
    assert values[seals.GENERATION_FIELDS.index("streamed")] == 0
    (row,) = [r for r in await seal_rows(raw_query) if r[2] == gen_id]
    assert row[3] == seals.digest("generation", values)


async def test_a_restart_resumes_without_sealing_twice(tmp_path: Path) -> None:
    db_path = tmp_path / "ledger.db"
    first = SqliteStore(str(db_path))
    await first.migrate()
    admin = Admin(first, Vault(os.urandom(32)), lambda: NOW)
    key = await make_key(admin)
    await charged(first, key, 10)
    left_open = await reserve(first, key)
    await first.seal_ledger()
    assert len(_sealed_ids(first)) == 2
    await first.close()

    second = SqliteStore(str(db_path))
    try:
        assert [h.request_id for h in await second.recover_holds(None)] == [left_open]
        new = await charged(second, key, 20)
        await Admin(second, Vault(os.urandom(32)), lambda: NOW).add_credit(key.account_id, {"amount": "1"})
        assert await second.seal_ledger() == 1  # the credit (the charge sealed itself)
        sealed = _sealed_ids(second)
        assert len(sealed) == len(set(sealed)) == 4 and new in sealed and left_open not in sealed
        assert await second.seal_ledger() == 0
        assert len(_sealed_ids(second)) == 4
        assert (await second.verify_ledger()).ok
    finally:
        await second.close()


async def test_rows_created_after_the_clock_stepped_back_are_sealed(
    store: Store, admin: Admin, raw_query: RawQuery
) -> None:
    key = await make_key(admin)
    await charged(store, key, 10)
    wall = time.time_ns()
    await store.seal_ledger(now_ns=wall + 10**9)
    assert len(await seal_rows(raw_query)) == 2
    # The clock went back a second (or another replica's clock is behind): new ids sort below
    # the last one the sealer saw.
    early = f"gen-{wall - 10**9:016x}abcdef0001"
    await reserve(store, key, early)
    await settle(store, key, early, 30)
    await store.seal_ledger(now_ns=wall - 5 * 10**8)
    rows = await seal_rows(raw_query)
    assert len(rows) == 3 and early in {r[2] for r in rows}
    assert (await store.verify_ledger()).ok


def _sealed_ids(store: SqliteStore) -> list[str]:
    return [row[0] for row in store._db.execute("SELECT row_id FROM ledger_seals ORDER BY seq")]


Tamper = Callable[[RawSql, RawQuery, list[str], list[str], list[SealRow]], Awaitable[list[str]]]


async def _credit_amount(
    sql: RawSql, query: RawQuery, credits: list[str], gens: list[str], rows: list[SealRow]
) -> list[str]:
    await sql("UPDATE credits SET amount = amount + 1 WHERE id = ?", credits[0])
    return [f"credit {credits[0]}: changed after it was sealed"]


async def _generation_cost(
    sql: RawSql, query: RawQuery, credits: list[str], gens: list[str], rows: list[SealRow]
) -> list[str]:
    await sql("UPDATE generations SET cost = cost - 5 WHERE id = ?", gens[1])
    return [f"generation {gens[1]}: changed after it was sealed"]


async def _generation_tokens(
    sql: RawSql, query: RawQuery, credits: list[str], gens: list[str], rows: list[SealRow]
) -> list[str]:
    await sql("UPDATE generations SET completion_tokens = 1 WHERE id = ?", gens[0])
    return [f"generation {gens[0]}: changed after it was sealed"]


async def _deleted_generation(
    sql: RawSql, query: RawQuery, credits: list[str], gens: list[str], rows: list[SealRow]
) -> list[str]:
    await sql("DELETE FROM generations WHERE id = ?", gens[2])
    return [f"generation {gens[2]}: removed after it was sealed"]


async def _deleted_credit(
    sql: RawSql, query: RawQuery, credits: list[str], gens: list[str], rows: list[SealRow]
) -> list[str]:
    await sql("DELETE FROM credits WHERE id = ?", credits[1])
    return [f"credit {credits[1]}: removed after it was sealed"]


async def _swapped_credit_times(
    sql: RawSql, query: RawQuery, credits: list[str], gens: list[str], rows: list[SealRow]
) -> list[str]:
    """Two entries trade places in time (the order a statement lists them in)."""
    ((a,),), ((b,),) = [await query("SELECT created_at FROM credits WHERE id = ?", c) for c in credits[:2]]
    assert a != b
    await sql("UPDATE credits SET created_at = ? WHERE id = ?", b, credits[0])
    await sql("UPDATE credits SET created_at = ? WHERE id = ?", a, credits[1])
    return [f"credit {credits[0]}: changed", f"credit {credits[1]}: changed"]


async def _swapped_seals(
    sql: RawSql, query: RawQuery, credits: list[str], gens: list[str], rows: list[SealRow]
) -> list[str]:
    """Two entries trade places in the chain."""
    second, third = rows[1], rows[2]
    await sql("UPDATE ledger_seals SET seq = -1 WHERE seq = 2")
    await sql("UPDATE ledger_seals SET seq = 2 WHERE seq = 3")
    await sql("UPDATE ledger_seals SET seq = 3 WHERE seq = -1")
    return [
        f"{third[1]} {third[2]}: seal 2 does not follow",
        f"{second[1]} {second[2]}: seal 3 does not follow",
    ]


async def _resealed_forgery(
    sql: RawSql, query: RawQuery, credits: list[str], gens: list[str], rows: list[SealRow]
) -> list[str]:
    """A cost changed and its seal's digest recomputed to match: the chain still gives it away."""
    await sql("UPDATE generations SET cost = 1 WHERE id = ?", gens[0])
    (row,) = await query(
        f"SELECT {', '.join(seals.GENERATION_FIELDS)} FROM generations WHERE id = ?", gens[0]
    )
    await sql("UPDATE ledger_seals SET digest = ? WHERE row_id = ?", seals.digest("generation", row), gens[0])
    return [f"generation {gens[0]}: seal"]


async def _removed_with_its_seal(
    sql: RawSql, query: RawQuery, credits: list[str], gens: list[str], rows: list[SealRow]
) -> list[str]:
    seq, kind, row_id = rows[3][:3]
    after = rows[4]
    table = "credits" if kind == "credit" else "generations"
    await sql(f"DELETE FROM {table} WHERE id = ?", row_id)
    await sql("DELETE FROM ledger_seals WHERE seq = ?", seq)
    return [
        f"ledger seals {seq} missing before {after[1]} {after[2]}",
        f"{after[1]} {after[2]}: seal {after[0]} does not follow",
    ]


TAMPERING: list[Tamper] = [
    _credit_amount,
    _generation_cost,
    _generation_tokens,
    _deleted_generation,
    _deleted_credit,
    _swapped_credit_times,
    _swapped_seals,
    _resealed_forgery,
    _removed_with_its_seal,
]


@pytest.mark.parametrize("tamper", TAMPERING, ids=[t.__name__.strip("_") for t in TAMPERING])
async def test_an_edit_after_sealing_is_named(
    store: Store, admin: Admin, raw_sql: RawSql, raw_query: RawQuery, tamper: Tamper
) -> None:
    key = await make_key(admin)
    await admin.add_credit(key.account_id, {"amount": "1", "reason": "second"})
    credits = [c.id for c in await store.list_credits(key.account_id)]
    gens = [await charged(store, key, cost) for cost in (1_000, 2_000, 3_000)]
    await store.seal_ledger()
    assert (await store.verify_ledger()).ok
    expected = await tamper(raw_sql, raw_query, credits, gens, await seal_rows(raw_query))
    report = await store.verify_ledger()
    assert not report.ok
    for needle in expected:
        assert any(needle in problem for problem in report.problems), (needle, report.problems)
