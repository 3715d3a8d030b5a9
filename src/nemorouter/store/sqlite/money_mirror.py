"""The money counters one SQLite connection mirrors in memory, and the hard cap decided from them.

`sqlite.money` explains when the mirror is exact (inside a batch, which holds SQLite's write
lock) and when it is forgotten; this module is the part that runs on every request: reserve,
settle and release decide here, in memory, and buffer what the batch must write. It is kept
apart from the connection classes so that it can be compiled (tools/build_native.py): plain
classes, no mixins, every attribute declared.
"""

from __future__ import annotations

import sqlite3

from nemorouter.money.amounts import MAX_AMOUNT
from nemorouter.store.base import StoreError
from nemorouter.store.cap_rule import cap_decision
from nemorouter.store.money_values import check_amount_of, check_columns, check_generation, check_total
from nemorouter.store.records import Generation, Hold, ReserveResult
from nemorouter.store.seals import GENESIS, link
from nemorouter.store.sqlite.outcome import COMPLETE, outcome_row, sealed_digest
from nemorouter.timeutil import iso, utcnow

_OPEN_HOLD = (
    "INSERT INTO generations (id, account_id, key_id, model, endpoint, streamed, status, hold, owner, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)"
)
_KEY_MONEY = (
    "SELECT limit_pico, window_start, window_usage, held, revoked_at, disabled, expires_at, usage"
    " FROM api_keys WHERE id = ?"
)
_ACCOUNT_MONEY = "SELECT total_credits - total_usage - held, total_usage FROM accounts WHERE id = ?"
KEY_HELD = "UPDATE api_keys SET held = held + ? WHERE id = ?"
KEY_CHARGED = (
    "UPDATE api_keys SET held = held + ?1, usage = usage + ?2,"
    " window_usage = (CASE WHEN window_start = ?3 THEN window_usage ELSE 0 END) + ?2,"
    " window_start = ?3 WHERE id = ?4"
)
ACCOUNT_CHANGED = "UPDATE accounts SET held = held + ?, total_usage = total_usage + ? WHERE id = ?"
_ERRORED = "UPDATE generations SET status = 'error' WHERE id = ?"
_LAST_SEAL = "SELECT seq, chain FROM ledger_seals ORDER BY seq DESC LIMIT 1"
_SEAL = "INSERT INTO ledger_seals (seq, kind, row_id, digest, chain, sealed_at) VALUES (?, ?, ?, ?, ?, ?)"
# A seal buffered by the batch: (seq, kind, row id, digest, chain).
BufferedSeal = tuple[int, str, str, str, str]


class KeyMoney:
    """A key's row as far as money goes, and what this batch changed in it."""

    def __init__(
        self,
        limit: int | None,
        window_start: str,
        window_usage: int,
        held: int,
        revoked: bool,
        disabled: bool,
        expires_at: str | None,
        usage: int,
    ) -> None:
        self.limit = limit
        self.usage = usage  # all-time, as the row will hold it once the batch is written
        self.window_start = window_start
        self.window_usage = window_usage
        self.held = held
        self.revoked = revoked
        self.disabled = disabled
        self.expires_at = expires_at
        self.held_change = 0
        # Charges not written yet, in order, as (window, sum) runs (a window rolls over rarely).
        self.charges: list[tuple[str, int]] = []

    def charge(self, window: str, cost: int) -> None:
        self.usage += cost
        self.window_usage = (self.window_usage if self.window_start == window else 0) + cost
        self.window_start = window
        if self.charges and self.charges[-1][0] == window:
            self.charges[-1] = (window, self.charges[-1][1] + cost)
        else:
            self.charges.append((window, cost))


class AccountMoney:
    def __init__(self, available: int, usage: int) -> None:
        self.available = available  # credits - usage - held
        self.usage = usage  # total_usage, as the row will hold it once the batch is written
        self.held_change = 0
        self.usage_change = 0


class OpenHold:
    def __init__(self, account_id: str, key_id: str, amount: int, created_at: str) -> None:
        self.account_id = account_id
        self.key_id = key_id
        self.amount = amount
        self.created_at = created_at  # as the pending row holds it (a settle does not change it)


class MoneyMirror:
    """The counters of the keys and accounts in use, this connection's open holds, and the
    writes the open batch owes the database. Every method that takes `db` runs inside a batch."""

    def __init__(self) -> None:
        self.keys: dict[str, KeyMoney | None] = {}
        self.accounts: dict[str, AccountMoney | None] = {}
        self.open: dict[str, OpenHold] = {}  # this connection's holds
        self.opened_in_batch: list[str] = []
        self.closed_in_batch: list[tuple[str, OpenHold]] = []
        self.completions: list[tuple[object, ...]] = []
        self.dirty_keys: set[str] = set()
        self.dirty_accounts: set[str] = set()
        self.data_version: int | None = None
        # The ledger's chain as this batch leaves it (seq, chain), and the seals it owes the
        # table; the head is loaded in a batch and forgotten with the counters.
        self.seal_head: tuple[int, str] | None = None
        self.seals: list[BufferedSeal] = []

    # -- when the mirror is exact ---------------------------------------------------------

    def batch_began(self, db: sqlite3.Connection) -> None:
        self.opened_in_batch.clear()  # the batch before committed (or was rolled back)
        self.closed_in_batch.clear()
        version = db.execute("PRAGMA data_version").fetchone()[0]
        if version != self.data_version:  # another connection committed: reload what we use
            self.data_version = version
            self.forget()
            self._drop_holds_closed_elsewhere(db)

    def _drop_holds_closed_elsewhere(self, db: sqlite3.Connection) -> None:
        """Forget holds whose record another process has closed (its recovery orphaned them):
        settling them here would charge and release a second time."""
        mine = list(self.open)
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
                    del self.open[request_id]

    def forget(self) -> None:
        """Drop the mirrored counters and the chain's head (loaded again, in a batch, when next
        used)."""
        self.keys.clear()
        self.accounts.clear()
        self.seal_head = None

    def forget_rows(self, key_id: str, account_id: str) -> None:
        self.keys.pop(key_id, None)
        self.accounts.pop(account_id, None)

    def rolled_back(self) -> None:
        """The batch was rolled back: the open holds are again those it began with."""
        for request_id, found in reversed(self.closed_in_batch):  # their rows are pending again
            self.open[request_id] = found
        self.closed_in_batch.clear()
        for request_id in self.opened_in_batch:  # their pending rows are gone with the batch
            self.open.pop(request_id, None)
        self.opened_in_batch.clear()
        self.completions.clear()
        self.dirty_keys.clear()
        self.dirty_accounts.clear()
        self.seals.clear()
        self.forget()

    def released(self, request_ids: list[str]) -> None:
        """Recovery released these holds by their records: they are no longer this connection's."""
        for request_id in request_ids:
            self.open.pop(request_id, None)

    # -- the counters -----------------------------------------------------------------------

    def key(self, db: sqlite3.Connection, key_id: str) -> KeyMoney | None:
        try:
            return self.keys[key_id]
        except KeyError:
            pass
        row = db.execute(_KEY_MONEY, (key_id,)).fetchone()
        loaded = None
        if row is not None:
            revoked, disabled = row[4] is not None, bool(row[5])
            loaded = KeyMoney(row[0], row[1], row[2], row[3], revoked, disabled, row[6], row[7])
        self.keys[key_id] = loaded
        return loaded

    def account(self, db: sqlite3.Connection, account_id: str) -> AccountMoney | None:
        try:
            return self.accounts[account_id]
        except KeyError:
            pass
        row = db.execute(_ACCOUNT_MONEY, (account_id,)).fetchone()
        loaded = AccountMoney(row[0], row[1]) if row is not None else None
        self.accounts[account_id] = loaded
        return loaded

    def apply_buffered(self, db: sqlite3.Connection) -> None:
        """Write the completed records and the counters' sums the batch owes (before COMMIT,
        and before any query of this connection reads)."""
        completions, self.completions = self.completions, []
        if completions:
            db.executemany(COMPLETE, completions)
        if self.seals:
            now = iso(utcnow())
            db.executemany(_SEAL, [(*seal, now) for seal in self.seals])
            self.seals.clear()
        for key_id in self.dirty_keys:
            key = self.keys[key_id]
            assert key is not None
            held, key.held_change = key.held_change, 0
            charges, key.charges = key.charges, []
            if not charges:
                db.execute(KEY_HELD, (held, key_id))
            for window, cost in charges:
                db.execute(KEY_CHARGED, (held, cost, window, key_id))
                held = 0
        self.dirty_keys.clear()
        for account_id in self.dirty_accounts:
            account = self.accounts[account_id]
            assert account is not None
            db.execute(ACCOUNT_CHANGED, (account.held_change, account.usage_change, account_id))
            account.held_change = account.usage_change = 0
        self.dirty_accounts.clear()

    # -- the ledger's chain -----------------------------------------------------------------

    def seal(self, db: sqlite3.Connection, kind: str, row_id: str, entry_digest: str) -> None:
        """Link an entry into the chain after the last seal and buffer its seal for the batch."""
        head = self.seal_head
        if head is None:
            last = db.execute(_LAST_SEAL).fetchone()
            head = (last[0], last[1]) if last is not None else (0, GENESIS)
        seq = head[0] + 1
        chain = link(head[1], entry_digest)
        self.seal_head = (seq, chain)
        self.seals.append((seq, kind, row_id, entry_digest, chain))

    # -- the hard cap -----------------------------------------------------------------------

    def reserve(self, db: sqlite3.Connection, hold: Hold, now: str) -> ReserveResult:
        """Hold `hold.amount` against the key's window limit and the account's balance, checking
        in the same step that the key is live (the rule: `cap_rule`); the pending record is
        written at once."""
        key = self.key(db, hold.key_id)
        if key is None:
            return ReserveResult("key_missing")
        amount = hold.amount
        if not isinstance(amount, int) or amount < 0:  # past MAX_AMOUNT: no room affords it, refused below
            check_amount_of(hold.request_id, "hold", amount)
        account = self.account(db, hold.account_id)
        decided = cap_decision(
            amount,
            now,
            hold.window,
            key.revoked,
            key.disabled,
            key.expires_at,
            key.limit,
            key.window_start,
            key.window_usage,
            key.held,
            None if account is None else account.available,
        )
        if not decided.ok or account is None:
            return decided
        request_id = hold.request_id
        if request_id in self.open:
            raise StoreError(f"request {request_id} already has a record")
        if amount > MAX_AMOUNT:  # (afforded only by a total past the range: never written)
            check_amount_of(request_id, "hold", amount)
        try:
            db.execute(
                _OPEN_HOLD,
                (
                    request_id,
                    hold.account_id,
                    hold.key_id,
                    hold.model,
                    hold.endpoint,
                    int(hold.streamed),
                    amount,
                    hold.owner,
                    hold.created_at,
                ),
            )
        except sqlite3.IntegrityError:
            raise StoreError(f"request {request_id} already has a record") from None
        key.held += amount
        key.held_change += amount
        account.available -= amount
        account.held_change += amount
        self.dirty_keys.add(hold.key_id)
        self.dirty_accounts.add(hold.account_id)
        self.open[request_id] = OpenHold(hold.account_id, hold.key_id, amount, hold.created_at)
        self.opened_in_batch.append(request_id)
        return decided

    def _close(self, db: sqlite3.Connection, request_id: str) -> tuple[KeyMoney, AccountMoney] | None:
        """Take `request_id`'s hold off the books of memory and return its key's and account's
        counters (None if this connection has no such open hold); the caller writes its record."""
        found = self.open.pop(request_id, None)
        if found is None:
            return None
        self.closed_in_batch.append((request_id, found))
        key, account = self.key(db, found.key_id), self.account(db, found.account_id)
        assert key is not None and account is not None
        key.held -= found.amount
        key.held_change -= found.amount
        account.available += found.amount
        account.held_change -= found.amount
        self.dirty_keys.add(found.key_id)
        self.dirty_accounts.add(found.account_id)
        return key, account

    def settle(self, db: sqlite3.Connection, request_id: str, generation: Generation, window: str) -> bool:
        """Replace this connection's hold with the exact charge and buffer the completed record;
        False when the hold is not this connection's (the caller settles it by its record)."""
        found = self.open.get(request_id)
        if found is None:
            return False
        check_generation(generation)  # before anything changes: a refusal leaves the hold open
        cost = generation.cost
        key, account = self.key(db, found.key_id), self.account(db, found.account_id)
        assert key is not None and account is not None
        if key.usage > MAX_AMOUNT - cost or account.usage > MAX_AMOUNT - cost:
            check_total(request_id, "key's usage", key.usage, cost)
            check_total(request_id, "account's usage", account.usage, cost)
        row = outcome_row(generation)
        entry_digest = None
        if generation.id == request_id:
            entry_digest = sealed_digest(row, found.account_id, found.key_id, found.created_at)
        self._close(db, request_id)
        self.completions.append(row)
        if entry_digest is not None:  # sealed in the batch that makes it final
            self.seal(db, "generation", generation.id, entry_digest)
        key.charge(window, cost)
        account.available -= cost
        account.usage += cost
        account.usage_change += cost
        return True

    def release(self, db: sqlite3.Connection, request_id: str, generation: Generation | None) -> bool:
        """Drop this connection's hold without charge, recording `generation` (or just the
        error status); False when the hold is not this connection's."""
        found = self.open.get(request_id)
        if found is None:
            return False
        row, entry_digest = None, None
        if generation is not None:  # checked whole: the caller does not wait for the commit
            row = outcome_row(generation)
            check_generation(generation)
            check_columns(request_id, row)
            if generation.id == request_id:
                entry_digest = sealed_digest(row, found.account_id, found.key_id, found.created_at)
        self._close(db, request_id)
        if row is not None:
            self.completions.append(row)
            if entry_digest is not None:
                self.seal(db, "generation", request_id, entry_digest)
        else:
            db.execute(_ERRORED, (request_id,))
        return True
