"""The audit log on SQLite: append (chained under the write lock), list with filters, verify."""

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
from nemorouter.store.sqlite.conn import SqliteConnection


class SqliteAudit(SqliteConnection):
    async def append_audit(self, entry: AuditEntry) -> AuditRecord:
        """Append one entry at the end of the chain (BEGIN IMMEDIATE: one writer at a time)."""
        with self._tx() as db:
            last = db.execute("SELECT seq, chain FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
            seq, previous = (last[0] + 1, last[1]) if last else (1, GENESIS)
            entry_digest = audit_digest(seq, entry)
            chain = link(previous, entry_digest)
            db.execute(
                "INSERT INTO audit_log (seq, at, actor, action, account_id, targets, params, digest, chain)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    seq,
                    entry.at,
                    entry.actor,
                    entry.action,
                    entry.account_id,
                    encode(entry.targets),
                    encode(entry.params),
                    entry_digest,
                    chain,
                ),
            )
        return AuditRecord(seq, entry, entry_digest, chain)

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
        """The newest entries first, filtered (`target`: any id among the entry's targets)."""
        where, values = audit_filters(actor, action, account_id, target, since, until, "?")
        rows = self._all(f"SELECT * FROM audit_log{where} ORDER BY seq DESC LIMIT ?", (*values, limit))
        return [audit_record(r) for r in rows]

    async def verify_audit(self) -> tuple[list[str], int]:
        self._flush()
        return check_audit_chain(audit_record(r) for r in self._all("SELECT * FROM audit_log ORDER BY seq"))
