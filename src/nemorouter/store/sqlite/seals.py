"""The ledger's hash chain on SQLite: the sealer's side (append) and the check's side (verify).

A charge is sealed by the batch that settles it (`MoneyMirror.settle`): its digest is computed
from the values its row is written with, and linked after the chain's head, which the money
mirror keeps for the open batch. That costs the event loop ~3 µs a request and leaves nothing
behind: a sealer that found and hashed every settled row afterwards made background work in
proportion to the traffic, and that work was what the p99 at one connection waited behind.

What no settle sealed is found by a background task calling `seal_ledger` four times a second
(and once at shutdown): credits, records settled by another connection, values SQLite stores in
another type than they were given in (`outcome.sealed_digest`):

- credits are found by rowid (they are inserted once and never change);
- generations by id: ids are time-ordered (`time_ordered_id`), so new rows sort after the
  last one seen, and when a scan found fewer unsealed rows than a batch, every row up to the
  newest is sealed, so the next scan starts there. A row seen while `pending` is remembered and
  looked up by key until it is final (and, unless its settle sealed it, sealed here) or released
  (never sealed: no charge). Should the wall clock step back, new ids may sort below the last
  one seen, so until the clock is past that point again the scan also starts a margin below it.

The scan runs in a worker thread on a connection of its own, in one read transaction (committed
rows only; what one query skips as sealed is sealed in the next one's view), and reads each
query's rows packed into one JSON text. The event loop only links the digests it found into the
chain and writes them, `APPEND` at a time, as writes of the request path's shared transaction
(`_write`), through the mirror, so they and the settles' seals link in one order.

Where to resume is kept in `meta` with the last write of a round, so a restart rescans only what
may have changed (holds open at a stop are released at the next start; a round cut short by a
crash is found again, since the scan skips what is sealed).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson

from nemorouter.store.seals import (
    CREDIT_FIELDS,
    GENERATION_FIELDS,
    KINDS,
    UNCHARGED,
    Seal,
    check_chain,
    digest,
)
from nemorouter.store.sqlite.conn import SqliteConnection
from nemorouter.store.sqlite.money_mirror import MoneyMirror

# Entries per kind a scan finds at most; a round that found as many is followed at once by the
# next (service/jobs/background.py).
BATCH = 256
# Seals per write on the event loop (~3 µs each: the link and the INSERT): bounds the pause a
# request can wait behind to a fraction of a millisecond.
APPEND = 64
# Digests hashed in the thread between two releases of the GIL (hashing holds it): the event loop
# never waits on the sealer for more than a few tens of microseconds.
_HASHED_PER_TURN = 16
_MARGIN_NS = 2_000_000_000  # more than the sealer's period: how far below the clock to look after a step back
_META_CREDITS = "seal_credits_rowid"
_META_GENERATIONS = "seal_generations_from"
_CREDIT_COLUMNS = ", ".join(CREDIT_FIELDS)
_GENERATION_COLUMNS = ", ".join(GENERATION_FIELDS)
_STATUS = GENERATION_FIELDS.index("status")
_UNSEALED = "NOT EXISTS (SELECT 1 FROM ledger_seals s WHERE s.kind = ? AND s.row_id = {}.id)"

Found = tuple[str, str, str]  # (kind, row id, digest): an entry to seal, hashed


def _gen_id_at(ns: int) -> str:
    """The smallest generation id created at wall-clock `ns` (see `time_ordered_id`)."""
    return f"gen-{max(ns, 0):016x}"


@dataclass(slots=True)
class _Cursor:
    credit_rowid: int
    generations_from: str  # inclusive: where the first scan after a start begins
    after: str | None = None  # exclusive: the largest generation id seen since the start
    pending: set[str] = field(default_factory=set)
    last_ns: int = 0
    stepped_until: int = 0  # while the clock is below this (plus a margin) it stepped back

    def resume(self) -> list[tuple[str, str]]:
        """The `meta` rows a restart resumes from."""
        generations = min([*self.pending, self.after or self.generations_from])
        return [(_META_CREDITS, str(self.credit_rowid)), (_META_GENERATIONS, generations)]


def _rows(db: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Plain tuples (a digest reads every field: by position is several times faster)."""
    cur = db.cursor()
    cur.row_factory = None
    return cur.execute(sql, params).fetchall()


def _packed(db: sqlite3.Connection, sql: str, columns: str, params: Sequence[Any]) -> list[list[Any]]:
    """The rows of `sql` (which selects `columns`), read in one step as one JSON array. Read row by
    row, this thread takes the GIL back after every row, and the event loop's thread then waits
    for it: hundreds of hand-offs a round. Packed, the whole query runs while the GIL is let go.
    Exact: no column of these tables is REAL or BLOB (JSON would round the one, refuse the other);
    integers, text and NULL come back as the row's own values."""
    try:
        (text,) = db.execute(
            f"SELECT json_group_array(json_array({columns})) FROM ({sql})", params
        ).fetchone()
        rows: list[list[Any]] = orjson.loads(text)
    except (sqlite3.OperationalError, orjson.JSONDecodeError):  # an SQLite without JSON: row by row
        return [list(row) for row in _rows(db, sql, params)]
    return rows


def _load_cursor(db: sqlite3.Connection) -> _Cursor:
    found = dict(
        _rows(db, "SELECT key, value FROM meta WHERE key IN (?, ?)", (_META_CREDITS, _META_GENERATIONS))
    )
    return _Cursor(int(found.get(_META_CREDITS, 0)), str(found.get(_META_GENERATIONS, "")))


def _scan(db: sqlite3.Connection, cursor: _Cursor | None, now_ns: int) -> tuple[_Cursor, list[Found]]:
    """The final entries not sealed yet, hashed, and the cursor moved past them."""
    db.execute("BEGIN")  # one snapshot: what a query skipped as sealed is sealed in the next one's
    try:
        cursor = cursor or _load_cursor(db)
        entries = _unsealed(db, cursor, now_ns)
    finally:
        db.execute("COMMIT")
    found: list[Found] = []
    for i, (kind, values) in enumerate(entries):
        if i % _HASHED_PER_TURN == _HASHED_PER_TURN - 1:
            time.sleep(0)  # let the event loop's thread have the GIL
        found.append((kind, str(values[0]), digest(kind, values)))
    return cursor, found


def _unsealed(db: sqlite3.Connection, cursor: _Cursor, now_ns: int) -> list[tuple[str, Sequence[Any]]]:
    credits = _packed(
        db,
        f"SELECT {_CREDIT_COLUMNS}, rowid AS row_number FROM credits c WHERE rowid > ?"
        f" AND {_UNSEALED.format('c')} ORDER BY rowid LIMIT ?",
        f"{_CREDIT_COLUMNS}, row_number",
        (cursor.credit_rowid, "credit", BATCH),
    )
    entries: list[tuple[str, Sequence[Any]]] = [("credit", row[:-1]) for row in credits]
    if credits:
        cursor.credit_rowid = max(cursor.credit_rowid, *(row[-1] for row in credits))
    entries += _new_generations(db, cursor, now_ns)
    entries += _settled_generations(db, cursor)
    return entries


def _new_generations(db: sqlite3.Connection, cursor: _Cursor, now_ns: int) -> list[tuple[str, Sequence[Any]]]:
    if now_ns < cursor.last_ns:
        cursor.stepped_until = max(cursor.stepped_until, cursor.last_ns)
    cursor.last_ns = max(cursor.last_ns, now_ns)
    if cursor.after is None:
        bound, op = cursor.generations_from, ">="
    else:
        bound, op = cursor.after, ">"
        if now_ns <= cursor.stepped_until + _MARGIN_NS:
            bound = min(bound, _gen_id_at(now_ns - _MARGIN_NS))
    found = _packed(
        db,
        f"SELECT {_GENERATION_COLUMNS} FROM generations g WHERE id {op} ? AND {_UNSEALED.format('g')}"
        " ORDER BY id LIMIT ?",
        _GENERATION_COLUMNS,
        (bound, "generation", BATCH),
    )
    out: list[tuple[str, Sequence[Any]]] = []
    for row in found:
        if row[_STATUS] == "pending":
            cursor.pending.add(row[0])
        elif row[_STATUS] not in UNCHARGED:
            cursor.pending.discard(row[0])
            out.append(("generation", row))
    if found:
        cursor.after = max(cursor.after or "", *(row[0] for row in found))
    if len(found) < BATCH:  # every unsealed row is in `found`: the rest, up to the newest, are sealed
        (newest,) = db.execute("SELECT max(id) FROM generations").fetchone()
        if newest is not None:
            cursor.after = max(cursor.after or "", newest)
    return out


def _settled_generations(db: sqlite3.Connection, cursor: _Cursor) -> list[tuple[str, Sequence[Any]]]:
    """The remembered pending rows that are final now. Thousands of long streams stay pending
    for their whole length: only their ids are read again each round, not their rows."""
    out: list[tuple[str, Sequence[Any]]] = []
    waiting = list(cursor.pending)
    for start in range(0, len(waiting), 500):
        chunk = waiting[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        pending = f"SELECT id FROM generations WHERE id IN ({marks}) AND status = 'pending'"
        still = {row[0] for row in _packed(db, pending, "id", chunk)}
        if len(still) == len(chunk):
            continue
        ended = [gen_id for gen_id in chunk if gen_id not in still]
        marks = ", ".join("?" * len(ended))
        sql = (
            f"SELECT {_GENERATION_COLUMNS} FROM generations g WHERE id IN ({marks})"
            f" AND {_UNSEALED.format('g')}"  # most were sealed by their settle (`MoneyMirror.settle`)
        )
        found = {row[0]: row for row in _packed(db, sql, _GENERATION_COLUMNS, [*ended, "generation"])}
        for gen_id in ended:
            cursor.pending.discard(gen_id)  # final, or gone: never sealed
            row = found.get(gen_id)
            if row is not None and row[_STATUS] not in UNCHARGED:
                out.append(("generation", row))
    return out


class SqliteSeals(SqliteConnection):
    # Seconds between rounds (store/roles.py): a settled entry is tamper-evident within about this.
    seal_every = 0.25
    seal_batch = BATCH

    _seal_cursor: _Cursor | None = None
    _sealing: asyncio.Lock | None = None
    _scanner: sqlite3.Connection | None = None  # the thread's own connection (see the docstring)
    _scanner_lock: threading.Lock | None = None  # a round cut off (shutdown) may leave its thread running
    _resume_written: list[tuple[str, str]] | None = None
    _mirror: MoneyMirror  # the money path's (sqlite.money): it links every seal, in one order

    async def seal_ledger(self, now_ns: int | None = None) -> int:
        """Append a seal for every final ledger entry not sealed yet; returns how many."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        sealing = self._sealing = self._sealing or asyncio.Lock()
        self._scanner_lock = self._scanner_lock or threading.Lock()
        async with sealing:
            self._flush()  # what this process wrote so far is committed: the scan sees it
            try:
                if self.path == ":memory:":  # a second connection would open another database
                    cursor, found = _scan(self._db, self._seal_cursor, now_ns)
                else:
                    cursor, found = await asyncio.to_thread(self._scan_aside, self._seal_cursor, now_ns)
                self._seal_cursor = cursor
                resume = cursor.resume()
                slices = [found[start : start + APPEND] for start in range(0, len(found), APPEND)]
                if not slices and resume != self._resume_written:
                    slices = [[]]  # nothing to seal, but the scan moved on: keep where to resume
                for i, chunk in enumerate(slices):
                    last = i == len(slices) - 1
                    await self._write(partial(self._append, chunk, resume if last else None))
                self._resume_written = resume
            except BaseException:
                self._seal_cursor = self._resume_written = None  # start again from what was committed
                raise
        return len(found)

    def _append(
        self, found: Sequence[Found], resume: list[tuple[str, str]] | None, db: sqlite3.Connection
    ) -> None:
        """Seal `found` and (with the round's last write) keep where to resume: one operation of
        the shared transaction."""
        for kind, row_id, entry in found:  # linked by the mirror, which holds the chain's head:
            self._mirror.seal(db, kind, row_id, entry)  # the batch's settles seal as they close holds
        if resume:
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", resume)

    def _scan_aside(self, cursor: _Cursor | None, now_ns: int) -> tuple[_Cursor, list[Found]]:
        assert self._scanner_lock is not None
        with self._scanner_lock:
            if self._scanner is None:
                self._scanner = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                self._scanner.execute("PRAGMA busy_timeout=10000")
            return _scan(self._scanner, cursor, now_ns)

    def close_connection(self) -> None:
        super().close_connection()
        if self._scanner_lock is not None:
            with self._scanner_lock:
                if self._scanner is not None:
                    self._scanner.close()
                    self._scanner = None


def seal_problems(db: sqlite3.Connection) -> list[str]:
    """Every sealed entry that was changed, removed or reordered since, by kind and id."""
    cur = db.cursor()
    cur.row_factory = None
    found = cur.execute(
        "SELECT s.seq, s.kind, s.row_id, s.digest, s.chain, "
        + ", ".join(f"c.{name}" for name in CREDIT_FIELDS)
        + ", "
        + ", ".join(f"g.{name}" for name in GENERATION_FIELDS)
        + " FROM ledger_seals s"
        " LEFT JOIN credits c ON s.kind = 'credit' AND c.id = s.row_id"
        " LEFT JOIN generations g ON s.kind = 'generation' AND g.id = s.row_id"
        " ORDER BY s.seq"
    )
    credit_end = 5 + len(CREDIT_FIELDS)

    def pairs() -> Iterator[tuple[Seal, str | None]]:
        for row in found:
            seal = Seal(*row[:5])
            values = row[5:credit_end] if seal.kind == "credit" else row[credit_end:]
            current = digest(seal.kind, values) if seal.kind in KINDS and values[0] is not None else None
            yield seal, current

    return check_chain(pairs())
