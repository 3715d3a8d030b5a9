"""The web console's users, invites and sessions on PostgreSQL (migration 0005)."""

from __future__ import annotations

from nemorouter.store.base import StoreError
from nemorouter.store.console_records import ConsoleSession, ConsoleUser, user_of
from nemorouter.store.postgres.conn import Conn, PostgresConnection
from nemorouter.timeutil import new_id


class PostgresConsole(PostgresConnection):
    async def upsert_console_user(self, account_id: str, email: str, now: str) -> ConsoleUser:
        async def op(conn: Conn) -> ConsoleUser:
            await conn.execute(
                "INSERT INTO console_users (id, account_id, email, created_at, updated_at)"
                " VALUES ($1, $2, $3, $4, $4) ON CONFLICT (email) DO NOTHING",
                new_id("usr_", 10),
                account_id,
                email,
                now,
            )
            return user_of(await conn.fetchrow("SELECT * FROM console_users WHERE email = $1", email))

        user = await self._atomic(op)
        if user.account_id != account_id:
            raise StoreError("this email is already a console user of another account")
        return user

    async def get_console_user(self, email: str) -> ConsoleUser | None:
        row = await self._one("SELECT * FROM console_users WHERE email = $1", email)
        return user_of(row) if row else None

    async def create_console_invite(self, user_id: str, token_hash: str, expires_at: str, now: str) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO console_invites (token_hash, user_id, expires_at, created_at)"
                " VALUES ($1, $2, $3, $4)",
                token_hash,
                user_id,
                expires_at,
                now,
            )

        await self._atomic(op)

    async def console_invite_open(self, token_hash: str, now: str) -> ConsoleUser | None:
        row = await self._one(
            "SELECT u.* FROM console_invites i JOIN console_users u ON u.id = i.user_id"
            " WHERE i.token_hash = $1 AND i.used_at IS NULL AND i.expires_at > $2",
            token_hash,
            now,
        )
        return user_of(row) if row else None

    async def use_console_invite(self, token_hash: str, password_hash: str, now: str) -> ConsoleUser | None:
        async def op(conn: Conn) -> ConsoleUser | None:
            user_id = await conn.fetchval(
                "UPDATE console_invites SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL"
                " AND expires_at > $1 RETURNING user_id",
                now,
                token_hash,
            )
            if user_id is None:
                return None
            row = await conn.fetchrow(
                "UPDATE console_users SET password_hash = $1, updated_at = $2 WHERE id = $3 RETURNING *",
                password_hash,
                now,
                user_id,
            )
            # A new password ends every session the user had.
            await conn.execute("DELETE FROM console_sessions WHERE user_id = $1", user_id)
            return user_of(row)

        return await self._atomic(op)

    async def create_console_session(
        self,
        token_hash: str,
        user_id: str | None,
        csrf_token: str,
        expires_at: str,
        now: str,
        granted_by: str | None = None,
    ) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute("DELETE FROM console_sessions WHERE expires_at <= $1", now)
            await conn.execute(
                "INSERT INTO console_sessions (token_hash, user_id, csrf_token, expires_at, created_at, granted_by)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                token_hash,
                user_id,
                csrf_token,
                expires_at,
                now,
                granted_by,
            )

        await self._atomic(op)

    async def get_console_session(self, token_hash: str, now: str) -> ConsoleSession | None:
        row = await self._one(
            "SELECT s.csrf_token, s.expires_at, s.granted_by, s.user_id, u.* FROM console_sessions s"
            " LEFT JOIN console_users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > $2",
            token_hash,
            now,
        )
        if row is None:
            return None
        user = user_of(row) if row["user_id"] is not None else None
        return ConsoleSession(user, row["csrf_token"], row["expires_at"], row["granted_by"])

    async def delete_console_session(self, token_hash: str) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute("DELETE FROM console_sessions WHERE token_hash = $1", token_hash)

        await self._atomic(op)
