"""The embedded store: one SQLite file in WAL mode.

This module holds the schema's migrations and the meta table, and joins the roles: the routing
configuration is in `catalog`, accounts and keys in `accounts`, usage records and billing reports
in `reports`, the money path (reserve, settle, release) in `money`, ledger checks in `ledger`,
the connection and group commit in `conn`.
"""

from __future__ import annotations

import sqlite3
from importlib import resources

from nemorouter.store.sqlite.accounts import SqliteAccounts
from nemorouter.store.sqlite.alerts import SqliteAlerts
from nemorouter.store.sqlite.audit import SqliteAudit
from nemorouter.store.sqlite.catalog import SqliteCatalog
from nemorouter.store.sqlite.console import SqliteConsole
from nemorouter.store.sqlite.leases import SqliteLeases
from nemorouter.store.sqlite.ledger import SqliteLedger
from nemorouter.store.sqlite.money import SqliteMoney
from nemorouter.store.sqlite.reports import SqliteReports
from nemorouter.store.sqlite.seals import SqliteSeals
from nemorouter.timeutil import iso, utcnow


class SqliteStore(
    SqliteCatalog,
    SqliteAccounts,
    SqliteReports,
    SqliteMoney,
    SqliteLedger,
    SqliteAlerts,
    SqliteSeals,
    SqliteLeases,
    SqliteAudit,
    SqliteConsole,
):
    """Implements `nemorouter.store.base.Store` on SQLite, one mixin per role (`base` names the
    roles); this class adds the schema's migrations and the meta table."""

    def _migration_files(self) -> list[tuple[int, str]]:
        folder = resources.files("nemorouter.store.sqlite") / "migrations"
        found = [
            (int(f.name.split("_", 1)[0]), f.read_text()) for f in folder.iterdir() if f.name.endswith(".sql")
        ]
        return sorted(found)

    async def pending_migrations(self) -> list[int]:
        try:
            done = {r[0] for r in self._all("SELECT version FROM schema_migrations")}
        except sqlite3.OperationalError:
            done = set()
        return [version for version, _ in self._migration_files() if version not in done]

    async def applied_migrations(self) -> dict[int, str]:
        try:
            found = self._all("SELECT version, applied_at FROM schema_migrations ORDER BY version")
        except sqlite3.OperationalError:
            return {}
        return {int(r[0]): str(r[1]) for r in found}

    async def migrate(self) -> list[int]:
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT)"
        )
        done = {r[0] for r in self._all("SELECT version FROM schema_migrations")}
        applied = []
        for version, script in self._migration_files():
            if version in done:
                continue
            self._db.executescript(
                "BEGIN IMMEDIATE;\n"
                + script
                + f"\nINSERT INTO schema_migrations VALUES ({version}, '{iso(utcnow())}');\nCOMMIT;"
            )
            applied.append(version)
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('config_version', '1')")
        return applied

    async def close(self) -> None:
        self.close_connection()

    async def get_meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return str(row[0]) if row else None

    async def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    async def config_version(self) -> int:
        row = self._one("SELECT value FROM meta WHERE key = 'config_version'")
        return int(row[0]) if row else 0
