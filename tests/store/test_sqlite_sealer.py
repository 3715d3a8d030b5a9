"""SQLite's ledger chain (store/sqlite/seals.py, sqlite/money_mirror.py): a charge is sealed in the
batch that settles it (its digest from the values the row is written with, linked after the
chain's head the batch keeps in memory); what no settle sealed (credits, records settled by
another connection, values SQLite stores in another type) is found and hashed by the sealer in a
worker thread on a connection of its own, and the event loop's connection only links and writes
those, `APPEND` seals a write, inside the shared transaction of the request path. A round cut off
between two writes loses and doubles nothing; a batch rebuilt without a failing operation, or a
chain another connection appended to, links on without a gap. Real SQLite files; what the loop's
connection runs is seen with SQLite's own statement trace."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from nemorouter.service.administration.admin import Admin
from nemorouter.store import seals
from nemorouter.store.base import StoreError
from nemorouter.store.records import ApiKey, Generation
from nemorouter.store.sqlite import SqliteStore
from nemorouter.store.sqlite import seals as sqlite_seals
from nemorouter.vault import Vault

from .contract.test_ledger_seals_contract import NOW, NOW_TEXT, charged, make_key, reserve, settle


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(str(tmp_path / "ledger.db"))
    await store.migrate()
    yield store
    await store.close()


def _trace_loop_connection(store: SqliteStore) -> list[tuple[int, str]]:
    """Every statement the event loop's connection runs from now on, with the running thread."""
    seen: list[tuple[int, str]] = []
    store._db.set_trace_callback(lambda sql: seen.append((threading.get_ident(), sql)))
    return seen


async def _sealed(store: SqliteStore) -> list[tuple[str, str]]:
    rows = store._db.execute("SELECT kind, row_id FROM ledger_seals ORDER BY seq").fetchall()
    return [(row[0], row[1]) for row in rows]


def _charge(key: ApiKey, gen_id: str, **values: Any) -> Generation:
    """A successful charge's record for `gen_id`, with `values` in place of the defaults."""
    fields: dict[str, Any] = {
        "model": "m/x",
        "endpoint": "chat",
        "streamed": False,
        "status": "success",
        "created_at": NOW_TEXT,
        "hold": 10**9,
        **values,
    }
    return Generation(id=gen_id, account_id=key.account_id, key_id=key.id, **fields)


async def _credits(store: SqliteStore, admin: Admin, account_id: str, count: int) -> None:
    for _ in range(count):
        await admin.add_credit(account_id, {"amount": "0.01"})


async def test_a_charge_is_sealed_by_the_batch_that_settles_it(store: SqliteStore) -> None:
    key = await make_key(Admin(store, Vault(os.urandom(32)), lambda: NOW))
    seen = _trace_loop_connection(store)
    gen_ids = [await charged(store, key, cost) for cost in (5, 0, 9)]
    held = await reserve(store, key)
    assert await store.release(held, None)

    # No sealing round ran: each charge was sealed as it was settled, the release never.
    assert [row_id for _, row_id in await _sealed(store)] == gen_ids
    assert sum(sql.startswith("INSERT INTO ledger_seals") for _, sql in seen) == 3
    assert sum(sql.startswith("SELECT seq, chain") for _, sql in seen) == 1  # the head, then memory
    columns = ", ".join(seals.GENERATION_FIELDS)
    stored = dict(store._db.execute("SELECT row_id, digest FROM ledger_seals").fetchall())
    for row in store._db.execute(f"SELECT {columns} FROM generations WHERE status = 'success'"):
        assert stored[row[0]] == seals.digest("generation", tuple(row))
    assert await store.seal_ledger() == 1  # the credit
    assert (await store.verify_ledger()).ok


async def test_the_scan_moves_past_what_settles_sealed(store: SqliteStore) -> None:
    """The scan looks for unsealed rows only; when it found fewer than a batch, everything up to
    the newest row is sealed, so the next round (and a restart) starts after it instead of
    reading the same sealed rows again, which would grow with every request."""
    key = await make_key(Admin(store, Vault(os.urandom(32)), lambda: NOW))
    gen_ids = [await charged(store, key, 1) for _ in range(sqlite_seals.BATCH + 44)]
    assert await store.seal_ledger() == 1  # the credit
    assert store._seal_cursor is not None and store._seal_cursor.after == max(gen_ids)
    resume = store._db.execute("SELECT value FROM meta WHERE key = 'seal_generations_from'").fetchone()
    assert resume[0] == max(gen_ids)
    read: list[str] = []
    assert store._scanner is not None
    store._scanner.set_trace_callback(read.append)
    assert await store.seal_ledger() == 0
    (scan,) = [sql for sql in read if "FROM generations g WHERE id >" in sql]
    assert f"id > '{max(gen_ids)}'" in scan


async def test_a_value_sqlite_stores_otherwise_is_left_to_the_sealer(store: SqliteStore) -> None:
    """A count given as a bool passes the money checks and is stored as 1: hashed as Python holds
    it (`true`), its seal would be a false alarm. Such a record is sealed by the sealer, from the row."""
    key = await make_key(Admin(store, Vault(os.urandom(32)), lambda: NOW))
    gen_id = await reserve(store, key)
    assert await store.settle(gen_id, _charge(key, gen_id, prompt_tokens=True, cost=3), "all")
    assert await _sealed(store) == []
    assert await store.seal_ledger() == 2  # the credit and the charge, hashed from their rows
    assert (await store.verify_ledger()).ok


async def test_a_batch_rebuilt_without_a_failing_settle_keeps_the_chain_whole(store: SqliteStore) -> None:
    """Three settles in one batch; the middle one's record cannot be written, so the batch is
    rolled back and redone without it: the other two are sealed once each, seqs without a gap."""
    key = await make_key(Admin(store, Vault(os.urandom(32)), lambda: NOW))
    ids = [await reserve(store, key) for _ in range(3)]
    store._flush()

    def gen(gen_id: str, model: str) -> Generation:
        return _charge(key, gen_id, model=model, cost=4)

    results = await asyncio.gather(
        store.settle(ids[0], gen(ids[0], "m/a"), "all"),
        store.settle(ids[1], gen(ids[1], "bad \ud800 text"), "all"),
        store.settle(ids[2], gen(ids[2], "m/c"), "all"),
        return_exceptions=True,
    )
    assert results[0] is True and results[2] is True and isinstance(results[1], StoreError)
    rows = store._db.execute("SELECT seq, row_id FROM ledger_seals ORDER BY seq").fetchall()
    assert [tuple(r) for r in rows] == [(1, ids[0]), (2, ids[2])]
    assert await store.seal_ledger() == 1  # the credit
    report = await store.verify_ledger()
    assert report.ok, report.problems


async def test_seals_another_connection_appended_are_linked_after(tmp_path: Path) -> None:
    """Two stores on one file (a second process): each batch that finds the database changed by
    the other reads the chain's head again instead of linking after the one it remembered."""
    path = str(tmp_path / "shared.db")
    one, two = SqliteStore(path), SqliteStore(path)
    await one.migrate()
    try:
        key = await make_key(Admin(one, Vault(os.urandom(32)), lambda: NOW))
        await charged(one, key, 1)
        await charged(two, key, 2)
        await charged(one, key, 3)
        await Admin(two, Vault(os.urandom(32)), lambda: NOW).add_credit(key.account_id, {"amount": "1"})
        await two.seal_ledger()
        await charged(one, key, 4)
        await one.seal_ledger()
        seqs = [r[0] for r in one._db.execute("SELECT seq FROM ledger_seals ORDER BY seq")]
        assert seqs == list(range(1, 7))  # two credits, four charges
        assert (await one.verify_ledger()).ok
    finally:
        await one.close()
        await two.close()


async def test_a_settle_by_record_is_sealed_by_the_sealer(tmp_path: Path) -> None:
    """A hold another connection made is settled by its record, not by the mirror: the sealer
    finds it, also when its id sorts below the last one seen (a clock stepped back)."""
    path = str(tmp_path / "shared.db")
    one, two = SqliteStore(path), SqliteStore(path)
    await one.migrate()
    try:
        key = await make_key(Admin(one, Vault(os.urandom(32)), lambda: NOW))
        wall = time.time_ns()
        await charged(one, key, 1)
        assert await one.seal_ledger(now_ns=wall + 10**9) == 1  # the credit
        early = f"gen-{wall - 10**9:016x}abcdef0001"
        await reserve(two, key, early)
        two._flush()  # its hold's batch lingers for a charge otherwise, holding the write lock
        await settle(one, key, early, 30)  # not `one`'s hold: by its record
        assert early not in [row_id for _, row_id in await _sealed(one)]
        assert await one.seal_ledger(now_ns=wall - 5 * 10**8) == 1
        assert early in [row_id for _, row_id in await _sealed(one)]
        assert (await one.verify_ledger()).ok
    finally:
        await one.close()
        await two.close()


async def test_the_loop_only_links_and_writes_in_short_slices(store: SqliteStore) -> None:
    admin = Admin(store, Vault(os.urandom(32)), lambda: NOW)
    key = await make_key(admin)
    await _credits(store, admin, key.account_id, 150)
    seen = _trace_loop_connection(store)
    loop_thread = threading.get_ident()

    assert await store.seal_ledger() == 151  # the 151 credits

    statements = [sql for thread, sql in seen]
    assert {thread for thread, _ in seen} == {loop_thread}
    # The scan (credits, generations, what is sealed already) ran on the other connection.
    assert not [sql for sql in statements if "FROM credits" in sql or "FROM generations" in sql]
    assert sum(sql.startswith("SELECT seq, chain FROM ledger_seals") for sql in statements) == 1  # the head
    assert sum(sql.startswith("INSERT OR REPLACE INTO meta") for sql in statements) == 2  # where to resume
    assert sum(sql.startswith("INSERT INTO ledger_seals") for sql in statements) == 151
    assert sum(sql.startswith("COMMIT") for sql in statements) == -(-151 // sqlite_seals.APPEND)
    assert store._scanner is not None and store._scanner is not store._db
    assert (await store.verify_ledger()).ok


async def test_a_round_cut_off_between_writes_is_finished_by_the_next(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_seals, "APPEND", 2)
    admin = Admin(store, Vault(os.urandom(32)), lambda: NOW)
    key = await make_key(admin)
    await _credits(store, admin, key.account_id, 4)
    round_task: asyncio.Task[int] | None = None

    writes = 0

    def cut_at_second_write(sql: str) -> None:
        nonlocal writes
        if sql.startswith("BEGIN"):
            writes += 1
            if writes == 2 and round_task is not None:
                round_task.cancel()  # delivered while it waits for that write's commit

    store._db.set_trace_callback(cut_at_second_write)
    round_task = asyncio.ensure_future(store.seal_ledger())
    with pytest.raises(asyncio.CancelledError):
        await round_task
    store._db.set_trace_callback(None)
    store._flush()
    assert len(await _sealed(store)) == 4  # two of three writes went in (the cut one too)

    assert await store.seal_ledger() == 1  # the rest, nothing twice
    sealed = await _sealed(store)
    assert len(sealed) == len(set(sealed)) == 5
    assert (await store.verify_ledger()).ok

    path = store.path
    await store.close()
    again = SqliteStore(path)
    try:
        assert await again.seal_ledger() == 0  # resumes after the last round's mark
        assert (await again.verify_ledger()).ok
    finally:
        await again.close()


def _whole_rows_by_id(statements: list[str]) -> list[str]:
    """The scanner's reads of whole generation rows by id (the remembered pending ones)."""
    return [
        sql
        for sql in statements
        if "FROM generations g WHERE id IN" in sql and "status = 'pending'" not in sql
    ]


async def test_long_pending_holds_are_looked_up_by_id_only(store: SqliteStore) -> None:
    """Thousands of open streams stay pending for their whole length: each round reads only their
    ids again, and the rows of those that ended (charged: sealed; released: never)."""
    key = await make_key(Admin(store, Vault(os.urandom(32)), lambda: NOW))
    held = [await reserve(store, key, hold=10**6) for _ in range(600)]  # more than one IN (...) chunk
    assert await store.seal_ledger() == 1  # the credit; the holds are remembered as pending
    read: list[str] = []
    assert store._scanner is not None
    store._scanner.set_trace_callback(read.append)

    assert await store.seal_ledger() == 0
    assert _whole_rows_by_id(read) == [] and sum("status = 'pending'" in sql for sql in read) == 2

    for gen_id in held[:3]:
        await settle(store, key, gen_id, 5, hold=10**6)
    assert await store.release(held[3], None)
    read.clear()
    assert await store.seal_ledger() == 0  # the three charges sealed themselves; the release never
    whole = _whole_rows_by_id(read)
    assert sum(sql.count("'gen-") for sql in whole) == 4  # the four that ended, not the 596 still open
    assert len(await _sealed(store)) == 4
    for gen_id in held[4:]:
        await settle(store, key, gen_id, 1, hold=10**6)
    assert await store.seal_ledger() == 0
    assert len(await _sealed(store)) == 600
    read.clear()
    assert await store.seal_ledger() == 0
    assert _whole_rows_by_id(read) == []  # none is remembered any more
    assert (await store.verify_ledger()).ok


TRICKY = (
    'a quote " a backslash \\ a slash /',
    "a line\nbreak, a tab\t, controls \x01\x1f\x7f",
    "é 😀 \u2028 \u00a0 日本",
    "",
    '{"looks": ["like", "json"]}',
    "12345678901234567890",
)


async def test_rows_read_packed_hash_exactly_as_the_rows_themselves(store: SqliteStore) -> None:
    """The scan reads its rows packed into one JSON text (one step, one hand-off of the GIL): the
    values must come back as the rows' own, or every seal would be a false alarm in `verify`
    (which hashes the rows as SQLite gives them, row by row)."""
    admin = Admin(store, Vault(os.urandom(32)), lambda: NOW)
    key = await make_key(admin, credits="100000")
    for text in TRICKY:
        await admin.add_credit(key.account_id, {"amount": "0.000001", "reason": text or "-"})
        gen_id = await reserve(store, key, hold=10**12)
        gen = _charge(
            key,
            gen_id,
            model=text or "m",
            streamed=True,
            prompt_tokens=2**62,  # beyond a double's exact integers
            cost=999_999_999_999,
            hold=10**12,
        )
        assert await store.settle(gen_id, gen, "all")
    assert len(await _sealed(store)) == len(TRICKY)  # each charge sealed as it was settled
    assert await store.seal_ledger() == 1 + len(TRICKY)  # the credits, hashed from their rows read packed
    report = await store.verify_ledger()
    assert report.ok, report
    stored = {
        row[0]: row[1] for row in store._db.execute("SELECT row_id, digest FROM ledger_seals").fetchall()
    }
    columns = ", ".join(seals.GENERATION_FIELDS)
    for row in store._db.execute(f"SELECT {columns} FROM generations").fetchall():
        assert stored[row[0]] == seals.digest("generation", tuple(row))


async def test_an_in_memory_database_is_scanned_on_its_own_connection() -> None:
    """A second connection to ":memory:" would open another, empty database: there the scan
    stays on the one connection, and everything is still sealed."""
    store = SqliteStore(":memory:")
    await store.migrate()
    try:
        key = await make_key(Admin(store, Vault(os.urandom(32)), lambda: NOW))
        await charged(store, key, 7)
        assert await store.seal_ledger() == 1  # the credit (the charge sealed itself)
        assert len(await _sealed(store)) == 2
        assert store._scanner is None
        assert (await store.verify_ledger()).ok
    finally:
        await store.close()
