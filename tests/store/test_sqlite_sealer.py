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
from nemorouter.store.sqlite import SqliteStore
from nemorouter.store.sqlite import seals as sqlite_seals
from nemorouter.vault import Vault

from .contract.test_ledger_seals_contract import NOW, charged, make_key


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
