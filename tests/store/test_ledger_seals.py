"""The ledger's hash chain: every final entry is sealed once, off the request path, and an entry
changed, removed or reordered after it was sealed makes `verify_ledger` (and `nemorouter ledger
verify`) fail, naming it."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nemorouter.service.admin import Admin
from nemorouter.store import seals
from nemorouter.store.records import ApiKey, Generation, Hold
from nemorouter.store.sqlite import SqliteStore
from nemorouter.timeutil import iso, time_ordered_id
from nemorouter.vault import Vault

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
NOW_TEXT = iso(NOW)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
async def sqlite_store(db_path: Path) -> AsyncIterator[SqliteStore]:
    db = SqliteStore(str(db_path))
    await db.migrate()
    yield db
    await db.close()


@pytest.fixture
def admin(sqlite_store: SqliteStore) -> Admin:
    return Admin(sqlite_store, Vault(os.urandom(32)), lambda: NOW)


async def make_key(admin: Admin, credits: str = "10") -> ApiKey:
    account = await admin.create_account({"name": "acme"})
    await admin.add_credit(account.id, {"amount": credits})
    _, key = await admin.create_key(account.id, {"name": "k"})
    return key


async def reserve(store: SqliteStore, key: ApiKey, gen_id: str | None = None, hold: int = 10**9) -> str:
    gen_id = gen_id or time_ordered_id("gen-")
    held = Hold(gen_id, key.account_id, key.id, hold, "all", "proc", NOW_TEXT, model="m/x")
    assert (await store.reserve(held, NOW_TEXT)).ok
    return gen_id


async def settle(store: SqliteStore, key: ApiKey, gen_id: str, cost: int, hold: int = 10**9) -> None:
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


async def charged(store: SqliteStore, key: ApiKey, cost: int) -> str:
    gen_id = await reserve(store, key)
    await settle(store, key, gen_id, cost)
    return gen_id


def seal_rows(db_path: Path) -> list[tuple[int, str, str, str, str]]:
    with sqlite3.connect(db_path) as con:
        return con.execute(
            "SELECT seq, kind, row_id, digest, chain FROM ledger_seals ORDER BY seq"
        ).fetchall()


def raw(db_path: Path, *statements: tuple[str, tuple[object, ...]]) -> None:
    """Edit the file behind the store's back, as someone with the file would."""
    con = sqlite3.connect(db_path, isolation_level=None)
    try:
        for sql, params in statements:
            con.execute(sql, params)
    finally:
        con.close()


async def test_every_final_entry_is_sealed_once_and_chained(sqlite_store: SqliteStore, admin: Admin) -> None:
    key = await make_key(admin)
    await admin.add_credit(key.account_id, {"amount": "2.5", "reason": "top-up"})
    done = [await charged(sqlite_store, key, cost) for cost in (1_000, 0, 77_000)]
    open_hold = await reserve(sqlite_store, key)
    failed = await reserve(sqlite_store, key)
    assert await sqlite_store.release(failed, None)

    assert await sqlite_store.seal_ledger() == 5  # two credits, three charged requests
    assert await sqlite_store.seal_ledger() == 0
    await settle(sqlite_store, key, open_hold, 5_000)
    assert await sqlite_store.seal_ledger() == 1

    rows = seal_rows(sqlite_store_path(sqlite_store))
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert {r[2] for r in rows if r[1] == "generation"} == {*done, open_hold}
    assert failed not in {r[2] for r in rows}
    previous = seals.GENESIS
    for _, _, _, digest, chain in rows:
        assert chain == hashlib.sha256((previous + digest).encode()).hexdigest()
        previous = chain
    report = await sqlite_store.verify_ledger()
    assert report.ok, report.problems


def sqlite_store_path(store: SqliteStore) -> Path:
    return Path(store.path)


async def test_a_restart_resumes_without_sealing_twice(db_path: Path) -> None:
    first = SqliteStore(str(db_path))
    await first.migrate()
    admin = Admin(first, Vault(os.urandom(32)), lambda: NOW)
    key = await make_key(admin)
    await charged(first, key, 10)
    left_open = await reserve(first, key)
    assert await first.seal_ledger() == 2
    await first.close()

    second = SqliteStore(str(db_path))
    try:
        assert [h.request_id for h in await second.recover_holds(None)] == [left_open]
        await charged(second, key, 20)
        await Admin(second, Vault(os.urandom(32)), lambda: NOW).add_credit(key.account_id, {"amount": "1"})
        assert await second.seal_ledger() == 2  # the new request and credit; the orphaned hold never
        assert await second.seal_ledger() == 0
        assert len(seal_rows(db_path)) == 4
        assert (await second.verify_ledger()).ok
    finally:
        await second.close()


async def test_rows_created_after_the_clock_stepped_back_are_sealed(
    sqlite_store: SqliteStore, admin: Admin
) -> None:
    key = await make_key(admin)
    await charged(sqlite_store, key, 10)
    wall = time.time_ns()
    assert await sqlite_store.seal_ledger(now_ns=wall + 10**9) == 2
    # The clock went back a second: new ids sort below the last one the sealer saw.
    early = f"gen-{wall - 10**9:016x}abcdef0001"
    await reserve(sqlite_store, key, early)
    await settle(sqlite_store, key, early, 30)
    assert await sqlite_store.seal_ledger(now_ns=wall - 5 * 10**8) == 1
    assert early in {r[2] for r in seal_rows(sqlite_store_path(sqlite_store))}
    assert (await sqlite_store.verify_ledger()).ok


Tamper = Callable[[Path, list[str], list[str], list[tuple[int, str, str, str, str]]], list[str]]


def _credit_amount(
    path: Path, credits: list[str], gens: list[str], rows: list[tuple[int, str, str, str, str]]
) -> list[str]:
    raw(path, ("UPDATE credits SET amount = amount + 1 WHERE id = ?", (credits[0],)))
    return [f"credit {credits[0]}: changed after it was sealed"]


def _generation_cost(
    path: Path, credits: list[str], gens: list[str], rows: list[tuple[int, str, str, str, str]]
) -> list[str]:
    raw(path, ("UPDATE generations SET cost = cost - 5 WHERE id = ?", (gens[1],)))
    return [f"generation {gens[1]}: changed after it was sealed"]


def _generation_tokens(
    path: Path, credits: list[str], gens: list[str], rows: list[tuple[int, str, str, str, str]]
) -> list[str]:
    raw(path, ("UPDATE generations SET completion_tokens = 1 WHERE id = ?", (gens[0],)))
    return [f"generation {gens[0]}: changed after it was sealed"]


def _deleted_generation(
    path: Path, credits: list[str], gens: list[str], rows: list[tuple[int, str, str, str, str]]
) -> list[str]:
    raw(path, ("DELETE FROM generations WHERE id = ?", (gens[2],)))
    return [f"generation {gens[2]}: removed after it was sealed"]


def _deleted_credit(
    path: Path, credits: list[str], gens: list[str], rows: list[tuple[int, str, str, str, str]]
) -> list[str]:
    raw(path, ("DELETE FROM credits WHERE id = ?", (credits[1],)))
    return [f"credit {credits[1]}: removed after it was sealed"]


def _swapped_credit_times(
    path: Path, credits: list[str], gens: list[str], rows: list[tuple[int, str, str, str, str]]
) -> list[str]:
    """Two entries trade places in time (the order a statement lists them in)."""
    with sqlite3.connect(path) as con:
        (a,), (b,) = (
            con.execute("SELECT created_at FROM credits WHERE id = ?", (c,)).fetchone() for c in credits[:2]
        )
    assert a != b
    raw(
        path,
        ("UPDATE credits SET created_at = ? WHERE id = ?", (b, credits[0])),
        ("UPDATE credits SET created_at = ? WHERE id = ?", (a, credits[1])),
    )
    return [f"credit {credits[0]}: changed", f"credit {credits[1]}: changed"]


def _swapped_seals(
    path: Path, credits: list[str], gens: list[str], rows: list[tuple[int, str, str, str, str]]
) -> list[str]:
    """Two entries trade places in the chain."""
    second, third = rows[1], rows[2]
    raw(
        path,
        ("UPDATE ledger_seals SET seq = -1 WHERE seq = 2", ()),
        ("UPDATE ledger_seals SET seq = 2 WHERE seq = 3", ()),
        ("UPDATE ledger_seals SET seq = 3 WHERE seq = -1", ()),
    )
    return [
        f"{third[1]} {third[2]}: seal 2 does not follow",
        f"{second[1]} {second[2]}: seal 3 does not follow",
    ]


def _resealed_forgery(
    path: Path, credits: list[str], gens: list[str], rows: list[tuple[int, str, str, str, str]]
) -> list[str]:
    """A cost changed and its seal's digest recomputed to match: the chain still gives it away."""
    raw(path, ("UPDATE generations SET cost = 1 WHERE id = ?", (gens[0],)))
    with sqlite3.connect(path) as con:
        con.row_factory = sqlite3.Row
        row = con.execute("SELECT * FROM generations WHERE id = ?", (gens[0],)).fetchone()
    raw(
        path,
        (
            "UPDATE ledger_seals SET digest = ? WHERE row_id = ?",
            (seals.digest("generation", [row[name] for name in seals.GENERATION_FIELDS]), gens[0]),
        ),
    )
    return [f"generation {gens[0]}: seal"]


def _removed_with_its_seal(
    path: Path, credits: list[str], gens: list[str], rows: list[tuple[int, str, str, str, str]]
) -> list[str]:
    seq, kind, row_id = rows[3][:3]
    after = rows[4]
    table = "credits" if kind == "credit" else "generations"
    raw(
        path,
        (f"DELETE FROM {table} WHERE id = ?", (row_id,)),
        ("DELETE FROM ledger_seals WHERE seq = ?", (seq,)),
    )
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
    sqlite_store: SqliteStore, admin: Admin, db_path: Path, tamper: Tamper
) -> None:
    key = await make_key(admin)
    await admin.add_credit(key.account_id, {"amount": "1", "reason": "second"})
    credits = [c.id for c in await sqlite_store.list_credits(key.account_id)]
    gens = [await charged(sqlite_store, key, cost) for cost in (1_000, 2_000, 3_000)]
    await sqlite_store.seal_ledger()
    assert (await sqlite_store.verify_ledger()).ok
    expected = tamper(db_path, credits, gens, seal_rows(db_path))
    report = await sqlite_store.verify_ledger()
    assert not report.ok
    for needle in expected:
        assert any(needle in problem for problem in report.problems), (needle, report.problems)
