"""The web console's users, invites and sessions on SQLite (migration 0005)."""

from __future__ import annotations

from nemorouter.store.base import StoreError
from nemorouter.store.console_records import ConsoleSession, ConsoleUser, user_of
from nemorouter.store.sqlite.conn import SqliteConnection
from nemorouter.timeutil import new_id


class SqliteConsole(SqliteConnection):
    async def upsert_console_user(self, account_id: str, email: str, now: str) -> ConsoleUser:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO console_users (id, account_id, email, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (new_id("usr_", 10), account_id, email, now, now),
            )
            row = db.execute("SELECT * FROM console_users WHERE email = ?", (email,)).fetchone()
        if row["account_id"] != account_id:
            raise StoreError("this email is already a console user of another account")
        return user_of(row)

    async def get_console_user(self, email: str) -> ConsoleUser | None:
        row = self._one("SELECT * FROM console_users WHERE email = ?", (email,))
        return user_of(row) if row else None

    async def create_console_invite(self, user_id: str, token_hash: str, expires_at: str, now: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO console_invites (token_hash, user_id, expires_at, created_at) VALUES (?, ?, ?, ?)",
                (token_hash, user_id, expires_at, now),
            )

    async def console_invite_open(self, token_hash: str, now: str) -> ConsoleUser | None:
        row = self._one(
            "SELECT u.* FROM console_invites i JOIN console_users u ON u.id = i.user_id"
            " WHERE i.token_hash = ? AND i.used_at IS NULL AND i.expires_at > ?",
            (token_hash, now),
        )
        return user_of(row) if row else None

    async def use_console_invite(self, token_hash: str, password_hash: str, now: str) -> ConsoleUser | None:
        with self._tx() as db:
            row = db.execute(
                "UPDATE console_invites SET used_at = ? WHERE token_hash = ? AND used_at IS NULL"
                " AND expires_at > ? RETURNING user_id",
                (now, token_hash, now),
            ).fetchone()
            if row is None:
                return None
            user = db.execute(
                "UPDATE console_users SET password_hash = ?, updated_at = ? WHERE id = ? RETURNING *",
                (password_hash, now, row["user_id"]),
            ).fetchone()
            # A new password ends every session the user had.
            db.execute("DELETE FROM console_sessions WHERE user_id = ?", (row["user_id"],))
        return user_of(user)

    async def create_console_session(
        self,
        token_hash: str,
        user_id: str | None,
        csrf_token: str,
        expires_at: str,
        now: str,
        granted_by: str | None = None,
    ) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM console_sessions WHERE expires_at <= ?", (now,))
            db.execute(
                "INSERT INTO console_sessions (token_hash, user_id, csrf_token, expires_at, created_at, granted_by)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (token_hash, user_id, csrf_token, expires_at, now, granted_by),
            )

    async def get_console_session(self, token_hash: str, now: str) -> ConsoleSession | None:
        row = self._one(
            "SELECT s.csrf_token, s.expires_at, s.granted_by, s.user_id, u.* FROM console_sessions s"
            " LEFT JOIN console_users u ON u.id = s.user_id WHERE s.token_hash = ? AND s.expires_at > ?",
            (token_hash, now),
        )
        if row is None:
            return None
        user = user_of(row) if row["user_id"] is not None else None
        return ConsoleSession(user, row["csrf_token"], row["expires_at"], row["granted_by"])

    async def delete_console_session(self, token_hash: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM console_sessions WHERE token_hash = ?", (token_hash,))
