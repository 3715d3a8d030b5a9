"""The ledger's hash chain on PostgreSQL: the sealer's side (append) and the check's side (verify).

Any number of replicas run the sealer at once against one database, so:

- what to seal is not found by scanning ids or times (replicas commit out of order and their
  clocks may disagree): the transaction that makes an entry final queues it (`seal_queue`,
  filled by triggers, see migration 0004) and a sealing round drains the queue;
- a round is one transaction that first takes a transaction-scoped advisory lock, so rounds
  of different replicas run one after the other, each appending after the head the previous
  one committed. `seq` is the primary key besides, so even a round that skipped the lock could
  not fork the chain or leave a gap: its commit would fail and nothing would be sealed twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nemorouter.store.postgres.array_text import array_text
from nemorouter.store.postgres.conn import Conn, PostgresConnection
from nemorouter.store.seals import (
    CREDIT_FIELDS,
    GENERATION_FIELDS,
    GENESIS,
    KINDS,
    UNCHARGED,
    Seal,
    chain_rows,
    check_chain,
    digest,
)
from nemorouter.timeutil import iso, utcnow

BATCH = 5_000  # entries per round, the rest next time: bounds one transaction
_SEAL_LOCK = 0x6E656D6F_7365616C  # "nemoseal"
# Booleans as 0/1, as SQLite stores them: an entry's digest is the same in either store.
_AS_SQLITE = {"streamed": "streamed::int", "cancelled": "cancelled::int"}
_CREDIT_COLUMNS = ", ".join(CREDIT_FIELDS)
_GENERATION_COLUMNS = ", ".join(_AS_SQLITE.get(name, name) for name in GENERATION_FIELDS)
_UNSEALED = "NOT EXISTS (SELECT 1 FROM ledger_seals s WHERE s.kind = '{kind}' AND s.row_id = t.id)"
_UNCHARGED = array_text(UNCHARGED)  # statuses that are no charge, as the array text _FIND takes
_FIND = {
    "credit": f"SELECT {_CREDIT_COLUMNS} FROM credits t WHERE id = ANY($1::text::text[])"
    f" AND {_UNSEALED.format(kind='credit')}",
    "generation": f"SELECT {_GENERATION_COLUMNS} FROM generations t WHERE id = ANY($1::text::text[])"
    f" AND status <> ALL($2::text::text[]) AND {_UNSEALED.format(kind='generation')}",
}
_APPEND = (
    "INSERT INTO ledger_seals (seq, kind, row_id, digest, chain, sealed_at)"
    " SELECT seq, kind, row_id, digest, chain, $6"
    " FROM unnest($1::text::bigint[], $2::text::text[], $3::text::text[], $4::text::text[], $5::text::text[])"
    " AS u(seq, kind, row_id, digest, chain)"
)
_CHECK = (
    "SELECT s.seq, s.kind, s.row_id, s.digest, s.chain, "
    + ", ".join(f"c.{name}" for name in CREDIT_FIELDS)
    + ", "
    + ", ".join("g." + _AS_SQLITE.get(name, name) for name in GENERATION_FIELDS)
    + " FROM ledger_seals s"
    " LEFT JOIN credits c ON s.kind = 'credit' AND c.id = s.row_id"
    " LEFT JOIN generations g ON s.kind = 'generation' AND g.id = s.row_id"
    " ORDER BY s.seq"
)


class PostgresSeals(PostgresConnection):
    seal_every = 0.5  # seconds; each round is round trips and a durable commit (store/roles.py)
    seal_batch = BATCH

    async def seal_ledger(self, now_ns: int | None = None) -> int:
        """Append a seal for every final ledger entry not sealed yet; returns how many.
        (`now_ns` is for SQLite's scan; the queue needs no clock.)"""
        if await self._one("SELECT 1 FROM seal_queue ORDER BY id LIMIT 1") is None:
            return 0  # the common case: one index probe, no transaction, no lock
        return await self._atomic(_seal_round)


async def _seal_round(conn: Conn) -> int:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _SEAL_LOCK)
    queued = await conn.fetch("SELECT id, kind, row_id FROM seal_queue ORDER BY id LIMIT $1", BATCH)
    if not queued:
        return 0  # another replica's round sealed them while this one waited for the lock
    found: dict[tuple[str, str], Sequence[Any]] = {}
    for kind in KINDS:
        ids = [r["row_id"] for r in queued if r["kind"] == kind]
        if ids:
            for row in await conn.fetch(
                _FIND[kind], array_text(ids), *([_UNCHARGED] if kind == "generation" else [])
            ):
                found[(kind, row[0])] = tuple(row)
    entries: list[tuple[str, Sequence[Any]]] = []
    for r in queued:  # in the order they became final; an entry queued twice is sealed once
        values = found.pop((r["kind"], r["row_id"]), None)
        if values is not None:
            entries.append((r["kind"], values))
    if entries:
        head = await conn.fetchrow("SELECT seq, chain FROM ledger_seals ORDER BY seq DESC LIMIT 1")
        seq, chain = (head["seq"], head["chain"]) if head else (0, GENESIS)
        seals = chain_rows(chain, entries, seq + 1)
        columns = (array_text(column) for column in zip(*seals, strict=True))
        await conn.execute(_APPEND, *columns, iso(utcnow()))
    # Gone, not charged (a release), or sealed already: nothing to seal, nothing to keep.
    await conn.execute(
        "DELETE FROM seal_queue WHERE id = ANY($1::text::bigint[])", array_text(r["id"] for r in queued)
    )
    return len(entries)


async def seal_problems(conn: Conn) -> list[str]:
    """Every sealed entry that was changed, removed or reordered since, by kind and id. Run inside
    the verifying transaction (a cursor needs one), so it reads the same snapshot as the sums."""
    credit_end = 5 + len(CREDIT_FIELDS)
    pairs: list[tuple[Seal, str | None]] = []
    async for row in conn.cursor(_CHECK, prefetch=5_000):
        seal = Seal(*row[:5])
        values = tuple(row[5:credit_end] if seal.kind == "credit" else row[credit_end:])
        current = digest(seal.kind, values) if seal.kind in KINDS and values[0] is not None else None
        pairs.append((seal, current))
    return check_chain(pairs)
