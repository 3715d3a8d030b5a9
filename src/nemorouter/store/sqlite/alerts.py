"""Alerts out on SQLite: webhook settings per account and the durable outbox."""

from __future__ import annotations

import sqlite3
from typing import Any

from nemorouter.store.alert_records import Alert, AlertSettings, OutboxItem
from nemorouter.store.sqlite.conn import SqliteConnection

_INSERT = (
    "INSERT OR IGNORE INTO outbox (id, account_id, event_type, payload, next_attempt_at, created_at)"
    " SELECT ?1, ?2, ?3, ?4, ?5, ?5"
)


def _settings(row: sqlite3.Row) -> AlertSettings:
    return AlertSettings(
        account_id=row["account_id"],
        url=row["url"],
        low_balance_threshold=row["low_balance_threshold"],
        secret_envelope=row["secret_envelope"],
        low_since=row["low_since"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _insert(db: sqlite3.Connection, alert: Alert) -> bool:
    """Queue `alert`, due at once; an account's alert only if it has a webhook. An id already
    queued is not queued again (ids of one-off facts are derived from the fact)."""
    params = (alert.id, alert.account_id, alert.event_type, alert.payload, alert.created_at)
    if alert.account_id is None:
        return db.execute(_INSERT, params).rowcount == 1
    sql = _INSERT + " WHERE EXISTS (SELECT 1 FROM alert_settings WHERE account_id = ?2)"
    return db.execute(sql, params).rowcount == 1


class SqliteAlerts(SqliteConnection):
    async def get_alert_settings(self, account_id: str) -> AlertSettings | None:
        row = self._one("SELECT * FROM alert_settings WHERE account_id = ?", (account_id,))
        return _settings(row) if row else None

    async def put_alert_settings(
        self, account_id: str, url: str, threshold: int | None, envelope: str, now: str
    ) -> tuple[AlertSettings, bool]:
        """Set the webhook; `envelope` (the sealed signing secret) is kept only when the account
        had none. Returns the settings and whether they were created (the secret is new)."""
        with self._tx() as db:
            created = (
                db.execute(
                    "INSERT OR IGNORE INTO alert_settings (account_id, url, low_balance_threshold,"
                    " secret_envelope, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (account_id, url, threshold, envelope, now, now),
                ).rowcount
                == 1
            )
            if not created:
                # A new threshold is judged afresh: still below it means one new credits.low.
                db.execute(
                    "UPDATE alert_settings SET url = ?1, updated_at = ?3, low_since = CASE WHEN"
                    " low_balance_threshold IS ?2 THEN low_since END, low_balance_threshold = ?2"
                    " WHERE account_id = ?4",
                    (url, threshold, now, account_id),
                )
            row = db.execute("SELECT * FROM alert_settings WHERE account_id = ?", (account_id,)).fetchone()
        return _settings(row), created

    async def enqueue_alert(self, alert: Alert) -> bool:
        with self._tx() as db:
            return _insert(db, alert)

    async def low_balance_watch(self) -> list[tuple[AlertSettings, int]]:
        """Every account with a low-balance threshold, with its balance (credits - usage)."""
        found = self._all(
            "SELECT s.*, a.total_credits, a.total_usage FROM alert_settings s"
            " JOIN accounts a ON a.id = s.account_id WHERE s.low_balance_threshold IS NOT NULL"
        )
        return [(_settings(r), r["total_credits"] - r["total_usage"]) for r in found]

    async def set_low_balance(self, account_id: str, alert: Alert | None, now: str) -> bool:
        """With `alert`: mark the account low and queue the alert, once until it is cleared.
        Without: clear the mark. Returns whether anything changed."""
        with self._tx() as db:
            if alert is None:
                return bool(
                    db.execute(
                        "UPDATE alert_settings SET low_since = NULL WHERE account_id = ? AND low_since IS NOT NULL",
                        (account_id,),
                    ).rowcount
                )
            if not db.execute(
                "UPDATE alert_settings SET low_since = ? WHERE account_id = ? AND low_since IS NULL",
                (now, account_id),
            ).rowcount:
                return False
            return _insert(db, alert)

    async def claim_alerts(self, now: str, lease_until: str, limit: int) -> list[OutboxItem]:
        """Due deliveries, each leased until `lease_until` (so a crash mid-send retries then)
        and counted as one more attempt."""
        due = "o.next_attempt_at IS NOT NULL AND o.next_attempt_at <= ?"
        if self._one(f"SELECT 1 FROM outbox o WHERE {due} LIMIT 1", (now,)) is None:
            return []  # the common case costs one index probe and no write
        with self._tx() as db:
            found = db.execute(
                "SELECT o.*, s.url, s.secret_envelope FROM outbox o LEFT JOIN alert_settings s"
                f" ON s.account_id = o.account_id WHERE {due} ORDER BY o.next_attempt_at LIMIT ?",
                (now, limit),
            ).fetchall()
            db.executemany(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ? WHERE id = ?",
                [(lease_until, r["id"]) for r in found],
            )
        return [
            OutboxItem(
                id=r["id"],
                account_id=r["account_id"],
                event_type=r["event_type"],
                payload=r["payload"],
                attempts=r["attempts"] + 1,
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
        with self._tx() as db:
            if delivered:
                db.execute(
                    "UPDATE outbox SET delivered_at = ?, next_attempt_at = NULL, last_error = NULL WHERE id = ?",
                    (now, alert_id),
                )
            elif retry_at is not None:
                db.execute(
                    "UPDATE outbox SET next_attempt_at = ?, last_error = ? WHERE id = ? AND delivered_at IS NULL",
                    (retry_at, error, alert_id),
                )
            else:
                db.execute(
                    "UPDATE outbox SET failed_at = ?, next_attempt_at = NULL, last_error = ?"
                    " WHERE id = ? AND delivered_at IS NULL",
                    (now, error, alert_id),
                )

    async def list_alerts(self, account_id: str, limit: int) -> list[dict[str, Any]]:
        """The account's latest alerts and how their delivery went (newest first)."""
        found = self._all(
            "SELECT id, event_type, attempts, next_attempt_at, delivered_at, failed_at, last_error, created_at"
            " FROM outbox WHERE account_id = ? ORDER BY created_at DESC LIMIT ?",
            (account_id, limit),
        )
        return [dict(r) for r in found]
