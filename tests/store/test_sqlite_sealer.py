"""SQLite's sealer keeps off the event loop (store/sqlite/seals.py): the entries are found and
hashed in a worker thread on a connection of its own, and the event loop's connection only
links and writes them, `APPEND` seals a write, inside the shared transaction of the request path.
A round cut off between two writes loses and doubles nothing: the next round seals the rest.
Real SQLite files; what the loop's connection runs is seen with SQLite's own statement trace."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nemorouter.service.administration.admin import Admin
from nemorouter.store import seals
from nemorouter.store.records import Generation
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


async def test_the_loop_only_links_and_writes_in_short_slices(store: SqliteStore) -> None:
    key = await make_key(Admin(store, Vault(os.urandom(32)), lambda: NOW))
    for cost in range(1, 151):
        await charged(store, key, cost)
    seen = _trace_loop_connection(store)
    loop_thread = threading.get_ident()

    assert await store.seal_ledger() == 151  # the credit and 150 charges

    statements = [sql for thread, sql in seen]
    assert {thread for thread, _ in seen} == {loop_thread}
    # The scan (credits, generations, what is sealed already) ran on the other connection.
    assert not [sql for sql in statements if "FROM credits" in sql or "FROM generations" in sql]
    slices = [sql for sql in statements if sql.startswith("SELECT seq, chain FROM ledger_seals")]
    assert len(slices) == -(-151 // sqlite_seals.APPEND)  # one write per APPEND seals
    assert sum(sql.startswith("INSERT INTO ledger_seals") for sql in statements) == 151
    assert store._scanner is not None and store._scanner is not store._db
    assert (await store.verify_ledger()).ok


async def test_a_round_cut_off_between_writes_is_finished_by_the_next(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_seals, "APPEND", 2)
    key = await make_key(Admin(store, Vault(os.urandom(32)), lambda: NOW))
    for cost in (3, 5, 7, 11):
        await charged(store, key, cost)
    round_task: asyncio.Task[int] | None = None

    writes = 0

    def cut_at_second_write(sql: str) -> None:
        nonlocal writes
        if sql.startswith("SELECT seq, chain"):
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
        sql for sql in statements if "FROM generations WHERE id IN" in sql and "status = 'pending'" not in sql
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
    assert await store.seal_ledger() == 3  # the three charges; the released hold never
    whole = _whole_rows_by_id(read)
    assert sum(sql.count("'gen-") for sql in whole) == 4  # the four that ended, not the 596 still open
    for gen_id in held[4:]:
        await settle(store, key, gen_id, 1, hold=10**6)
    assert await store.seal_ledger() == 596
    assert await store.seal_ledger() == 0
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
        gen = Generation(
            id=gen_id,
            account_id=key.account_id,
            key_id=key.id,
            model=text or "m",
            endpoint="chat",
            streamed=True,
            status="success",
            created_at=NOW_TEXT,
            prompt_tokens=2**62,  # beyond a double's exact integers
            completion_tokens=0,
            cost=999_999_999_999,
            hold=10**12,
        )
        assert await store.settle(gen_id, gen, "all")
    assert await store.seal_ledger() == 1 + 2 * len(
        TRICKY
    )  # the first credit, and a credit and a charge each
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
        assert await store.seal_ledger() == 2
        assert store._scanner is None
        assert (await store.verify_ledger()).ok
    finally:
        await store.close()
