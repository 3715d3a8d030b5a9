"""The ledger's hash chain on SQLite: the sealer's side (append) and the check's side (verify).

Sealing never runs on the request path. A background task calls `seal_ledger` about twice a
second (and once at shutdown); it finds the entries that became final since the last call
and appends their seals in one short transaction of its own:

- credits are found by rowid (they are inserted once and never change);
- generations by id: ids are time-ordered (`time_ordered_id`), so new rows sort after the
  last one seen. A row seen while `pending` is remembered and looked up by key until it is
  settled (sealed) or released (never sealed: no charge). Should the wall clock step back,
  new ids may sort below the last one seen, so until the clock is past that point again the
  scan also starts a margin below the clock.

Where to resume is kept in `meta` with each batch of seals, so a restart rescans only what
may have changed (holds open at a stop are released at the next start).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from nemorouter.store.seals import (
    CREDIT_FIELDS,
    GENERATION_FIELDS,
    GENESIS,
    KINDS,
    UNCHARGED,
    Seal,
    chain_rows,
    check_chain,
    digest,
)
from nemorouter.store.sqlite.conn import SqliteConnection
from nemorouter.timeutil import iso, utcnow

# Entries per kind per call, the rest in the next round, which then starts at once (after the
# requests waiting have had their turn: service/jobs/background.py): bounds one pause of the event
# loop (sealing runs on it, ~10 µs an entry) to a few milliseconds at any request rate.
BATCH = 256
_MARGIN_NS = 2_000_000_000  # more than the sealer's period: how far below the clock to look after a step back
_META_CREDITS = "seal_credits_rowid"
_META_GENERATIONS = "seal_generations_from"
_CREDIT_COLUMNS = ", ".join(CREDIT_FIELDS)
_GENERATION_COLUMNS = ", ".join(GENERATION_FIELDS)
_STATUS = GENERATION_FIELDS.index("status")
_UNSEALED = "NOT EXISTS (SELECT 1 FROM ledger_seals s WHERE s.kind = ? AND s.row_id = {}.id)"


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


class SqliteSeals(SqliteConnection):
    # Seconds between rounds (store/roles.py). Each round pauses the event loop, and at one request
    # at a time every pause delays one request: four rounds a second touch ~0.2 % of 2,000 requests
    # a second (the p99 stays clear of them); twenty, as before, 1 % (they were the p99).
    seal_every = 0.25
    seal_batch = BATCH

    _seal_cursor: _Cursor | None = None

    def _load_seal_cursor(self) -> _Cursor:
        found: dict[str, str] = {
            r[0]: r[1]
            for r in self._all(
                "SELECT key, value FROM meta WHERE key IN (?, ?)", (_META_CREDITS, _META_GENERATIONS)
            )
        }
        return _Cursor(int(found.get(_META_CREDITS, 0)), str(found.get(_META_GENERATIONS, "")))

    async def seal_ledger(self, now_ns: int | None = None) -> int:
        """Append a seal for every final ledger entry not sealed yet; returns how many."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        self._flush()  # read only committed rows: never seal a row a failed commit takes back
        cursor = self._seal_cursor or self._load_seal_cursor()
        self._seal_cursor = cursor
        try:
            return self._seal(cursor, now_ns)
        except BaseException:
            self._seal_cursor = None  # start again from what was committed
            raise

    def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Plain tuples (a digest reads every field: by position is several times faster)."""
        cur = self._db.cursor()
        cur.row_factory = None
        return cur.execute(sql, params).fetchall()

    def _seal(self, cursor: _Cursor, now_ns: int) -> int:
        credits = self._rows(
            f"SELECT {_CREDIT_COLUMNS}, rowid FROM credits c WHERE rowid > ? AND {_UNSEALED.format('c')}"
            " ORDER BY rowid LIMIT ?",
            (cursor.credit_rowid, "credit", BATCH),
        )
        entries: list[tuple[str, Sequence[Any]]] = [("credit", row[:-1]) for row in credits]
        if credits:
            cursor.credit_rowid = max(cursor.credit_rowid, credits[-1][-1])
        entries += self._new_generations(cursor, now_ns)
        entries += self._settled_generations(cursor)
        if entries:
            self._append_seals(cursor, entries)
        return len(entries)

    def _new_generations(self, cursor: _Cursor, now_ns: int) -> list[tuple[str, Sequence[Any]]]:
        if now_ns < cursor.last_ns:
            cursor.stepped_until = max(cursor.stepped_until, cursor.last_ns)
        cursor.last_ns = max(cursor.last_ns, now_ns)
        if cursor.after is None:
            bound, op = cursor.generations_from, ">="
        else:
            bound, op = cursor.after, ">"
            if now_ns <= cursor.stepped_until + _MARGIN_NS:
                bound = min(bound, _gen_id_at(now_ns - _MARGIN_NS))
        found = self._rows(
            f"SELECT {_GENERATION_COLUMNS} FROM generations g WHERE id {op} ? AND {_UNSEALED.format('g')}"
            " ORDER BY id LIMIT ?",
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
            cursor.after = max(cursor.after or "", found[-1][0])
        return out

    def _settled_generations(self, cursor: _Cursor) -> list[tuple[str, Sequence[Any]]]:
        out: list[tuple[str, Sequence[Any]]] = []
        waiting = list(cursor.pending)
        for start in range(0, len(waiting), 500):
            chunk = waiting[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT {_GENERATION_COLUMNS} FROM generations WHERE id IN ({marks})"
            found = {row[0]: row for row in self._rows(sql, chunk)}
            for gen_id in chunk:
                row = found.get(gen_id)
                if row is not None and row[_STATUS] == "pending":
                    continue
                cursor.pending.discard(gen_id)
                if row is not None and row[_STATUS] not in UNCHARGED:
                    out.append(("generation", row))
        return out

    def _append_seals(self, cursor: _Cursor, entries: list[tuple[str, Sequence[Any]]]) -> None:
        resume = min([*cursor.pending, cursor.after or cursor.generations_from])
        with self._tx() as db:
            last = db.execute("SELECT seq, chain FROM ledger_seals ORDER BY seq DESC LIMIT 1").fetchone()
            seq, chain = (last[0], last[1]) if last else (0, GENESIS)
            now = iso(utcnow())
            db.executemany(
                f"INSERT INTO ledger_seals (seq, kind, row_id, digest, chain, sealed_at) VALUES (?, ?, ?, ?, ?, '{now}')",
                chain_rows(chain, entries, seq + 1),
            )
            db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [(_META_CREDITS, str(cursor.credit_rowid)), (_META_GENERATIONS, resume)],
            )


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
