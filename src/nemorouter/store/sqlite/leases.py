"""Gateway process leases on SQLite (see postgres.leases for the rule). One SQLite file serves
one process, so in practice the only holds found dead are those of a process that stopped."""

from __future__ import annotations

from datetime import timedelta

from nemorouter.store.records import Hold
from nemorouter.store.sqlite.conn import SqliteConnection
from nemorouter.store.sqlite.money import orphan_holds
from nemorouter.timeutil import iso, utcnow


class SqliteLeases(SqliteConnection):
    async def renew_lease(self, owner: str, seconds: float) -> bool:
        now = utcnow()
        with self._tx() as db:
            renewed = db.execute(
                "UPDATE process_leases SET expires_at = ?, renewed_at = ? WHERE owner = ?",
                (iso(now + timedelta(seconds=seconds)), iso(now), owner),
            ).rowcount
            if not renewed:
                db.execute(
                    "INSERT INTO process_leases VALUES (?, ?, ?, ?)",
                    (owner, iso(now + timedelta(seconds=seconds)), iso(now), iso(now)),
                )
        return bool(renewed)

    async def drop_lease(self, owner: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM process_leases WHERE owner = ?", (owner,))

    async def recover_dead_holds(self) -> list[Hold]:
        with self._tx() as db:
            db.execute("DELETE FROM process_leases WHERE expires_at <= ?", (iso(utcnow()),))
            found = orphan_holds(db, "owner NOT IN (SELECT owner FROM process_leases)", ())
        self._holds_released(found)
        return found
