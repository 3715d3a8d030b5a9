"""A pool of PostgreSQL connections, opened on first use; one real transaction per operation.

Money operations are transactions of conditional UPDATEs. Under READ COMMITTED an UPDATE that
finds its row locked by another transaction waits for it, then re-checks its WHERE clause on
the row as that transaction left it, so a condition such as `held + amount <= limit` is never
decided on a stale read, whichever replica runs it. Rows are locked in one order everywhere:
api_keys before accounts, several rows of one table in id order, and a settle or release first
takes its own generation row, which only that request's operations touch. So transactions
never wait on each other in a cycle; a deadlock the server reports anyway (a migration running
beside traffic, say) is retried.

Running money totals are NUMERIC in SQL and plain `int` in Python: every connection decodes
NUMERIC as `int`, so no driver type (nor a `Decimal`) ever leaves the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg

from nemorouter.store.base import StoreError

T = TypeVar("T")
Conn = Any  # asyncpg.Connection (the driver ships no type information)
Record = Any  # asyncpg.Record: read with record["column"], like sqlite3.Row

log = logging.getLogger("nemorouter.store")
_ATTEMPTS = 3
# Pool size from which `_call_kept` keeps its connections (two: reserves and settles), so that
# at least one is always left for everything else.
_KEEP_FROM = 4


async def _setup(conn: Conn) -> None:
    """Per connection: NUMERIC to and from Python int (scale-0 columns and sums of them only)."""
    await conn.set_type_codec("numeric", schema="pg_catalog", encoder=str, decoder=int, format="text")


async def _keep_session(conn: Conn) -> None:
    """A connection's reset on its way back to the pool: nothing to send. asyncpg's default sends
    `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` after every use, one
    more round trip per statement (two per request: half of its round trips). This store leaves
    no session state to undo: its advisory locks are transaction-scoped, its settings `SET
    LOCAL`, it opens no cursor outside a transaction and listens to nothing; and asyncpg still
    rolls back a transaction left open (client-side state, no round trip unless one is)."""


def describe(dsn: str) -> str:
    """`host:port/database` of a URL, never its password."""
    parts = urlsplit(dsn)
    where = parts.hostname or "localhost"
    if parts.port:
        where += f":{parts.port}"
    return where + (parts.path or "/")


class PostgresConnection:
    def __init__(
        self, dsn: str, *, min_size: int = 2, max_size: int = 10, command_timeout: float | None = None
    ) -> None:
        if not 0 <= min_size <= max_size or max_size < 1:
            raise StoreError(
                f"bad pool size: min {min_size}, max {max_size} (need 0 <= min <= max, max >= 1)"
            )
        self._dsn = dsn
        self._sizes = (min_size, max_size)
        self._command_timeout = command_timeout
        self._pool: Any = None
        self._opening: asyncio.Lock | None = None
        self._kept: dict[str, Conn] = {}  # connections kept out of the pool by `_call_kept`

    async def _connect(self) -> Any:
        """The pool, made on first use: asyncpg needs the running event loop to connect."""
        if self._pool is not None:
            return self._pool
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                try:
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=self._sizes[0],
                        max_size=self._sizes[1],
                        command_timeout=self._command_timeout,
                        init=_setup,
                        reset=_keep_session,
                        server_settings={"application_name": "nemorouter"},
                    )
                except (OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    raise StoreError(f"cannot open PostgreSQL at {describe(self._dsn)}: {exc}") from None
        return self._pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        kept, self._kept = list(self._kept.values()), {}
        if pool is not None:
            for conn in kept:
                await pool.release(conn)
            try:
                await asyncio.wait_for(pool.close(), 10)
            except TimeoutError:
                pool.terminate()

    # -- reads (one statement: atomic on its own) -------------------------------------------

    async def _one(self, sql: str, *params: Any) -> Record | None:
        pool = await self._connect()
        return await pool.fetchrow(sql, *params)

    async def _all(self, sql: str, *params: Any) -> list[Record]:
        pool = await self._connect()
        found: list[Record] = await pool.fetch(sql, *params)
        return found

    # -- transactions ---------------------------------------------------------------------

    @asynccontextmanager
    async def _tx(self, *, snapshot: bool = False) -> AsyncIterator[Conn]:
        """One transaction (a consistent read-only snapshot with `snapshot`); rolled back on error."""
        pool = await self._connect()
        async with pool.acquire() as conn:
            if snapshot:
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    yield conn
            else:
                async with conn.transaction():
                    yield conn

    async def _atomic(self, op: Callable[[Conn], Awaitable[T]], *, durable: bool = True) -> T:
        """Run `op` in one transaction: committed if it returns, rolled back if it raises;
        retried from the start if the server broke a deadlock.

        With `durable=False` the commit does not wait for the WAL flush: the change binds every
        other transaction at once, and only a crash of the database server within a moment
        could lose it. Use it only where that is harmless (as SQLite's group commit does: a
        hold or its release; never a charge or a credit).
        """
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                async with self._tx() as conn:
                    if not durable:
                        await conn.execute("SET LOCAL synchronous_commit TO OFF")
                    return await op(conn)
            except asyncpg.DeadlockDetectedError:
                if attempt == _ATTEMPTS:
                    raise
                log.warning("deadlock broken by the database; retrying", extra={"attempt": attempt})
        raise AssertionError("unreachable")

    async def _call_rows(self, sql: str, *params: Any, one: bool = False) -> Any:
        """One statement in a transaction of its own (a server-side function: one round trip): its
        rows (its first value with `one`). Retried from the start if the server broke a deadlock."""
        pool = await self._connect()
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return await (pool.fetchval(sql, *params) if one else pool.fetch(sql, *params))
            except asyncpg.DeadlockDetectedError:
                if attempt == _ATTEMPTS:
                    raise
                log.warning("deadlock broken by the database; retrying", extra={"attempt": attempt})
        raise AssertionError("unreachable")

    async def _call_kept(self, which: str, sql: str, *params: Any, one: bool = False) -> Any:
        """`_call_rows` on a connection kept for the caller `which` rather than taken from the
        pool and handed back each time: asyncpg's acquire and release cost about as much of the
        gateway's CPU as the call itself (~60 µs of ~110 on this machine), on every reserve and
        settle of the request path. Only for callers that never have two calls out at once (a
        `Batches` queue sends one batch at a time). A connection that fails other than by the
        server refusing the statement goes back to the pool, which replaces it if broken."""
        if self._sizes[1] < _KEEP_FROM:  # a pool too small to spare them: every call through it
            return await self._call_rows(sql, *params, one=one)
        conn = self._kept.get(which)
        if conn is None:
            pool = await self._connect()
            conn = self._kept[which] = await pool.acquire()
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return await (conn.fetchval(sql, *params) if one else conn.fetch(sql, *params))
            except asyncpg.DeadlockDetectedError:
                if attempt == _ATTEMPTS:
                    raise
                log.warning("deadlock broken by the database; retrying", extra={"attempt": attempt})
            except asyncpg.PostgresError:  # the statement refused, rolled back: the connection is fine
                raise
            except BaseException:  # lost, cancelled mid-call, ...: the pool checks (or replaces) it
                if self._kept.get(which) is conn:
                    del self._kept[which]
                    if self._pool is not None:
                        with contextlib.suppress(Exception):  # the failure at hand is the one to report
                            await self._pool.release(conn)
                raise
        raise AssertionError("unreachable")

    @staticmethod
    async def _bump(conn: Conn) -> None:
        """Config changed: every server's routing table reloads on its next version check."""
        await conn.execute("UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'config_version'")

    @staticmethod
    async def _matched(conn: Conn, sql: str, *params: Any) -> bool:
        """Run a conditional statement ending in `RETURNING 1`: did it touch a row?"""
        return await conn.fetchval(sql, *params) is not None

    @staticmethod
    def _sets(columns: Sequence[str], first: int = 1) -> str:
        """`a = $1, b = $2, ...` for an UPDATE of whitelisted columns."""
        return ", ".join(f"{column} = ${i}" for i, column in enumerate(columns, start=first))
