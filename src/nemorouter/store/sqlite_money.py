"""The hard cap on SQLite: reserve, settle and release as conditional updates in one transaction."""

from __future__ import annotations

import operator
import sqlite3
from collections import defaultdict

from nemorouter.store import rows
from nemorouter.store.base import StoreError
from nemorouter.store.ledger import LedgerSums, check
from nemorouter.store.records import Generation, Hold, LedgerReport, ReserveResult
from nemorouter.store.sqlite_conn import Refused, SqliteConnection
from nemorouter.store.sqlite_seals import seal_problems
from nemorouter.timeutil import utcnow

# Everything a settle or release fills in on the pending row.
_OUTCOME_COLUMNS = [
    c for c in rows.GENERATION_COLUMNS if c not in ("id", "account_id", "key_id", "created_at")
]
_COMPLETE = f"UPDATE generations SET {', '.join(f'{c} = ?' for c in _OUTCOME_COLUMNS)} WHERE id = ? AND status = 'pending'"


_OPEN_HOLD = (
    "INSERT INTO generations (id, account_id, key_id, model, endpoint, streamed, status, hold, owner, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)"
)


def _hold_row(hold: Hold) -> tuple[object, ...]:
    return (
        hold.request_id,
        hold.account_id,
        hold.key_id,
        hold.model,
        hold.endpoint,
        int(hold.streamed),
        hold.amount,
        hold.owner,
        hold.created_at,
    )


_OUTCOME_VALUES = operator.attrgetter(*_OUTCOME_COLUMNS, "id")


def _outcome(generation: Generation) -> tuple[object, ...]:
    values: tuple[object, ...] = _OUTCOME_VALUES(generation)
    return values


class _Refused(Refused):
    """A conditional update matched nothing (partial work undone)."""


class SqliteMoney(SqliteConnection):
    async def reserve(self, hold: Hold, now: str) -> ReserveResult:
        """Hold `hold.amount` against the key's window limit and the account's balance, atomically,
        checking in the same step that the key is live."""

        def op(db: sqlite3.Connection) -> None:
            amount = hold.amount
            if not db.execute(
                "UPDATE api_keys SET held = held + ?1 WHERE id = ?2 AND revoked_at IS NULL AND disabled = 0"
                " AND (expires_at IS NULL OR expires_at > ?3) AND (limit_pico IS NULL OR"
                " (CASE WHEN window_start = ?4 THEN window_usage ELSE 0 END) + held + ?1 <= limit_pico)",
                (amount, hold.key_id, now, hold.window),
            ).rowcount:
                raise _Refused("key")
            undo_key = ("UPDATE api_keys SET held = held - ? WHERE id = ?", (amount, hold.key_id))
            if not db.execute(
                "UPDATE accounts SET held = held + ?1 WHERE id = ?2 AND total_credits - total_usage - held >= ?1",
                (amount, hold.account_id),
            ).rowcount:
                db.execute(*undo_key)
                raise _Refused("account")
            try:
                db.execute(_OPEN_HOLD, _hold_row(hold))
            except sqlite3.IntegrityError:
                db.execute(*undo_key)
                db.execute("UPDATE accounts SET held = held - ? WHERE id = ?", (amount, hold.account_id))
                raise _Refused("duplicate") from None

        try:
            # Not awaited to durability: the hold binds every later operation at once, and a
            # hold lost in a crash is one the next start would have released anyway.
            await self._write(op, durable=False)
        except _Refused as refused:
            if str(refused) == "duplicate":
                raise StoreError(f"request {hold.request_id} already has a record") from None
            return self._why_refused(hold, now, str(refused))
        return ReserveResult("ok")

    def _why_refused(self, hold: Hold, now: str, what: str) -> ReserveResult:
        if what == "account":
            row = self._one("SELECT * FROM accounts WHERE id = ?", (hold.account_id,))
            acct = rows.account(row) if row else None
            return ReserveResult("insufficient_credits", max(0, acct.balance - acct.held) if acct else 0)
        row = self._one("SELECT * FROM api_keys WHERE id = ?", (hold.key_id,))
        if row is None:
            return ReserveResult("key_missing")
        key = rows.api_key(row)
        if key.revoked_at is not None:
            return ReserveResult("key_revoked")
        if key.disabled:
            return ReserveResult("key_disabled")
        if key.expires_at is not None and key.expires_at <= now:
            return ReserveResult("key_expired")
        assert key.limit is not None
        return ReserveResult(
            "key_limit_exceeded", max(0, key.limit - key.usage_in_window(hold.window) - key.held)
        )

    async def settle(self, request_id: str, generation: Generation, window: str) -> bool:
        """Replace the hold with the exact charge and complete the record; once per request.

        `generation.hold` is the amount that was reserved for `request_id`.
        """

        def op(db: sqlite3.Connection) -> bool:
            if not db.execute(_COMPLETE, _outcome(generation)).rowcount:
                return False  # settled or released already
            held, cost = generation.hold, generation.cost
            db.execute(
                "UPDATE accounts SET held = held - ?, total_usage = total_usage + ? WHERE id = ?",
                (held, cost, generation.account_id),
            )
            db.execute(
                "UPDATE api_keys SET held = held - ?1, usage = usage + ?2,"
                " window_usage = (CASE WHEN window_start = ?3 THEN window_usage ELSE 0 END) + ?2,"
                " window_start = ?3 WHERE id = ?4",
                (held, cost, window, generation.key_id),
            )
            return True

        return await self._write(op)

    async def release(self, request_id: str, generation: Generation | None) -> bool:
        """Drop a hold without charge (the request failed before output); once per request.

        `generation`, when given, carries the failure's details (its cost must be 0).
        """

        def op(db: sqlite3.Connection) -> bool:
            found = db.execute(
                "SELECT hold, account_id, key_id FROM generations WHERE id = ? AND status = 'pending'",
                (request_id,),
            ).fetchone()
            if found is None:
                return False
            if generation is not None:
                db.execute(_COMPLETE, _outcome(generation))
            else:
                db.execute("UPDATE generations SET status = 'error' WHERE id = ?", (request_id,))
            db.execute("UPDATE accounts SET held = held - ? WHERE id = ?", (found[0], found[1]))
            db.execute("UPDATE api_keys SET held = held - ? WHERE id = ?", (found[0], found[2]))
            return True

        return await self._write(op, durable=False)

    async def recover_holds(self, owner: str | None) -> list[Hold]:
        """Release holds left by dead processes (all of them when `owner` is None); their records
        stay, marked `orphaned`, for reconciliation."""
        with self._tx() as db:
            if owner is None:
                return orphan_holds(db, "", ())
            return orphan_holds(db, "owner = ?", (owner,))

    async def open_holds(self) -> list[Hold]:
        return [
            rows.hold(r) for r in self._all("SELECT * FROM generations WHERE status = 'pending' ORDER BY id")
        ]

    async def key_spend_since(self, key_id: str, since: str) -> int:
        total = 0
        for (cost,) in self._db.execute(
            "SELECT cost FROM generations WHERE key_id = ? AND created_at >= ? AND cost > 0", (key_id, since)
        ):
            total += cost
        return total

    async def verify_ledger(self) -> LedgerReport:
        with self._tx() as db:  # one consistent snapshot
            accounts = [rows.account(r) for r in db.execute("SELECT * FROM accounts")]
            keys = [rows.api_key(r) for r in db.execute("SELECT * FROM api_keys")]
            credits: dict[str, int] = defaultdict(int)
            for acct, amount in db.execute("SELECT account_id, amount FROM credits"):
                credits[acct] += amount
            charges: dict[str, int] = defaultdict(int)
            key_charges: dict[str, int] = defaultdict(int)
            failed_charged, overruns = [], 0
            holds_acct: dict[str, int] = defaultdict(int)
            holds_key: dict[str, int] = defaultdict(int)
            for gid, acct, kid, cost, hold, status in db.execute(
                "SELECT id, account_id, key_id, cost, hold, status FROM generations"
            ):
                if status == "pending":
                    holds_acct[acct] += hold
                    holds_key[kid] += hold
                    continue
                charges[acct] += cost
                key_charges[kid] += cost
                overruns += cost > hold
                if status in ("error", "orphaned") and cost:
                    failed_charged.append(gid)
            sealed = seal_problems(db)  # entries changed, removed or reordered since they were sealed
        sums = LedgerSums(
            accounts, keys, credits, charges, holds_acct, holds_key, key_charges, failed_charged, overruns
        )
        report = check(sums, utcnow())
        return LedgerReport(report.problems + sealed, report.overruns)


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
