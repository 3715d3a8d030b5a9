"""Gateway process leases on PostgreSQL: which replicas are alive, so that the holds of dead
ones (and only those) are released while the others keep serving.

Each serving process renews its row every few seconds. A recovery round, run by every replica
now and then, is one transaction: it deletes the leases that have lapsed (by the database's
clock), then releases every open hold whose owner has no lease. A renewal racing it is
serialized by the lease row: either it renewed first (the recovery then sees the new expiry
and keeps the holds) or it finds the row gone and re-creates it, knowing that its holds
opened before were released (`renew_lease` returns False). A new process creates its lease
before it opens any hold, so a hold without a lease is never a live process's.
"""

from __future__ import annotations

from nemorouter.store.postgres.conn import Conn, PostgresConnection
from nemorouter.store.postgres.money import orphan_holds
from nemorouter.store.records import Hold

_RENEW = (
    "INSERT INTO process_leases (owner, expires_at, started_at, renewed_at)"
    " VALUES ($1, clock_timestamp() + make_interval(secs => $2), clock_timestamp(), clock_timestamp())"
    " ON CONFLICT (owner) DO UPDATE SET expires_at = excluded.expires_at, renewed_at = excluded.renewed_at"
    " RETURNING xmax <> 0"  # an update (the row was there), not an insert
)


class PostgresLeases(PostgresConnection):
    async def renew_lease(self, owner: str, seconds: float) -> bool:
        renewed = await self._atomic(lambda conn: conn.fetchval(_RENEW, owner, float(seconds)))
        return bool(renewed)

    async def drop_lease(self, owner: str) -> None:
        await self._atomic(lambda conn: conn.execute("DELETE FROM process_leases WHERE owner = $1", owner))

    async def recover_dead_holds(self) -> list[Hold]:
        async def op(conn: Conn) -> list[Hold]:
            await conn.execute("DELETE FROM process_leases WHERE expires_at <= clock_timestamp()")
            return await orphan_holds(conn, "owner NOT IN (SELECT owner FROM process_leases)", ())

        return await self._atomic(op)
