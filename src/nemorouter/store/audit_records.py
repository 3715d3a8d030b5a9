"""The audit log's entries and its hash chain, pure (both stores use these).

Each entry is chained like the ledger's seals (`seals.link`): `digest` is SHA-256 over the
entry's canonical JSON (`seq`, time, actor, action, account, targets, parameters: keys sorted),
and `chain` is SHA-256 of the previous chain and the digest, from 64 zeros. An entry changed,
removed or reordered after it was written is named by `check_audit_chain`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from nemorouter.store.seals import GENESIS, link

__all__ = [
    "GENESIS",
    "AuditEntry",
    "AuditRecord",
    "audit_digest",
    "audit_filters",
    "check_audit_chain",
    "encode",
    "link",
]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What to record: who, what (action, target ids, non-secret parameters), when."""

    at: str  # ISO 8601 UTC
    actor: str  # "admin" | "cli:USER" | "management_key:ID" | "console:USER" | "system"
    action: str  # e.g. "key.create"
    account_id: str | None
    targets: dict[str, str]
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    entry: AuditEntry
    digest: str
    chain: str


def audit_record(row: Any) -> AuditRecord:
    """A stored row (sqlite3.Row or asyncpg.Record: both index by column name) as a record."""
    entry = AuditEntry(
        at=row["at"],
        actor=row["actor"],
        action=row["action"],
        account_id=row["account_id"],
        targets=orjson.loads(row["targets"]),
        params=orjson.loads(row["params"]),
    )
    return AuditRecord(seq=row["seq"], entry=entry, digest=row["digest"], chain=row["chain"])


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def encode(value: dict[str, Any]) -> str:
    """Targets and parameters as stored: canonical JSON text (the same bytes on every backend)."""
    return _canonical(value).decode()


def audit_digest(seq: int, entry: AuditEntry) -> str:
    fields = [
        "audit",
        seq,
        entry.at,
        entry.actor,
        entry.action,
        entry.account_id,
        entry.targets,
        entry.params,
    ]
    return hashlib.sha256(_canonical(fields)).hexdigest()


def check_audit_chain(records: Iterable[AuditRecord]) -> tuple[list[str], int]:
    """Problems of the audit chain (records in `seq` order) and how many entries were checked."""
    problems: list[str] = []
    previous_seq, previous_chain, count = 0, GENESIS, 0
    for record in records:
        count += 1
        name = f"audit entry {record.seq} ({record.entry.action})"
        if record.seq != previous_seq + 1:
            first, last = previous_seq + 1, record.seq - 1
            missing = str(first) if first == last else f"{first}..{last}"
            problems.append(f"audit entries {missing} missing before {name}: entries were removed")
        if audit_digest(record.seq, record.entry) != record.digest:
            problems.append(f"{name}: changed after it was written")
        if link(previous_chain, record.digest) != record.chain:
            problems.append(f"{name}: does not follow from entry {previous_seq} (the chain was altered here)")
        previous_seq, previous_chain = record.seq, record.chain
    return problems, count


def audit_filters(
    actor: str | None, action: str | None, account_id: str | None, target: str | None, since: str | None,
    until: str | None, mark: str,
) -> tuple[str, list[Any]]:  # fmt: skip
    """The WHERE clause of a filtered listing (`mark(i)` numbers the parameters) and its values."""
    clauses, values = [], []
    for clause, value in (
        ("actor = {}", actor),
        ("action = {}", action),
        ("account_id = {}", account_id),
        ("targets LIKE {}", None if target is None else f'%"{target}"%'),
        ("at >= {}", since),
        ("at < {}", until),
    ):
        if value is not None:
            values.append(value)
            clauses.append(clause.format(mark.format(len(values))))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", values
