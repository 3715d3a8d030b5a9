"""The hard cap on SQLite: reserve, settle and release, decided under the write lock.

A batch (one event-loop iteration's writes, `sqlite.conn`) holds SQLite's write lock from its
`BEGIN IMMEDIATE` to its `COMMIT`, so while it is open nothing else can change the database.
The money counters of the keys and accounts in use (held, usage, window, credits, state) are
mirrored in memory and are exact there: they are loaded inside a batch, kept up to date by this
connection's own changes, and forgotten whenever another connection has committed since
(`PRAGMA data_version`, checked as each batch opens), a plain transaction of this process ran,
or a batch was rolled back. Reserve, settle and release therefore decide in memory, under the
lock, exactly as the conditional updates they replace did, and write their effect in the same
batch: a hold's pending row at once (a duplicate request id is refused on the spot), each
completed row and the counters' sums once per batch, before its COMMIT. Per request that is
one INSERT and one UPDATE of its own record; the counters of a busy key are written once per
batch, not twice per request. The mirror and the decisions are `sqlite.money_mirror`'s (compiled);
this class feeds it the batch's events and settles by its record what the mirror does not know.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from nemorouter.store import rows
from nemorouter.store.base import StoreError
from nemorouter.store.money_values import check_columns, check_generation, check_total
from nemorouter.store.records import Generation, Hold, ReserveResult
from nemorouter.store.sqlite.conn import SqliteConnection
from nemorouter.store.sqlite.money_mirror import ACCOUNT_CHANGED, KEY_CHARGED, KEY_HELD, MoneyMirror
from nemorouter.store.sqlite.outcome import COMPLETE, outcome_row


class SqliteMoney(SqliteConnection):
    """The connection's side of the money path: the batch hooks feed the mirror (`sqlite.money_mirror`,
    compiled), which decides; what the mirror does not know is settled by its record here."""

    _mirror: MoneyMirror

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._mirror = MoneyMirror()

    # -- the mirror -------------------------------------------------------------------------

    def _batch_began(self, db: sqlite3.Connection) -> None:
        self._mirror.batch_began(db)

    def _changed_outside_batch(self) -> None:
        self._mirror.forget()

    def _batch_rolled_back(self) -> None:
        self._mirror.rolled_back()

    def _apply_buffered(self, db: sqlite3.Connection) -> None:
        self._mirror.apply_buffered(db)

    # -- the hard cap -----------------------------------------------------------------------

    async def reserve(self, hold: Hold, now: str) -> ReserveResult:
        """Hold `hold.amount` against the key's window limit and the account's balance, atomically,
        checking in the same step that the key is live. Not awaited to durability: the hold
        binds every later operation at once, and a hold lost in a crash is one the next start
        would have released anyway."""
        mirror = self._mirror
        result, _ = self._batched(self._running_loop(), lambda db: mirror.reserve(db, hold, now))
        return result

    async def settle(self, request_id: str, generation: Generation, window: str) -> bool:
        """Replace the hold with the exact charge and complete the record; once per request.

        `generation.hold` is the amount that was reserved for `request_id`. A record SQL cannot
        hold, or a charge past the range of a total, is refused (StoreError) and changes nothing.
        """
        mirror = self._mirror

        def op(db: sqlite3.Connection) -> bool:
            return mirror.settle(db, request_id, generation, window) or self._settle_by_record(
                db, generation, window
            )

        loop = self._running_loop()
        settled, entry = self._batched(loop, op)
        # Every request in flight holds from before it is sent until it settles or releases: with
        # no hold open, no other charge could join this batch, so it commits now.
        await self._committed(loop, entry, at_once=not mirror.open)
        return settled

    def _settle_by_record(self, db: sqlite3.Connection, generation: Generation, window: str) -> bool:
        """A hold this connection did not make (or already closed): settle it by its record."""
        row = outcome_row(generation)
        check_generation(generation)
        self._owed_rows_written()  # what memory owes the rows, before their mirrors are dropped
        found = db.execute(
            "SELECT a.total_usage, k.usage FROM accounts a, api_keys k WHERE a.id = ? AND k.id = ?",
            (generation.account_id, generation.key_id),
        ).fetchone()
        if found is not None:
            check_total(generation.id, "account's usage", found[0], generation.cost)
            check_total(generation.id, "key's usage", found[1], generation.cost)
        if not db.execute(COMPLETE, row).rowcount:
            return False  # settled or released already
        held, cost = generation.hold, generation.cost
        db.execute(ACCOUNT_CHANGED, (-held, cost, generation.account_id))
        db.execute(KEY_CHARGED, (-held, cost, window, generation.key_id))
        self._mirror.forget_rows(generation.key_id, generation.account_id)
        return True

    def _owed_rows_written(self) -> None:
        """Write what the batch buffered before a statement reads the rows it owes; a failure
        there is another operation's, whose request alone is dropped (`_write_buffered`)."""
        self._write_buffered()
        if self._batch is None:
            raise StoreError("the database is failing: the batch was rolled back")

    async def release(self, request_id: str, generation: Generation | None) -> bool:
        """Drop a hold without charge (the request failed before output); once per request.

        `generation`, when given, carries the failure's details (its cost must be 0).
        """
        mirror = self._mirror

        def op(db: sqlite3.Connection) -> bool:
            return mirror.release(db, request_id, generation) or self._release_by_record(
                db, request_id, generation
            )

        released, _ = self._batched(self._running_loop(), op)
        return released

    def _release_by_record(
        self, db: sqlite3.Connection, request_id: str, generation: Generation | None
    ) -> bool:
        row = None
        if generation is not None:
            row = outcome_row(generation)
            check_generation(generation)
            check_columns(request_id, row)
        self._owed_rows_written()
        found = db.execute(
            "SELECT hold, account_id, key_id FROM generations WHERE id = ? AND status = 'pending'",
            (request_id,),
        ).fetchone()
        if found is None:
            return False
        if row is not None:
            db.execute(COMPLETE, row)
        else:
            db.execute("UPDATE generations SET status = 'error' WHERE id = ?", (request_id,))
        db.execute(ACCOUNT_CHANGED, (-found[0], 0, found[1]))
        db.execute(KEY_HELD, (-found[0], found[2]))
        self._mirror.forget_rows(found[2], found[1])
        return True

    async def recover_holds(self, owner: str | None) -> list[Hold]:
        """Release holds left by dead processes (all of them when `owner` is None); their records
        stay, marked `orphaned`, for reconciliation."""
        where, params = ("", ()) if owner is None else ("owner = ?", (owner,))
        with self._tx() as db:
            found = orphan_holds(db, where, params)
        self._holds_released(found)
        return found

    def _holds_released(self, holds: Sequence[Hold]) -> None:
        self._mirror.released([h.request_id for h in holds])

    async def open_holds(self) -> list[Hold]:
        # Sorted here: ORDER BY id would make SQLite walk the whole table instead of the index.
        found = [rows.hold(r) for r in self._all("SELECT * FROM generations WHERE status = 'pending'")]
        return sorted(found, key=lambda h: h.request_id)

    async def key_spend_since(self, key_id: str, since: str) -> int:
        total = 0
        for (cost,) in self._read(
            "SELECT cost FROM generations WHERE key_id = ? AND created_at >= ? AND cost > 0", (key_id, since)
        ):
            total += cost
        return total


def orphan_holds(db: sqlite3.Connection, where: str, params: tuple[object, ...]) -> list[Hold]:
    """Inside a transaction: release the open holds matching `where` (every one when empty),
    marking their records `orphaned`. The one way holds of a dead process are given back."""
    sql = "SELECT * FROM generations WHERE status = 'pending'" + (f" AND {where}" if where else "")
    found = [rows.hold(r) for r in db.execute(sql, params).fetchall()]
    for h in found:
        db.execute("UPDATE generations SET status = 'orphaned' WHERE id = ?", (h.request_id,))
        db.execute("UPDATE accounts SET held = held - ? WHERE id = ?", (h.amount, h.account_id))
        db.execute("UPDATE api_keys SET held = held - ? WHERE id = ?", (h.amount, h.key_id))
    return found
