"""One SQLite connection, used from one thread, with group commit for the hot path.

Statements run synchronously: each is tens of microseconds on a local file, far cheaper
than a hop to a worker thread. Writes on the request path run inside a transaction (a
batch) shared by everything that happens in the same event-loop iteration, and callers that
need durability resume only after that transaction's COMMIT (all of it or none of it), so a
caller never acts on a change that is not durable. Under load one COMMIT (and one set of
WAL pages) serves many requests; at one request at a time it is an ordinary transaction.
Every transaction is BEGIN IMMEDIATE: while a batch is open no other connection can write,
which is what lets the money path (sqlite_money) decide from counters it mirrors in memory.
Changes a batch buffers in memory are written into its transaction before it commits, and
before any query of this connection reads (`_read`).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("nemorouter.store")


class SqliteConnection:
    def __init__(self, path: str) -> None:
        self.path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=10000"):
            self._db.execute(f"PRAGMA {pragma}")
        self._batch: list[asyncio.Future[None]] | None = None
        self._checkpointer: sqlite3.Connection | None = None

    # -- hooks for the money path (sqlite_money) ------------------------------------------------

    def _apply_buffered(self, db: sqlite3.Connection) -> None:
        """Write what the batch has buffered in memory into the open transaction (no commit)."""

    def _batch_began(self, db: sqlite3.Connection) -> None:
        """A batch's transaction was just opened: the database cannot change under it now."""

    def _changed_outside_batch(self) -> None:
        """A plain transaction of this process committed: forget what memory mirrors."""

    def _holds_released(self, holds: Sequence[Any]) -> None:
        """Recovery released these holds by their records: they are no longer this process's."""

    def _batch_rolled_back(self) -> None:
        """The open batch was rolled back: drop what it buffered and what memory mirrors."""

    # -- plain transactions (admin, CLI) ----------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._flush()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        self._changed_outside_batch()

    def _read(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """A query that sees every change made so far, the batch's buffered ones included."""
        if self._batch is not None:
            self._apply_buffered(self._db)
        return self._db.execute(sql, params)

    def _one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._read(sql, params).fetchone()
        return row

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self._read(sql, params).fetchall()

    # -- group commit (request path) --------------------------------------------------------

    async def _write(self, op: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Apply `op` in this iteration's shared transaction; return once it is committed.

        An error means the database is failing: the batch is rolled back, every waiter fails,
        and it is logged as critical.

        With `durable=False` the caller goes on at once: the change is already in force for
        every later operation of this process (one connection, one thread) and is committed
        within this loop iteration. Use it only where losing the change in a crash is harmless
        (a hold: a dead process's holds are released at the next start anyway).
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            with self._tx() as db:
                return op(db)
        db = self._in_batch(loop)
        try:
            result = op(db)
        except BaseException as exc:
            log.critical("a write failed; the batch was rolled back", extra={"error": repr(exc)})
            self._abort(exc)
            raise
        if durable:
            await self._committed(loop)
        return result

    def _in_batch(self, loop: asyncio.AbstractEventLoop) -> sqlite3.Connection:
        """The connection, inside this iteration's shared transaction (opened if need be)."""
        db = self._db
        if self._batch is None:
            db.execute("BEGIN IMMEDIATE")
            self._batch = []
            loop.call_soon(self._flush)
            self._batch_began(db)
        return db

    def _committed(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """A future done once the open batch has committed (failed if it was rolled back)."""
        assert self._batch is not None
        done = loop.create_future()
        self._batch.append(done)
        return done

    def _flush(self) -> None:
        """Write the batch's buffered changes, commit the shared transaction, if one is open, and
        wake everyone in it."""
        if self._batch is None:
            return
        try:
            self._apply_buffered(self._db)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            log.critical("commit failed; the batch was rolled back", extra={"error": str(exc)})
            self._abort(exc)
            return
        waiters, self._batch = self._batch, None
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _abort(self, exc: BaseException) -> None:
        """Roll the shared transaction back and fail everyone who was waiting on it."""
        waiters, self._batch = self._batch, None
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        self._batch_rolled_back()
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_exception(exc if isinstance(exc, Exception) else RuntimeError("write aborted"))

    # -- maintenance ----------------------------------------------------------------------

    def checkpoint(self) -> None:
        """Copy WAL pages into the main file without blocking writers. Runs in a worker thread,
        on a connection of its own."""
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._checkpointer.execute("PRAGMA busy_timeout=1000")
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close_connection(self) -> None:
        self._flush()
        self._db.close()
        if self._checkpointer is not None:
            self._checkpointer.close()
