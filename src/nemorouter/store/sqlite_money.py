"""The hard cap on SQLite: reserve, settle and release, decided under the write lock.

A batch (one event-loop iteration's writes, `sqlite_conn`) holds SQLite's write lock from its
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
batch, not twice per request.
"""

from __future__ import annotations

import asyncio
import operator
import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from nemorouter.store import rows
from nemorouter.store.base import StoreError
from nemorouter.store.ledger import LedgerSums, check
from nemorouter.store.records import Generation, Hold, LedgerReport, ReserveResult
from nemorouter.store.sqlite_conn import SqliteConnection
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
_KEY_MONEY = (
    "SELECT limit_pico, window_start, window_usage, held, revoked_at, disabled, expires_at"
    " FROM api_keys WHERE id = ?"
)
_ACCOUNT_MONEY = "SELECT total_credits - total_usage - held FROM accounts WHERE id = ?"
_KEY_HELD = "UPDATE api_keys SET held = held + ? WHERE id = ?"
_KEY_CHARGED = (
    "UPDATE api_keys SET held = held + ?1, usage = usage + ?2,"
    " window_usage = (CASE WHEN window_start = ?3 THEN window_usage ELSE 0 END) + ?2,"
    " window_start = ?3 WHERE id = ?4"
)
_ACCOUNT_CHANGED = "UPDATE accounts SET held = held + ?, total_usage = total_usage + ? WHERE id = ?"


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


@dataclass(slots=True)
class _KeyMoney:
    """A key's row as far as money goes, and what this batch changed in it."""

    limit: int | None
    window_start: str
    window_usage: int
    held: int
    revoked: bool
    disabled: bool
    expires_at: str | None
    held_change: int = 0
    # Charges not written yet, in order, as (window, sum) runs (a window rolls over rarely).
    charges: list[tuple[str, int]] = field(default_factory=list)

    def refusal(self, now: str) -> str | None:
        if self.revoked:
            return "key_revoked"
        if self.disabled:
            return "key_disabled"
        if self.expires_at is not None and self.expires_at <= now:
            return "key_expired"
        return None

    def room(self, window: str) -> int | None:
        """What the limit still affords in `window` (None: no limit)."""
        if self.limit is None:
            return None
        return self.limit - (self.window_usage if self.window_start == window else 0) - self.held

    def charge(self, window: str, cost: int) -> None:
        self.window_usage = (self.window_usage if self.window_start == window else 0) + cost
        self.window_start = window
        if self.charges and self.charges[-1][0] == window:
            self.charges[-1] = (window, self.charges[-1][1] + cost)
        else:
            self.charges.append((window, cost))


@dataclass(slots=True)
class _AccountMoney:
    available: int  # credits - usage - held
    held_change: int = 0
    usage_change: int = 0


@dataclass(frozen=True, slots=True)
class _Open:
    account_id: str
    key_id: str
    amount: int


class SqliteMoney(SqliteConnection):
    _keys: dict[str, _KeyMoney | None]
    _accounts: dict[str, _AccountMoney | None]
    _open: dict[str, _Open]  # this connection's holds
    _opened_in_batch: list[str]
    _completions: list[tuple[object, ...]]
    _dirty_keys: set[str]
    _dirty_accounts: set[str]
    _data_version: int | None

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._keys, self._accounts, self._open = {}, {}, {}
        self._opened_in_batch, self._completions = [], []
        self._dirty_keys, self._dirty_accounts = set(), set()
        self._data_version = None

    # -- the mirror -------------------------------------------------------------------------

    def _batch_began(self, db: sqlite3.Connection) -> None:
        self._opened_in_batch.clear()  # the batch before committed (or was rolled back)
        version = db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:  # another connection committed: reload what we use
            self._data_version = version
            self._keys.clear()
            self._accounts.clear()
            self._drop_holds_closed_elsewhere(db)

    def _drop_holds_closed_elsewhere(self, db: sqlite3.Connection) -> None:
        """Forget holds whose record another process has closed (its recovery orphaned them):
        settling them here would charge and release a second time."""
        mine = list(self._open)
        for start in range(0, len(mine), 500):
            chunk = mine[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            pending = {
                row[0]
                for row in db.execute(
                    f"SELECT id FROM generations WHERE status = 'pending' AND id IN ({marks})", chunk
                )
            }
            for request_id in chunk:
                if request_id not in pending:
                    del self._open[request_id]

    def _changed_outside_batch(self) -> None:
        self._keys.clear()
        self._accounts.clear()

    def _batch_rolled_back(self) -> None:
        for request_id in self._opened_in_batch:  # their pending rows are gone with the batch
            self._open.pop(request_id, None)
        self._opened_in_batch.clear()
        self._completions.clear()
        self._dirty_keys.clear()
        self._dirty_accounts.clear()
        self._keys.clear()
        self._accounts.clear()

    def _key(self, db: sqlite3.Connection, key_id: str) -> _KeyMoney | None:
        try:
            return self._keys[key_id]
        except KeyError:
            pass
        row = db.execute(_KEY_MONEY, (key_id,)).fetchone()
        found = None
        if row is not None:
            found = _KeyMoney(row[0], row[1], row[2], row[3], row[4] is not None, bool(row[5]), row[6])
        self._keys[key_id] = found
        return found

    def _account(self, db: sqlite3.Connection, account_id: str) -> _AccountMoney | None:
        try:
            return self._accounts[account_id]
        except KeyError:
            pass
        row = db.execute(_ACCOUNT_MONEY, (account_id,)).fetchone()
        found = _AccountMoney(row[0]) if row is not None else None
        self._accounts[account_id] = found
        return found

    def _apply_buffered(self, db: sqlite3.Connection) -> None:
        completions, self._completions = self._completions, []
        if completions:
            db.executemany(_COMPLETE, completions)
        for key_id in self._dirty_keys:
            key = self._keys[key_id]
            assert key is not None
            held, key.held_change = key.held_change, 0
            charges, key.charges = key.charges, []
            if not charges:
                db.execute(_KEY_HELD, (held, key_id))
            for window, cost in charges:
                db.execute(_KEY_CHARGED, (held, cost, window, key_id))
                held = 0
        self._dirty_keys.clear()
        for account_id in self._dirty_accounts:
            account = self._accounts[account_id]
            assert account is not None
            db.execute(_ACCOUNT_CHANGED, (account.held_change, account.usage_change, account_id))
            account.held_change = account.usage_change = 0
        self._dirty_accounts.clear()

    # -- the hard cap -----------------------------------------------------------------------

    async def reserve(self, hold: Hold, now: str) -> ReserveResult:
        """Hold `hold.amount` against the key's window limit and the account's balance, atomically,
        checking in the same step that the key is live. Not awaited to durability: the hold
        binds every later operation at once, and a hold lost in a crash is one the next start
        would have released anyway."""
        db = self._in_batch(asyncio.get_running_loop())
        key = self._key(db, hold.key_id)
        if key is None:
            return ReserveResult("key_missing")
        refused = key.refusal(now)
        if refused is not None:
            return ReserveResult(refused)
        amount = hold.amount
        room = key.room(hold.window)
        if room is not None and amount > room:
            return ReserveResult("key_limit_exceeded", max(0, room))
        account = self._account(db, hold.account_id)
        if account is None or account.available < amount:
            return ReserveResult("insufficient_credits", max(0, account.available) if account else 0)
        if hold.request_id in self._open:
            raise StoreError(f"request {hold.request_id} already has a record")
        try:
            db.execute(_OPEN_HOLD, _hold_row(hold))
        except sqlite3.IntegrityError:
            raise StoreError(f"request {hold.request_id} already has a record") from None
        key.held += amount
        key.held_change += amount
        account.available -= amount
        account.held_change += amount
        self._dirty_keys.add(hold.key_id)
        self._dirty_accounts.add(hold.account_id)
        self._open[hold.request_id] = _Open(hold.account_id, hold.key_id, amount)
        self._opened_in_batch.append(hold.request_id)
        return ReserveResult("ok")

    def _close(self, db: sqlite3.Connection, request_id: str) -> tuple[_KeyMoney, _AccountMoney] | None:
        """Take `request_id`'s hold off the books of memory and return its key's and account's
        counters (None if this connection has no such open hold); the caller writes its record."""
        found = self._open.pop(request_id, None)
        if found is None:
            return None
        key, account = self._key(db, found.key_id), self._account(db, found.account_id)
        assert key is not None and account is not None
        key.held -= found.amount
        key.held_change -= found.amount
        account.available += found.amount
        account.held_change -= found.amount
        self._dirty_keys.add(found.key_id)
        self._dirty_accounts.add(found.account_id)
        return key, account

    async def settle(self, request_id: str, generation: Generation, window: str) -> bool:
        """Replace the hold with the exact charge and complete the record; once per request.

        `generation.hold` is the amount that was reserved for `request_id`.
        """
        loop = asyncio.get_running_loop()
        db = self._in_batch(loop)
        closed = self._close(db, request_id)
        if closed is None:
            return await self._settle_unknown(request_id, generation, window)
        key, account = closed
        cost = generation.cost
        self._completions.append(_outcome(generation))
        key.charge(window, cost)
        account.available -= cost
        account.usage_change += cost
        await self._committed(loop)
        return True

    async def _settle_unknown(self, request_id: str, generation: Generation, window: str) -> bool:
        """A hold this connection did not make (or already closed): settle it by its record."""

        def op(db: sqlite3.Connection) -> bool:
            if not db.execute(_COMPLETE, _outcome(generation)).rowcount:
                return False  # settled or released already
            held, cost = generation.hold, generation.cost
            db.execute(_ACCOUNT_CHANGED, (-held, cost, generation.account_id))
            db.execute(_KEY_CHARGED, (-held, cost, window, generation.key_id))
            self._keys.pop(generation.key_id, None)
            self._accounts.pop(generation.account_id, None)
            return True

        self._apply_buffered(self._db)  # what memory owes the rows, before their mirrors are dropped
        return await self._write(op)

    async def release(self, request_id: str, generation: Generation | None) -> bool:
        """Drop a hold without charge (the request failed before output); once per request.

        `generation`, when given, carries the failure's details (its cost must be 0).
        """
        db = self._in_batch(asyncio.get_running_loop())
        if self._close(db, request_id) is not None:
            if generation is not None:
                self._completions.append(_outcome(generation))
            else:
                db.execute("UPDATE generations SET status = 'error' WHERE id = ?", (request_id,))
            return True
        self._apply_buffered(db)
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
        db.execute(_ACCOUNT_CHANGED, (-found[0], 0, found[1]))
        db.execute(_KEY_HELD, (-found[0], found[2]))
        self._keys.pop(found[2], None)
        self._accounts.pop(found[1], None)
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
        for h in holds:
            self._open.pop(h.request_id, None)

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
