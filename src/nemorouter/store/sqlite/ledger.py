"""The ledger on SQLite: operator overruns kept apart from charges, and `ledger verify`."""

from __future__ import annotations

from collections import defaultdict

from nemorouter.store import rows
from nemorouter.store.ledger import LedgerSums, check
from nemorouter.store.overrun_rows import OVERRUN_COLUMNS, overrun, overrun_params
from nemorouter.store.records import LedgerReport, Overrun
from nemorouter.store.sqlite.conn import SqliteConnection
from nemorouter.store.sqlite.seals import seal_problems
from nemorouter.timeutil import utcnow

_INSERT_OVERRUN = (
    f"INSERT INTO overruns ({', '.join(OVERRUN_COLUMNS)}) VALUES ({', '.join('?' * len(OVERRUN_COLUMNS))})"
    " ON CONFLICT (request_id) DO NOTHING"
)


class SqliteLedger(SqliteConnection):
    async def record_overrun(self, found: Overrun) -> None:
        """Keep an operator overrun (once per request); off the hot path: overruns are rare."""
        await self._write(lambda db: db.execute(_INSERT_OVERRUN, overrun_params(found)))

    async def list_overruns(
        self, provider: str | None = None, since: str | None = None, until: str | None = None
    ) -> list[Overrun]:
        where, params = _range(provider, since, until)
        return [overrun(r) for r in self._all(f"SELECT * FROM overruns{where} ORDER BY request_id", params)]

    async def verify_ledger(self) -> LedgerReport:
        with self._tx() as db:  # one consistent snapshot
            accounts = [rows.account(r) for r in db.execute("SELECT * FROM accounts")]
            keys = [rows.api_key(r) for r in db.execute("SELECT * FROM api_keys")]
            credits: dict[str, int] = defaultdict(int)
            for acct, amount in db.execute("SELECT account_id, amount FROM credits"):
                credits[acct] += amount
            charges: dict[str, int] = defaultdict(int)
            key_charges: dict[str, int] = defaultdict(int)
            failed_charged: list[str] = []
            above: list[tuple[str, str, str, str | None, int, int]] = []
            holds_acct: dict[str, int] = defaultdict(int)
            holds_key: dict[str, int] = defaultdict(int)
            for gid, acct, kid, pkey, cost, hold, status in db.execute(
                "SELECT id, account_id, key_id, provider_key_id, cost, hold, status FROM generations"
            ):
                if status == "pending":
                    holds_acct[acct] += hold
                    holds_key[kid] += hold
                    continue
                charges[acct] += cost
                key_charges[kid] += cost
                if cost > hold:
                    above.append((gid, acct, kid, pkey, hold, cost))
                if status in ("error", "orphaned") and cost:
                    failed_charged.append(gid)
            overruns = [overrun(r) for r in db.execute("SELECT * FROM overruns")]
            changes = dict(
                db.execute("SELECT key_id, MAX(changed_at) FROM key_limit_changes GROUP BY key_id")
            )
            sealed = seal_problems(db)  # entries changed, removed or reordered since they were sealed
        sums = LedgerSums(
            accounts,
            keys,
            credits,
            charges,
            holds_acct,
            holds_key,
            key_charges,
            failed_charged,
            overruns,
            above,
            changes,
        )
        report = check(sums, utcnow())
        return LedgerReport(report.problems + sealed, report.overruns, report.overrun_list, report.notes)


def _range(provider: str | None, since: str | None, until: str | None) -> tuple[str, list[str]]:
    clauses, params = [], []
    for clause, value in (("provider = ?", provider), ("created_at >= ?", since), ("created_at < ?", until)):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params
