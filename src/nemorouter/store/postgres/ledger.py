"""The ledger on PostgreSQL: operator overruns kept apart from charges, and `ledger verify`."""

from __future__ import annotations

from collections import defaultdict

from nemorouter.store import rows
from nemorouter.store.ledger import LedgerSums, check
from nemorouter.store.overrun_rows import OVERRUN_COLUMNS, overrun, overrun_params
from nemorouter.store.postgres.conn import PostgresConnection
from nemorouter.store.postgres.seals import seal_problems
from nemorouter.store.records import LedgerReport, Overrun
from nemorouter.timeutil import utcnow

_INSERT_OVERRUN = (
    f"INSERT INTO overruns ({', '.join(OVERRUN_COLUMNS)})"
    f" VALUES ({', '.join(f'${i}' for i in range(1, len(OVERRUN_COLUMNS) + 1))})"
    " ON CONFLICT (request_id) DO NOTHING"
)


class PostgresLedger(PostgresConnection):
    async def record_overrun(self, found: Overrun) -> None:
        """Keep an operator overrun (once per request); off the hot path: overruns are rare."""
        await self._atomic(lambda conn: conn.execute(_INSERT_OVERRUN, *overrun_params(found)))

    async def list_overruns(
        self, provider: str | None = None, since: str | None = None, until: str | None = None
    ) -> list[Overrun]:
        clauses, params = [], []
        for column, op, value in (
            ("provider", "=", provider),
            ("created_at", ">=", since),
            ("created_at", "<", until),
        ):
            if value is not None:
                params.append(value)
                clauses.append(f"{column} {op} ${len(params)}")
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        found = await self._all(f"SELECT * FROM overruns{where} ORDER BY request_id", *params)
        return [overrun(r) for r in found]

    async def verify_ledger(self) -> LedgerReport:
        async with self._tx(snapshot=True) as conn:  # one consistent snapshot
            accounts = [rows.account(r) for r in await conn.fetch("SELECT * FROM accounts")]
            keys = [rows.api_key(r) for r in await conn.fetch("SELECT * FROM api_keys")]
            credits = {
                r[0]: int(r[1])  # SUM of BIGINT is NUMERIC: exact, never overflows
                for r in await conn.fetch("SELECT account_id, SUM(amount) FROM credits GROUP BY account_id")
            }
            groups = await conn.fetch(
                "SELECT account_id, key_id, COALESCE(SUM(hold) FILTER (WHERE status = 'pending'), 0),"
                " COALESCE(SUM(cost) FILTER (WHERE status <> 'pending'), 0)"
                " FROM generations GROUP BY account_id, key_id"
            )
            above = await conn.fetch(
                "SELECT id, account_id, key_id, provider_key_id, hold, cost FROM generations"
                " WHERE status <> 'pending' AND cost > hold"
            )
            failed = await conn.fetch(
                "SELECT id FROM generations WHERE status IN ('error', 'orphaned') AND cost <> 0 ORDER BY id"
            )
            overruns = [overrun(r) for r in await conn.fetch("SELECT * FROM overruns")]
            changes = {
                r[0]: r[1]
                for r in await conn.fetch(
                    "SELECT key_id, MAX(changed_at) FROM key_limit_changes GROUP BY key_id"
                )
            }
            sealed = await seal_problems(conn)  # entries changed, removed or reordered since they were sealed
        holds_acct: dict[str, int] = defaultdict(int)
        holds_key: dict[str, int] = defaultdict(int)
        charges: dict[str, int] = defaultdict(int)
        key_charges: dict[str, int] = defaultdict(int)
        for acct, kid, held, charged in groups:
            holds_acct[acct] += int(held)
            holds_key[kid] += int(held)
            charges[acct] += int(charged)
            key_charges[kid] += int(charged)
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
            [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in above],
            changes,
        )
        report = check(sums, utcnow())
        return LedgerReport(report.problems + sealed, report.overruns, report.overrun_list, report.notes)
