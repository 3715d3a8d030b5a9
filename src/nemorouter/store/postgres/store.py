"""The scale-out store: PostgreSQL, shared by any number of `nemorouter serve` replicas.

This module holds the schema's migrations and the meta table, and joins the roles: the routing
configuration (catalog, providers, models) is in `postgres.catalog`; accounts, keys, usage
records and billing reports in `postgres.accounts`; the money path in `postgres.money`; the pool
and the locking rules in `postgres.conn`; alerts out in `postgres.alerts`; the ledger's hash
chain in `postgres.seals`; the replicas' leases (whose holds are whose to release) in
`postgres.leases`. Times are stored as the same fixed-width ISO text as in
SQLite, so records and comparisons are identical in both stores.
"""

from __future__ import annotations

from importlib import resources

import asyncpg

from nemorouter.store.postgres.accounts import PostgresAccounts
from nemorouter.store.postgres.alerts import PostgresAlerts
from nemorouter.store.postgres.audit import PostgresAudit
from nemorouter.store.postgres.catalog import PostgresCatalog
from nemorouter.store.postgres.conn import Conn
from nemorouter.store.postgres.console import PostgresConsole
from nemorouter.store.postgres.leases import PostgresLeases
from nemorouter.store.postgres.ledger import PostgresLedger
from nemorouter.store.postgres.seals import PostgresSeals
from nemorouter.timeutil import iso, utcnow

# Taken inside the migration transaction: replicas starting together migrate one at a time.
_MIGRATION_LOCK = 0x6E656D6F_6D696772  # "nemomigr"


class PostgresStore(
    PostgresCatalog,
    PostgresAccounts,
    PostgresLedger,
    PostgresAlerts,
    PostgresSeals,
    PostgresLeases,
    PostgresAudit,
    PostgresConsole,
):
    """Implements `nemorouter.store.base.Store` on PostgreSQL, one mixin per role (`base` names
    the roles); this class adds the schema's migrations and the meta table."""

    @staticmethod
    def _migration_files() -> list[tuple[int, str]]:
        folder = resources.files("nemorouter.store.postgres") / "migrations"
        found = [
            (int(f.name.split("_", 1)[0]), f.read_text()) for f in folder.iterdir() if f.name.endswith(".sql")
        ]
        return sorted(found)

    @staticmethod
    async def _applied(conn: Conn) -> set[int]:
        if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
            return set()
        return {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}

    async def pending_migrations(self) -> list[int]:
        async with self._tx() as conn:
            done = await self._applied(conn)
        return [version for version, _ in self._migration_files() if version not in done]

    async def applied_migrations(self) -> dict[int, str]:
        async with self._tx() as conn:
            if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
                return {}
            found = await conn.fetch("SELECT version, applied_at FROM schema_migrations ORDER BY version")
        return {int(r[0]): str(r[1]) for r in found}

    async def migrate(self) -> list[int]:
        """Apply every pending migration in one transaction (all or none), under an advisory lock
        so that replicas starting at once do not race; the ones that wait then find nothing to do."""
        async with self._tx() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT)"
            )
            done = await self._applied(conn)
            applied = []
            for version, script in self._migration_files():
                if version in done:
                    continue
                await conn.execute(script)
                await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2)", version, iso(utcnow()))
                applied.append(version)
            await conn.execute("INSERT INTO meta VALUES ('config_version', '1') ON CONFLICT (key) DO NOTHING")
        return applied

    async def get_meta(self, key: str) -> str | None:
        try:
            row = await self._one("SELECT value FROM meta WHERE key = $1", key)
        except asyncpg.UndefinedTableError:
            return None  # not initialized: there is nothing to read yet
        return str(row[0]) if row else None

    async def set_meta(self, key: str, value: str) -> None:
        await self._one(
            "INSERT INTO meta VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            key,
            value,
        )

    async def config_version(self) -> int:
        row = await self._one("SELECT value FROM meta WHERE key = 'config_version'")
        return int(row[0]) if row else 0
