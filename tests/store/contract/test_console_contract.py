"""The console's users, invites and sessions: the same behaviour on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from nemorouter.service.administration.admin import Admin
from nemorouter.store.base import Store, StoreError

T0 = "2026-03-02T10:00:00.000000Z"
T1 = "2026-03-02T11:00:00.000000Z"
T2 = "2026-03-02T12:00:00.000000Z"


async def test_users_invites_and_sessions(admin: Admin, store: Store) -> None:
    account = await admin.create_account({"name": "a"})
    other = await admin.create_account({"name": "b"})
    user = await store.upsert_console_user(account.id, "ada@example.com", T0)
    assert (user.account_id, user.email, user.password_hash) == (account.id, "ada@example.com", None)
    assert (await store.upsert_console_user(account.id, "ada@example.com", T1)).id == user.id
    with pytest.raises(StoreError):
        await store.upsert_console_user(other.id, "ada@example.com", T1)
    assert await store.get_console_user("nobody@example.com") is None

    # An invite: open until it expires, spent by its first use (which sets the password).
    await store.create_console_invite(user.id, "h-invite", T2, T0)
    await store.create_console_invite(user.id, "h-late", T1, T0)
    assert (await store.console_invite_open("h-invite", T1)) == user
    assert await store.console_invite_open("h-late", T1) is None  # expired at T1
    assert await store.use_console_invite("h-late", "argon", T1) is None
    await store.create_console_session("h-old-session", user.id, "c0", T2, T0)
    used = await store.use_console_invite("h-invite", "argon2id-hash", T1)
    assert used is not None and used.password_hash == "argon2id-hash"
    assert await store.use_console_invite("h-invite", "again", T1) is None
    assert await store.console_invite_open("h-invite", T1) is None
    assert (await store.get_console_user("ada@example.com")) == used
    # Setting a password ends the user's earlier sessions.
    assert await store.get_console_session("h-old-session", T1) is None

    # Sessions: a user's and the operator's; found until they expire; deleted on sign-out.
    await store.create_console_session("h-s1", user.id, "csrf-1", T2, T0)
    await store.create_console_session("h-op", None, "csrf-op", T1, T0, granted_by="grant")
    found = await store.get_console_session("h-s1", T1)
    assert found is not None and found.user == used and found.csrf_token == "csrf-1" and not found.operator
    assert found.granted_by is None
    op = await store.get_console_session("h-op", T0)
    assert op is not None and op.operator and op.user is None and op.granted_by == "grant"
    assert await store.get_console_session("h-op", T1) is None  # expired
    await store.delete_console_session("h-s1")
    assert await store.get_console_session("h-s1", T0) is None
    # A new session sweeps the expired ones away.
    await store.create_console_session("h-s2", user.id, "csrf-2", T2, T2)
    assert await store.get_console_session("h-op", T0) is None
