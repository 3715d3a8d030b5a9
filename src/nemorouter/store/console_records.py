"""Records of the web console: users of an account and signed-in sessions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    id: str
    account_id: str
    email: str
    password_hash: str | None  # argon2id; None until the invite is used
    created_at: str


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A signed-in browser: a user of one account, or the operator (`user` None)."""

    user: ConsoleUser | None
    csrf_token: str
    expires_at: str
    granted_by: str | None = None  # the operator's: a hash of the admin token at sign-in

    @property
    def operator(self) -> bool:
        return self.user is None


def user_of(row: Any) -> ConsoleUser:
    return ConsoleUser(row["id"], row["account_id"], row["email"], row["password_hash"], row["created_at"])


class ConsoleStore(Protocol):
    """The console's part of the store protocol (both backends)."""

    async def upsert_console_user(self, account_id: str, email: str, now: str) -> ConsoleUser:
        """The user with this email (created for the account if new). An email that belongs to
        another account is refused with StoreError."""
        ...

    async def get_console_user(self, email: str) -> ConsoleUser | None: ...
    async def create_console_invite(
        self, user_id: str, token_hash: str, expires_at: str, now: str
    ) -> None: ...
    async def use_console_invite(self, token_hash: str, password_hash: str, now: str) -> ConsoleUser | None:
        """Set the password of the invite's user and spend the invite, in one step; None if the
        invite is unknown, used or expired."""
        ...

    async def console_invite_open(self, token_hash: str, now: str) -> ConsoleUser | None:
        """The user of an unused, unexpired invite (the set-password page shows the email)."""
        ...

    async def create_console_session(
        self,
        token_hash: str,
        user_id: str | None,
        csrf_token: str,
        expires_at: str,
        now: str,
        granted_by: str | None = None,
    ) -> None:
        """Store a session (and forget every expired one)."""
        ...

    async def get_console_session(self, token_hash: str, now: str) -> ConsoleSession | None: ...
    async def delete_console_session(self, token_hash: str) -> None: ...
