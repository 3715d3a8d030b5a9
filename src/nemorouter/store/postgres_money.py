"""The hard cap on PostgreSQL: reserve, settle and release, each one transaction of conditional
updates that any number of replicas may run at once (see `postgres_conn` for the locking)."""

from __future__ import annotations

import operator
from collections import defaultdict

from nemorouter.store import rows
from nemorouter.store.base import StoreError
from nemorouter.store.ledger import LedgerSums, check
from nemorouter.store.postgres_conn import Conn, PostgresConnection, Refused
from nemorouter.store.postgres_seals import seal_problems
from nemorouter.store.records import Generation, Hold, LedgerReport, ReserveResult
from nemorouter.timeutil import utcnow

# Everything a settle or release fills in on the pending row. `hold` stays as reserved: the
# amount taken off the key and the account is the one that was put on them.
_OUTCOME_COLUMNS = [
    c for c in rows.GENERATION_COLUMNS if c not in ("id", "account_id", "key_id", "created_at", "hold")
]
_OUTCOME_VALUES = operator.attrgetter(*_OUTCOME_COLUMNS)
_COMPLETE = (
    f"UPDATE generations SET {PostgresConnection._sets(_OUTCOME_COLUMNS)}"
    f" WHERE id = ${len(_OUTCOME_COLUMNS) + 1} AND status = 'pending' RETURNING hold, account_id, key_id"
)
_FAIL = (
    "UPDATE generations SET status = 'error' WHERE id = $1 AND status = 'pending'"
    " RETURNING hold, account_id, key_id"
)

_HOLD_ON_KEY = (
    "UPDATE api_keys SET held = held + $1 WHERE id = $2 AND revoked_at IS NULL AND NOT disabled"
    " AND (expires_at IS NULL OR expires_at > $3) AND (limit_pico IS NULL OR"
    " (CASE WHEN window_start = $4 THEN window_usage ELSE 0 END) + held + $1 <= limit_pico) RETURNING 1"
)
_HOLD_ON_ACCOUNT = (
    "UPDATE accounts SET held = held + $1 WHERE id = $2 AND total_credits - total_usage - held >= $1"
    " RETURNING 1"
)
_OPEN_HOLD = (
    "INSERT INTO generations (id, account_id, key_id, model, endpoint, streamed, status, hold, owner,"
    " created_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9) ON CONFLICT (id) DO NOTHING"
    " RETURNING 1"
)
_CHARGE_KEY = (
    "UPDATE api_keys SET held = held - $1, usage = usage + $2,"
    " window_usage = (CASE WHEN window_start = $3 THEN window_usage ELSE 0 END) + $2,"
    " window_start = $3 WHERE id = $4"
)
_CHARGE_ACCOUNT = "UPDATE accounts SET held = held - $1, total_usage = total_usage + $2 WHERE id = $3"
_UNHOLD_KEY = "UPDATE api_keys SET held = held - $1 WHERE id = $2"
_UNHOLD_ACCOUNT = "UPDATE accounts SET held = held - $1 WHERE id = $2"


class PostgresMoney(PostgresConnection):
    async def reserve(self, hold: Hold, now: str) -> ReserveResult:
        """Hold `hold.amount` against the key's window limit and the account's balance, atomically,
        checking in the same step that the key is live."""

        async def op(conn: Conn) -> None:
            amount = hold.amount
            if not await self._matched(conn, _HOLD_ON_KEY, amount, hold.key_id, now, hold.window):
                raise Refused("key")
            if not await self._matched(conn, _HOLD_ON_ACCOUNT, amount, hold.account_id):
                raise Refused("account")
            if not await self._matched(
                conn,
                _OPEN_HOLD,
                hold.request_id,
                hold.account_id,
                hold.key_id,
                hold.model,
                hold.endpoint,
                hold.streamed,
                amount,
                hold.owner,
                hold.created_at,
            ):
                raise Refused("duplicate")

        try:
            # Not awaited to durability: a hold lost in a crash of the server is one no charge
            # can follow (settle finds no pending record), so the cap is never passed.
            await self._atomic(op, durable=False)
        except Refused as refused:  # rolled back: nothing was held
            if str(refused) == "duplicate":
                raise StoreError(f"request {hold.request_id} already has a record") from None
            return await self._why_refused(hold, now, str(refused))
        return ReserveResult("ok")

    async def _why_refused(self, hold: Hold, now: str, what: str) -> ReserveResult:
        if what == "account":
            row = await self._one("SELECT * FROM accounts WHERE id = $1", hold.account_id)
            acct = rows.account(row) if row else None
            return ReserveResult("insufficient_credits", max(0, acct.balance - acct.held) if acct else 0)
        row = await self._one("SELECT * FROM api_keys WHERE id = $1", hold.key_id)
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
        """Replace the hold with the exact charge and complete the record; once per request."""

        async def op(conn: Conn) -> bool:
            done = await conn.fetchrow(_COMPLETE, *_OUTCOME_VALUES(generation), request_id)
            if done is None:
                return False  # settled, released or recovered already
            held, account_id, key_id = done
            cost = generation.cost
            await conn.execute(_CHARGE_KEY, held, cost, window, key_id)
            await conn.execute(_CHARGE_ACCOUNT, held, cost, account_id)
            return True

        return await self._atomic(op)

    async def release(self, request_id: str, generation: Generation | None) -> bool:
        """Drop a hold without charge (the request failed before output); once per request.

        `generation`, when given, carries the failure's details (its cost must be 0).
        """

        async def op(conn: Conn) -> bool:
            if generation is not None:
                done = await conn.fetchrow(_COMPLETE, *_OUTCOME_VALUES(generation), request_id)
            else:
                done = await conn.fetchrow(_FAIL, request_id)
            if done is None:
                return False
            held, account_id, key_id = done
            await conn.execute(_UNHOLD_KEY, held, key_id)
            await conn.execute(_UNHOLD_ACCOUNT, held, account_id)
            return True

        # A release lost in a crash of the server leaves the hold open, to be recovered.
        return await self._atomic(op, durable=False)

    async def recover_holds(self, owner: str | None) -> list[Hold]:
        """Release the holds of `owner` (every open hold when None: only safe when no other
        process is serving); their records stay, marked `orphaned`, for reconciliation."""
        if owner is None:
            return await self._atomic(lambda conn: orphan_holds(conn, "", ()))
        return await self._atomic(lambda conn: orphan_holds(conn, "owner = $1", (owner,)))

    async def open_holds(self) -> list[Hold]:
        found = await self._all("SELECT * FROM generations WHERE status = 'pending' ORDER BY id")
        return [rows.hold(r) for r in found]

    async def key_spend_since(self, key_id: str, since: str) -> int:
        total = await self._one(
            "SELECT COALESCE(SUM(cost), 0) FROM generations WHERE key_id = $1 AND created_at >= $2"
            " AND cost > 0",
            key_id,
            since,
        )
        assert total is not None
        return int(total[0])

    async def verify_ledger(self) -> LedgerReport:
        async with self._tx(snapshot=True) as conn:  # one consistent snapshot
            accounts = [rows.account(r) for r in await conn.fetch("SELECT * FROM accounts")]
            keys = [rows.api_key(r) for r in await conn.fetch("SELECT * FROM api_keys")]
            credits = {
                r[0]: r[1]
                for r in await conn.fetch("SELECT account_id, SUM(amount) FROM credits GROUP BY account_id")
            }
            groups = await conn.fetch(
                "SELECT account_id, key_id, COALESCE(SUM(hold) FILTER (WHERE status = 'pending'), 0),"
                " COALESCE(SUM(cost) FILTER (WHERE status <> 'pending'), 0),"
                " COUNT(*) FILTER (WHERE status <> 'pending' AND cost > hold)"
                " FROM generations GROUP BY account_id, key_id"
            )
            failed = await conn.fetch(
                "SELECT id FROM generations WHERE status IN ('error', 'orphaned') AND cost <> 0 ORDER BY id"
            )
            sealed = await seal_problems(conn)  # entries changed, removed or reordered since they were sealed
        holds_acct: dict[str, int] = defaultdict(int)
        holds_key: dict[str, int] = defaultdict(int)
        charges: dict[str, int] = defaultdict(int)
        key_charges: dict[str, int] = defaultdict(int)
        overruns = 0
        for acct, kid, held, charged, over in groups:
            holds_acct[acct] += held
            holds_key[kid] += held
            charges[acct] += charged
            key_charges[kid] += charged
            overruns += over
        sums = LedgerSums(
            accounts,
            keys,
            credits,
            charges,
            holds_acct,
            holds_key,
            key_charges,
            [r[0] for r in failed],
            overruns,
        )
        report = check(sums, utcnow())
        return LedgerReport(report.problems + sealed, report.overruns)


async def orphan_holds(conn: Conn, where: str, params: tuple[object, ...]) -> list[Hold]:
    """Inside a transaction: release the open holds matching `where` (every one when empty),
    marking their records `orphaned`. The one way holds of a dead process are given back: a
    settle or release running at the same time finds the record no longer pending (or this
    finds it settled), so each hold is given back exactly once."""
    sql = "UPDATE generations SET status = 'orphaned' WHERE status = 'pending'"
    found = await conn.fetch(sql + (f" AND {where}" if where else "") + " RETURNING *", *params)
    holds = sorted((rows.hold(r) for r in found), key=lambda h: h.request_id)
    by_key: dict[str, int] = defaultdict(int)
    by_account: dict[str, int] = defaultdict(int)
    for h in holds:
        by_key[h.key_id] += h.amount
        by_account[h.account_id] += h.amount
    for key_id in sorted(by_key):
        await conn.execute(_UNHOLD_KEY, by_key[key_id], key_id)
    for account_id in sorted(by_account):
        await conn.execute(_UNHOLD_ACCOUNT, by_account[account_id], account_id)
    return holds
