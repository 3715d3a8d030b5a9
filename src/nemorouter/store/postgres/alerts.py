"""Alerts out on PostgreSQL: webhook settings per account and the durable outbox. Every replica
runs the delivery worker; a claim locks the rows it takes (`FOR UPDATE SKIP LOCKED`) and leases
them, so two replicas never send one alert at the same time."""

from __future__ import annotations

from typing import Any

from nemorouter.store.alert_records import Alert, AlertSettings, OutboxItem
from nemorouter.store.postgres.conn import Conn, PostgresConnection, Record

_INSERT = (
    "INSERT INTO outbox (id, account_id, event_type, payload, next_attempt_at, created_at)"
    " SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $5::text"
)
_ACCOUNT_HAS_WEBHOOK = " WHERE EXISTS (SELECT 1 FROM alert_settings WHERE account_id = $2::text)"
_ONCE = " ON CONFLICT (id) DO NOTHING RETURNING 1"
_CLAIM = (
    "WITH due AS (SELECT id, next_attempt_at FROM outbox WHERE next_attempt_at IS NOT NULL"
    " AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED),"
    " claimed AS (UPDATE outbox o SET attempts = o.attempts + 1, next_attempt_at = $2 FROM due"
    " WHERE o.id = due.id RETURNING o.*, due.next_attempt_at AS was_due)"
    " SELECT c.*, s.url, s.secret_envelope FROM claimed c"
    " LEFT JOIN alert_settings s ON s.account_id = c.account_id ORDER BY c.was_due, c.id"
)


def _settings(row: Record) -> AlertSettings:
    return AlertSettings(
        account_id=row["account_id"],
        url=row["url"],
        low_balance_threshold=row["low_balance_threshold"],
        secret_envelope=row["secret_envelope"],
        low_since=row["low_since"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def _insert(conn: Conn, alert: Alert) -> bool:
    """Queue `alert`, due at once; an account's alert only if it has a webhook. An id already
    queued is not queued again (ids of one-off facts are derived from the fact)."""
    sql = _INSERT + ("" if alert.account_id is None else _ACCOUNT_HAS_WEBHOOK) + _ONCE
    params = (alert.id, alert.account_id, alert.event_type, alert.payload, alert.created_at)
    return await conn.fetchval(sql, *params) is not None


class PostgresAlerts(PostgresConnection):
    async def get_alert_settings(self, account_id: str) -> AlertSettings | None:
        row = await self._one("SELECT * FROM alert_settings WHERE account_id = $1", account_id)
        return _settings(row) if row else None

    async def put_alert_settings(
        self, account_id: str, url: str, threshold: int | None, envelope: str, now: str
    ) -> tuple[AlertSettings, bool]:
        """Set the webhook; `envelope` (the sealed signing secret) is kept only when the account
        had none. Returns the settings and whether they were created (the secret is new)."""

        async def op(conn: Conn) -> tuple[AlertSettings, bool]:
            created = await self._matched(
                conn,
                "INSERT INTO alert_settings (account_id, url, low_balance_threshold, secret_envelope,"
                " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (account_id)"
                " DO NOTHING RETURNING 1",
                account_id,
                url,
                threshold,
                envelope,
                now,
            )
            if not created:
                # A new threshold is judged afresh: still below it means one new credits.low.
                await conn.execute(
                    "UPDATE alert_settings SET url = $1, updated_at = $3, low_since = CASE WHEN"
                    " low_balance_threshold IS NOT DISTINCT FROM $2::bigint THEN low_since END,"
                    " low_balance_threshold = $2::bigint WHERE account_id = $4",
                    url,
                    threshold,
                    now,
                    account_id,
                )
            row = await conn.fetchrow("SELECT * FROM alert_settings WHERE account_id = $1", account_id)
            return _settings(row), created

        return await self._atomic(op)

    async def enqueue_alert(self, alert: Alert) -> bool:
        return await self._atomic(lambda conn: _insert(conn, alert))

    async def low_balance_watch(self) -> list[tuple[AlertSettings, int]]:
        """Every account with a low-balance threshold, with its balance (credits - usage)."""
        found = await self._all(
            "SELECT s.*, a.total_credits, a.total_usage FROM alert_settings s"
            " JOIN accounts a ON a.id = s.account_id WHERE s.low_balance_threshold IS NOT NULL"
        )
        return [(_settings(r), r["total_credits"] - r["total_usage"]) for r in found]

    async def set_low_balance(self, account_id: str, alert: Alert | None, now: str) -> bool:
        """With `alert`: mark the account low and queue the alert, once until it is cleared (one
        replica wins the mark). Without: clear the mark. Returns whether anything changed."""

        async def op(conn: Conn) -> bool:
            if alert is None:
                return await self._matched(
                    conn,
                    "UPDATE alert_settings SET low_since = NULL WHERE account_id = $1"
                    " AND low_since IS NOT NULL RETURNING 1",
                    account_id,
                )
            if not await self._matched(
                conn,
                "UPDATE alert_settings SET low_since = $1 WHERE account_id = $2 AND low_since IS NULL RETURNING 1",
                now,
                account_id,
            ):
                return False
            return await _insert(conn, alert)

        return await self._atomic(op)

    async def claim_alerts(self, now: str, lease_until: str, limit: int) -> list[OutboxItem]:
        """Due deliveries, each leased until `lease_until` (so a crash mid-send retries then)
        and counted as one more attempt. Rows another replica is claiming are skipped."""
        if await self._one("SELECT 1 FROM outbox WHERE next_attempt_at <= $1 LIMIT 1", now) is None:
            return []  # the common case costs one index probe and no write
        found = await self._atomic(lambda conn: conn.fetch(_CLAIM, now, lease_until, limit))
        return [
            OutboxItem(
                id=r["id"],
                account_id=r["account_id"],
                event_type=r["event_type"],
                payload=r["payload"],
                attempts=r["attempts"],  # already counted by the claim
                created_at=r["created_at"],
                url=r["url"],
                secret_envelope=r["secret_envelope"],
            )
            for r in found
        ]

    async def alert_attempted(
        self, alert_id: str, *, delivered: bool, now: str, retry_at: str | None, error: str | None
    ) -> None:
        """Record an attempt: delivered (never sent again), to retry at `retry_at`, or given up."""
        if delivered:
            await self._atomic(
                lambda conn: conn.execute(
                    "UPDATE outbox SET delivered_at = $1, next_attempt_at = NULL, last_error = NULL WHERE id = $2",
                    now,
                    alert_id,
                )
            )
        elif retry_at is not None:
            await self._atomic(
                lambda conn: conn.execute(
                    "UPDATE outbox SET next_attempt_at = $1, last_error = $2 WHERE id = $3 AND delivered_at IS NULL",
                    retry_at,
                    error,
                    alert_id,
                )
            )
        else:
            await self._atomic(
                lambda conn: conn.execute(
                    "UPDATE outbox SET failed_at = $1, next_attempt_at = NULL, last_error = $2"
                    " WHERE id = $3 AND delivered_at IS NULL",
                    now,
                    error,
                    alert_id,
                )
            )

    async def list_alerts(self, account_id: str, limit: int) -> list[dict[str, Any]]:
        """The account's latest alerts and how their delivery went (newest first)."""
        found = await self._all(
            "SELECT id, event_type, attempts, next_attempt_at, delivered_at, failed_at, last_error, created_at"
            " FROM outbox WHERE account_id = $1 ORDER BY created_at DESC LIMIT $2",
            account_id,
            limit,
        )
        return [dict(r) for r in found]
