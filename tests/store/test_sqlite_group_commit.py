"""SQLite's group commit, seen in the database's own write-ahead log: the commits a request costs.

A batch no one waits on (a hold) lingers for one that someone does (a charge), so at one request
at a time the hold and the charge share one COMMIT (store/sqlite/conn.py, `LINGER`); a hold
alone is still committed within `LINGER`. Commits are counted from the WAL file itself: every
frame that ends a transaction records the database's size in pages, the others zero.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nemorouter.service.administration.admin import Admin
from nemorouter.store.open import open_store
from nemorouter.store.sqlite.conn import LINGER
from nemorouter.store.sqlite.store import SqliteStore
from nemorouter.vault import Vault

from .contract.test_money_contract import NOW, NOW_TEXT, hold, make_key
from .test_store_concurrency import outcome

WAL_HEADER, FRAME_HEADER = 32, 24


def frames(wal: Path) -> list[int]:
    """The WAL's current frames, each as the database size its header records (0: not a commit)."""
    data = wal.read_bytes()
    if len(data) < WAL_HEADER:
        return []
    page_size = struct.unpack(">I", data[8:12])[0]
    salts = data[16:24]
    found, offset = [], WAL_HEADER
    while offset + FRAME_HEADER + page_size <= len(data):
        if data[offset + 8 : offset + 16] != salts:  # a frame left from before the WAL restarted
            break
        found.append(struct.unpack(">I", data[offset + 4 : offset + 8])[0])
        offset += FRAME_HEADER + page_size
    return found


def commits(wal: Path) -> int:
    """Transactions in the WAL file: frames whose header gives the size after a commit."""
    return sum(size != 0 for size in frames(wal))


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, Path]]:
    path = tmp_path / "nemo.db"
    store = open_store(f"sqlite:///{path}")
    assert isinstance(store, SqliteStore)
    await store.migrate()
    yield store, path.with_name("nemo.db-wal")
    await store.close()


async def test_a_hold_and_its_charge_share_one_commit(sqlite_store: tuple[SqliteStore, Path]) -> None:
    store, wal = sqlite_store
    key = await make_key(Admin(store, Vault(os.urandom(32)), lambda: NOW))
    shared = []
    for _ in range(5):  # a stall of the machine longer than LINGER would commit the hold alone
        before = commits(wal)
        h = hold(key, 100)
        assert (await store.reserve(h, NOW_TEXT)).ok
        await asyncio.sleep(0)  # the upstream answers in the next iteration: the batch is still open
        assert await store.settle(h.request_id, outcome(h, 60), "all")
        shared.append(commits(wal) - before)
        if shared[-1] == 1:
            break
    assert shared[-1] == 1, f"commits per request: {shared}"


async def test_a_charge_commits_at_once_only_when_no_other_hold_is_open(
    sqlite_store: tuple[SqliteStore, Path],
) -> None:
    """At one request at a time nobody could join the charge's batch: its COMMIT runs inside the
    settle, not a turn or two of the loop later. With another request's hold open, the settle waits
    for the end of the step, so that the others settling in it share the COMMIT."""
    store, wal = sqlite_store
    key = await make_key(Admin(store, Vault(os.urandom(32)), lambda: NOW))
    loop = asyncio.get_running_loop()
    turns: list[str] = []
    alone = hold(key, 100)
    assert (await store.reserve(alone, NOW_TEXT)).ok
    before = commits(wal)
    loop.call_soon(turns.append, "turn")
    assert await store.settle(alone.request_id, outcome(alone, 60), "all")
    assert (turns, commits(wal)) == ([], before + 1)  # committed, and the loop never turned
    await asyncio.sleep(0)
    first, second = hold(key, 100), hold(key, 100)
    for h in (first, second):
        assert (await store.reserve(h, NOW_TEXT)).ok
    turns.clear()
    loop.call_soon(turns.append, "turn")
    assert await store.settle(first.request_id, outcome(first, 60), "all")
    assert turns == ["turn"]  # waited for the step's end: `second` could still have joined
    assert await store.settle(second.request_id, outcome(second, 60), "all")


async def test_a_hold_alone_is_committed_within_the_linger(sqlite_store: tuple[SqliteStore, Path]) -> None:
    store, wal = sqlite_store
    key = await make_key(Admin(store, Vault(os.urandom(32)), lambda: NOW))
    before = commits(wal)
    assert (await store.reserve(hold(key, 100), NOW_TEXT)).ok
    assert commits(wal) == before  # still open, for a charge that may join it
    await asyncio.sleep(LINGER * 5)
    assert commits(wal) == before + 1


async def test_beside_a_background_checkpointer_commits_do_not_checkpoint(
    sqlite_store: tuple[SqliteStore, Path],
) -> None:
    """SQLite's automatic checkpoint (copy and sync, in the committing thread) would start the WAL
    over after 1,000 pages; with the server's worker thread checkpointing, the event loop's
    connection leaves it to the thread until far past that."""
    store, wal = sqlite_store
    store.checkpoint_in_background()
    key = await make_key(Admin(store, Vault(os.urandom(32)), lambda: NOW), "1000")
    for _ in range(300):
        h = hold(key, 100)
        assert (await store.reserve(h, NOW_TEXT)).ok
        assert await store.settle(h.request_id, outcome(h, 60), "all")
    assert len(frames(wal)) > 1000
    await asyncio.to_thread(store.checkpoint)
    h = hold(key, 100)
    assert (await store.reserve(h, NOW_TEXT)).ok
    assert await store.settle(h.request_id, outcome(h, 60), "all")
    assert len(frames(wal)) < 50  # all of it copied: the next commit started the WAL over


async def test_a_checkpoint_is_due_only_after_something_was_written(
    sqlite_store: tuple[SqliteStore, Path], tmp_path: Path
) -> None:
    """The server's checkpoint loop asks `checkpoint_due` twenty times a second: idle, nothing is
    handed to a thread; a write of this connection, one left open in a batch, or one committed by
    another process (the CLI) makes the next round due, and one asked for that did not run is
    due again."""
    store, wal = sqlite_store
    store.checkpoint_in_background()
    key = await make_key(Admin(store, Vault(os.urandom(32)), lambda: NOW))
    assert store.checkpoint_due()
    await asyncio.to_thread(store.checkpoint)
    assert not store.checkpoint_due()
    assert not store.checkpoint_due()

    h = hold(key, 100)
    assert (await store.reserve(h, NOW_TEXT)).ok  # its batch lingers, not yet committed
    assert store.checkpoint_due()
    await asyncio.to_thread(store.checkpoint)
    assert await store.settle(h.request_id, outcome(h, 60), "all")
    assert store.checkpoint_due()  # the batch committed after that round: it is due again
    await asyncio.to_thread(store.checkpoint)
    assert not store.checkpoint_due()

    other = sqlite3.connect(tmp_path / "nemo.db", isolation_level=None)  # another process's write
    other.execute("INSERT INTO meta (key, value) VALUES ('probe', '1')")
    other.close()
    assert store.checkpoint_due()

    # A round asked for that never ran (its thread failed before it): still due.
    assert store.checkpoint_due()
    await asyncio.to_thread(store.checkpoint)
    assert not store.checkpoint_due()
    assert len(frames(wal)) > 0
