"""The audit log on PostgreSQL: append (chained under a transaction-scoped advisory lock, so
replicas append one at a time), list with filters, verify."""

from __future__ import annotations

from nemorouter.store.audit_records import (
    GENESIS,
    AuditEntry,
    AuditRecord,
    audit_digest,
    audit_filters,
    audit_record,
    check_audit_chain,
    encode,
    link,
)
from nemorouter.store.postgres.conn import Conn, PostgresConnection

_AUDIT_LOCK = 0x6E656D6F_61756469  # "nemoaudi": serializes appends across every replica


class PostgresAudit(PostgresConnection):
    async def append_audit(self, entry: AuditEntry) -> AuditRecord:
        async def op(conn: Conn) -> AuditRecord:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _AUDIT_LOCK)
            last = await conn.fetchrow("SELECT seq, chain FROM audit_log ORDER BY seq DESC LIMIT 1")
            seq, previous = (int(last["seq"]) + 1, str(last["chain"])) if last else (1, GENESIS)
            entry_digest = audit_digest(seq, entry)
            chain = link(previous, entry_digest)
            await conn.execute(
                "INSERT INTO audit_log (seq, at, actor, action, account_id, targets, params, digest, chain)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                seq,
                entry.at,
                entry.actor,
                entry.action,
                entry.account_id,
                encode(entry.targets),
                encode(entry.params),
                entry_digest,
                chain,
            )
            return AuditRecord(seq, entry, entry_digest, chain)

        return await self._atomic(op)

    async def list_audit(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        account_id: str | None = None,
        target: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        where, values = audit_filters(actor, action, account_id, target, since, until, "${}")
        rows = await self._all(
            f"SELECT * FROM audit_log{where} ORDER BY seq DESC LIMIT ${len(values) + 1}", *values, limit
        )
        return [audit_record(r) for r in rows]

    async def verify_audit(self) -> tuple[list[str], int]:
        async with self._tx(snapshot=True) as conn:
            rows = await conn.fetch("SELECT * FROM audit_log ORDER BY seq")
        return check_audit_chain(audit_record(r) for r in rows)
