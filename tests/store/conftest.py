"""The store contract suite: every test that asks for `store` runs on SQLite and on PostgreSQL.

SQLite gets a file in tmp_path; PostgreSQL a database per test module (`nemo_test_<random>`,
migrated once, emptied before each test, dropped afterwards). PostgreSQL is not optional: if it cannot be reached, the postgres params
fail (CI starts it). `NEMO_TEST_POSTGRES_URL` names the server (default: local, trust auth).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from nemorouter.service.administration.admin import Admin
from nemorouter.store.base import Store
from nemorouter.store.open import open_store
from nemorouter.store.postgres import PostgresStore
from nemorouter.store.sqlite.conn import LINGER
from nemorouter.vault import Vault
from secret_scan import SESSION as SECRET_SCAN

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday
T = TypeVar("T")
SERVER = os.environ.get("NEMO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

# Runs one statement straight on the database behind the store, around the store's back (to
# tamper with it); `?` marks the parameters in either backend. Returns the rows it changed.
RawSql = Callable[..., Awaitable[int]]


async def batches_committed() -> None:
    """Give the SQLite store's open batch time to commit: a batch no one waits on lingers up to
    `LINGER` for one that someone does (store/sqlite/conn.py), holding the write lock till then."""
    await asyncio.sleep(LINGER * 2)


def database_url(name: str) -> str:
    return SERVER.rsplit("/", 1)[0] + "/" + name


async def _server() -> Any:
    try:
        return await asyncpg.connect(SERVER, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {SERVER} ({exc}); start it or set NEMO_TEST_POSTGRES_URL"
        )


async def create_database() -> str:
    name = f"nemo_test_{secrets.token_hex(6)}"
    server = await _server()
    try:
        await server.execute(f"CREATE DATABASE {name}")
    finally:
        await server.close()
    return name


async def drop_database(name: str) -> None:
    SECRET_SCAN.before_dropping_postgres(database_url(name))
    server = await _server()
    try:
        await server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await server.close()


def _in_thread(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run async setup from a sync (module-scoped) fixture on a loop of its own, in a thread, so
    pytest-asyncio's loops are left alone."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work()).result()


async def _migrated_database() -> str:
    name = await create_database()
    store = PostgresStore(database_url(name), min_size=1, max_size=1)
    try:
        await store.migrate()
    finally:
        await store.close()
    return name


async def _empty(url: str) -> None:
    """Delete every row but the schema's: tables in reverse order of creation, so rows that
    reference others go first. What the last test left is kept for the suite's secret scan."""
    SECRET_SCAN.before_dropping_postgres(url)
    con = await asyncpg.connect(url)
    try:
        tables = await con.fetch(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
            " AND relname <> 'schema_migrations' ORDER BY oid DESC"
        )
        await con.execute("; ".join(f"DELETE FROM {t[0]}" for t in tables))
    finally:
        await con.close()


@pytest.fixture(scope="module")
def pg_module_database() -> Iterator[str]:
    """One migrated PostgreSQL database per test module (emptied before each test); its URL."""
    name = _in_thread(_migrated_database)
    try:
        yield database_url(name)
    finally:
        _in_thread(lambda: drop_database(name))


@pytest.fixture
async def pg_database() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database of this test alone; its URL."""
    name = await create_database()
    try:
        yield database_url(name)
    finally:
        await drop_database(name)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def pg_url(pg_module_database: str) -> str:
    """The module's PostgreSQL database, migrated and empty; its URL."""
    await _empty(pg_module_database)
    return pg_module_database


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty, migrated database for `backend` (SQLite: migrated by the `store` fixture)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 't.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def fresh_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A database for `backend` that nothing has touched yet (not even migrations)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    url: str = request.getfixturevalue("pg_database")
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    db = open_store(store_url)  # the real entry point: NEMO_DATABASE_URL -> store
    await db.migrate()
    yield db
    await db.close()


@pytest.fixture
def admin(store: Store) -> Admin:
    return Admin(store, Vault(os.urandom(32)), lambda: NOW)


@pytest.fixture
def raw_sql(store_url: str) -> RawSql:
    async def run(sql: str, *params: Any) -> int:
        if store_url.startswith("sqlite:///"):
            await batches_committed()  # the store's shared transaction first
            con = sqlite3.connect(store_url.removeprefix("sqlite:///"), isolation_level=None)
            try:
                return con.execute(sql, params).rowcount
            finally:
                con.close()
        numbered = sql
        for i in range(1, len(params) + 1):
            numbered = numbered.replace("?", f"${i}", 1)
        con = await asyncpg.connect(store_url)
        try:
            status: str = await con.execute(numbered, *params)
        finally:
            await con.close()
        return int(status.rsplit(" ", 1)[-1])

    return run


# Reads straight from the database behind the store (`?` marks the parameters in either backend):
# the rows as tuples, PostgreSQL booleans as SQLite's 0/1.
RawQuery = Callable[..., Awaitable[list[tuple[Any, ...]]]]


@pytest.fixture
def raw_query(store_url: str) -> RawQuery:
    async def run(sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if store_url.startswith("sqlite:///"):
            await batches_committed()  # the store's shared transaction first
            con = sqlite3.connect(store_url.removeprefix("sqlite:///"))
            try:
                return [tuple(r) for r in con.execute(sql, params).fetchall()]
            finally:
                con.close()
        numbered = sql
        for i in range(1, len(params) + 1):
            numbered = numbered.replace("?", f"${i}", 1)
        con = await asyncpg.connect(store_url)
        try:
            found = await con.fetch(numbered, *params)
        finally:
            await con.close()
        return [tuple(int(v) if isinstance(v, bool) else v for v in r) for r in found]

    return run
