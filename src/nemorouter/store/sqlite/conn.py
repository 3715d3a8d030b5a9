"""One SQLite connection, used from one thread, with group commit for the hot path.

Statements run synchronously: each is tens of microseconds on a local file, far cheaper
than a hop to a worker thread. Writes on the request path run inside a transaction (a
batch) shared by everything that happens in the same event-loop iteration, and callers that
need durability resume only after that transaction's COMMIT (all of it or none of it), so a
caller never acts on a change that is not durable. Under load one COMMIT (and one set of
WAL pages) serves many requests. A batch with no one waiting for durability (a hold, a release)
lingers up to `LINGER` seconds for one that does, so at one request at a time a request's hold
and its charge share one COMMIT, not one each; it commits at the end of the first event-loop
iteration in which someone waits, or at once for a charge when no request of this process has a
hold open (nobody could join it: at one request at a time, two turns of the loop less each).
Every transaction is BEGIN IMMEDIATE: while a batch is open no other connection can write,
which is what lets the money path (sqlite.money) decide from counters it mirrors in memory.
Changes a batch buffers in memory are written into its transaction before it commits, and
before any query of this connection reads (`_read`). One operation that fails never fails the
batch: the batch keeps a journal of its operations and is rebuilt without the culprit
(`_batched`, `_rebuild`); only a failing COMMIT fails everyone in it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from nemorouter.store.base import StoreError

T = TypeVar("T")
log = logging.getLogger("nemorouter.store")
_UNCHECKED = object()  # an entry whose answer is not compared when redone (a plain `_write`)
# Seconds a batch of writes no one waits for stays open for one that someone does (see above):
# about a fast upstream's answer; the write lock is held no longer than this for them.
LINGER = 0.002
# WAL pages past which a commit checkpoints in the foreground, with the worker thread checkpointing
# (`checkpoint_in_background`): 256 MiB of 4 KiB pages at most on disk, most of them copied by the
# thread already. A request writes ~8 pages: at 8,192 the loop checkpointed every second or so
# under load (p99 at one connection +4.2 ms over the floor's in an A/B, +1.5 ms at this figure).
FOREGROUND_CHECKPOINT_PAGES = 65536


class _Entry:
    """One operation of the open batch: redone if the batch must be rebuilt (`_rebuild`), and
    the future its caller awaits to durability (None: the caller did not wait)."""

    __slots__ = ("done", "op", "result")

    def __init__(self, op: Callable[[sqlite3.Connection], object], result: object) -> None:
        self.op = op
        self.result = result  # what it answered its caller: redone, it must answer the same
        self.done: asyncio.Future[None] | None = None

    def fail(self, exc: Exception) -> None:
        """Redone, this operation raised: it is dropped from the batch, and its caller told."""
        error = (
            exc if isinstance(exc, StoreError) else StoreError(f"the write could not be made: {exc!r}"[:500])
        )
        log.error(
            "a write failed when its batch was redone; it alone was rolled back", extra={"error": repr(exc)}
        )
        if self.done is not None and not self.done.done():
            self.done.set_exception(error)


class SqliteConnection:
    def __init__(self, path: str) -> None:
        self.path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=10000"):
            self._db.execute(f"PRAGMA {pragma}")
        self._batch: list[_Entry] | None = None
        self._commit_due: asyncio.TimerHandle | None = None  # the open batch's lingering COMMIT
        self._commit_soon = False  # the open batch commits at the end of this iteration
        self._loop: asyncio.AbstractEventLoop | None = None
        self._checkpointer: sqlite3.Connection | None = None
        # What `checkpoint_due` saw: when it last asked for a round, and as of the last round that ran.
        self._checkpoint_asked: tuple[int, int] | None = None
        self._checkpointed_at: tuple[int, int] | None = None

    @staticmethod
    def _bump(db: sqlite3.Connection) -> None:
        """Config changed: every server's routing table reloads on its next version check."""
        db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'config_version'")

    # -- hooks for the money path (sqlite.money) ------------------------------------------------

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
            self._write_buffered()
        return self._db.execute(sql, params)

    def _one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._read(sql, params).fetchone()
        return row

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self._read(sql, params).fetchall()

    # -- group commit (request path) --------------------------------------------------------

    async def _write(self, op: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Apply `op` in this iteration's shared transaction; return once it is committed.

        If `op` raises, it alone fails: the batch is rebuilt without it (`_batched`) and the
        caller gets a StoreError. If the COMMIT fails, the database is failing: every waiter
        fails, and it is logged as critical.

        With `durable=False` the caller goes on at once: the change is already in force for
        every later operation of this process (one connection, one thread) and is committed
        within `LINGER` seconds (sooner if someone waits on its batch). Use it only where losing the change in a crash is harmless
        (a hold: a dead process's holds are released at the next start anyway).
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            with self._tx() as db:
                return op(db)
        result, entry = self._batched(loop, op, check_answer=False)
        if durable:
            await self._committed(loop, entry)
        return result

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the request path runs on, for coroutines (which only run on it): asked
        of asyncio once per loop, since in Python 3.11 every asking is a getpid() system call."""
        loop = self._loop
        if loop is None or not loop.is_running():
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def _batched(
        self,
        loop: asyncio.AbstractEventLoop,
        op: Callable[[sqlite3.Connection], T],
        *,
        check_answer: bool = True,
    ) -> tuple[T, _Entry]:
        """Run `op` in the shared transaction and keep it in the batch's journal, so that it
        can be redone if another operation of the batch fails.

        An `op` that raises fails alone: whatever it half did is undone by rolling the batch
        back and redoing the journal (`_rebuild`), and its caller gets a StoreError (its own,
        if it raised one). Nothing any one request sends can stop the others' commits.
        """
        db = self._in_batch(loop)
        try:
            result = op(db)
        except Exception as exc:
            self._rebuild()
            if isinstance(exc, StoreError):
                raise
            log.error("a write failed; it alone was rolled back", extra={"error": repr(exc)})
            raise StoreError(f"the write could not be made and was rolled back: {exc!r}"[:500]) from exc
        except BaseException as exc:
            self._abort(exc)
            raise
        assert self._batch is not None
        entry = _Entry(op, result if check_answer else _UNCHECKED)
        self._batch.append(entry)
        return result, entry

    def _in_batch(self, loop: asyncio.AbstractEventLoop) -> sqlite3.Connection:
        """The connection, inside this iteration's shared transaction (opened if need be)."""
        db = self._db
        if self._batch is None:
            db.execute("BEGIN IMMEDIATE")
            self._batch = []
            self._commit_soon = False
            self._commit_due = loop.call_later(LINGER, self._flush)
            self._batch_began(db)
        return db

    def _committed(
        self, loop: asyncio.AbstractEventLoop, entry: _Entry, at_once: bool = False
    ) -> asyncio.Future[None]:
        """A future done once `entry`'s batch has committed (failed if `entry` was rolled back);
        the batch commits at the end of this iteration, or now with `at_once` (the caller knows
        that nobody else could join it: two turns of the loop less)."""
        done: asyncio.Future[None] = loop.create_future()
        entry.done = done
        if at_once:
            self._flush()
            return done
        if not self._commit_soon:
            self._commit_soon = True
            loop.call_soon(self._flush)
        return done

    def _write_buffered(self) -> None:
        """Write what the open batch buffered; if that fails, find the operation whose writes
        fail and rebuild the batch without it."""
        try:
            self._apply_buffered(self._db)
        except Exception as exc:
            log.error("buffered writes failed; finding the operation at fault", extra={"error": repr(exc)})
            self._rebuild()

    def _rebuild(self) -> None:
        """Roll the open batch back and redo its journal in a fresh transaction, writing each
        operation's buffered changes as it goes; an operation that raises is dropped and its
        waiter fails, and the rest are redone from the start without it. Everything else in
        the batch ends as it was, so only the culprit's own request is lost.

        Redone in order from the same start, each operation decides as it first did; only those
        after a dropped one could decide otherwise (logged if one that held money now cannot).
        """
        if self._batch is None:  # aborted already (the database is failing): nothing to redo
            return
        entries = list(self._batch)
        db = self._db
        try:
            while True:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                self._batch_rolled_back()
                db.execute("BEGIN IMMEDIATE")
                self._batch_began(db)
                self._batch = []
                for i, entry in enumerate(entries):
                    try:
                        answer = entry.op(db)
                        self._apply_buffered(db)
                    except Exception as exc:
                        del entries[i]
                        entry.fail(exc)
                        break
                    if entry.result is not _UNCHECKED and answer != entry.result:  # only after a dropped one
                        log.critical(
                            "an operation redone after a failed one decided otherwise; its caller"
                            " acts on its first answer",
                            extra={"error": f"{entry.result!r} then {answer!r}"},
                        )
                else:
                    self._batch = entries
                    return
        except sqlite3.Error as exc:  # the database itself is failing: nobody can commit
            log.critical("rebuilding the batch failed; it was rolled back", extra={"error": str(exc)})
            self._batch = entries
            self._abort(exc)

    def _flush(self) -> None:
        """Write the batch's buffered changes, commit the shared transaction, if one is open, and
        wake everyone in it."""
        if self._batch is None:
            return
        self._stop_commit_timer()
        self._write_buffered()
        if self._batch is None:  # rebuilding found the database failing
            return
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            log.critical("commit failed; the batch was rolled back", extra={"error": str(exc)})
            self._abort(exc)
            return
        entries, self._batch = self._batch, None
        for entry in entries:
            done = entry.done
            if done is not None and not done.done():
                done.set_result(None)

    def _stop_commit_timer(self) -> None:
        due = self._commit_due
        if due is not None:
            self._commit_due = None
            due.cancel()

    def _abort(self, exc: BaseException) -> None:
        """Roll the shared transaction back and fail everyone who was waiting on it."""
        self._stop_commit_timer()
        entries, self._batch = self._batch, None
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        self._batch_rolled_back()
        for entry in entries or ():
            done = entry.done
            if done is not None and not done.done():
                done.set_exception(exc if isinstance(exc, Exception) else RuntimeError("write aborted"))

    # -- maintenance ----------------------------------------------------------------------

    def checkpoint_in_background(self) -> None:
        """From now on `checkpoint` (a worker thread, often) copies WAL pages, and a commit on the
        event loop runs SQLite's automatic checkpoint (copy and sync while every request waits)
        only past `FOREGROUND_CHECKPOINT_PAGES`, not SQLite's 1,000 (at one connection, one
        commit in a hundred: the p99). It still must run now and then: SQLite starts the WAL
        over only after a checkpoint that copied all of it, which one in a thread racing this
        connection's commits may never do (its two syncs take longer than the gap between two
        commits), so without it the WAL would grow for as long as requests keep coming; in any
        pause of a few milliseconds the thread's checkpoint completes and the WAL starts over."""
        self._db.execute(f"PRAGMA wal_autocheckpoint={FOREGROUND_CHECKPOINT_PAGES}")

    def checkpoint_due(self) -> bool:
        """Whether the WAL may hold pages no checkpoint has copied: a change made through this
        connection (`total_changes`) or committed by another one (`PRAGMA data_version`) since
        the last checkpoint that ran. An idle server then costs no worker thread's turn, twenty
        times a second; a change rolled back costs one checkpoint round that copies nothing."""
        if self._db.in_transaction:  # a batch not yet committed: due again after this round
            self._checkpoint_asked = None
            return True
        seen = (self._db.total_changes, self._db.execute("PRAGMA data_version").fetchone()[0])
        if seen == self._checkpointed_at:
            return False
        self._checkpoint_asked = seen
        return True

    def checkpoint(self) -> None:
        """Copy WAL pages into the main file without blocking writers. Runs in a worker thread,
        on a connection of its own."""
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._checkpointer.execute("PRAGMA busy_timeout=1000")
        asked = self._checkpoint_asked
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._checkpointed_at = asked  # only once it ran: one that failed is due again

    def close_connection(self) -> None:
        self._flush()
        self._db.close()
        if self._checkpointer is not None:
            self._checkpointer.close()
