"""Accounts, their credits and their keys on SQLite, and leaked-key reports (which revoke keys)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from nemorouter.store import rows
from nemorouter.store.base import StoreError
from nemorouter.store.money_values import check_credit_total
from nemorouter.store.records import Account, ApiKey, Credit
from nemorouter.store.sqlite.conn import SqliteConnection
from nemorouter.timeutil import iso, new_id, utcnow

_KEY_FIELDS = {
    "name": "name",
    "limit": "limit_pico",
    "limit_reset": "limit_reset",
    "expires_at": "expires_at",
    "disabled": "disabled",
    "revoked_at": "revoked_at",
    "rpm": "rpm",
    "tpm": "tpm",
    "max_concurrency": "max_concurrency",
    "allowed_models": "allowed_models",
}


class SqliteAccounts(SqliteConnection):
    # -- accounts and credits -------------------------------------------------------------

    async def create_account(self, name: str, email: str | None) -> Account:
        aid = new_id("acct_", 10)
        with self._tx() as db:
            db.execute(
                "INSERT INTO accounts (id, name, email, created_at) VALUES (?, ?, ?, ?)",
                (aid, name, email, iso(utcnow())),
            )
        found = await self.get_account(aid)
        assert found is not None
        return found

    async def get_account(self, account_id: str) -> Account | None:
        row = self._one("SELECT * FROM accounts WHERE id = ?", (account_id,))
        return rows.account(row) if row else None

    async def list_accounts(self) -> list[Account]:
        return [rows.account(r) for r in self._all("SELECT * FROM accounts ORDER BY created_at")]

    async def update_account(self, account_id: str, fields: dict[str, Any]) -> Account | None:
        unknown = set(fields) - {"name", "email", "rpm", "tpm"}
        if unknown:
            raise StoreError(f"cannot change {sorted(unknown)} of an account")
        with self._tx() as db:
            for column, value in fields.items():
                db.execute(f"UPDATE accounts SET {column} = ? WHERE id = ?", (value, account_id))
            self._bump(db)
        return await self.get_account(account_id)

    async def add_credit(
        self, account_id: str, amount: int, reason: str, idempotency_key: str | None
    ) -> tuple[Credit, bool]:
        with self._tx() as db:
            if idempotency_key is not None:
                prior = db.execute(
                    "SELECT * FROM credits WHERE account_id = ? AND idempotency_key = ?",
                    (account_id, idempotency_key),
                ).fetchone()
                if prior is not None:
                    return rows.credit(prior), False
            found = db.execute("SELECT total_credits FROM accounts WHERE id = ?", (account_id,)).fetchone()
            if found is None:
                raise StoreError(f"no account {account_id}")
            check_credit_total(found[0], amount)
            cid = new_id("cr_", 10)
            db.execute(
                "INSERT INTO credits VALUES (?, ?, ?, ?, ?, ?)",
                (cid, account_id, amount, reason, idempotency_key, iso(utcnow())),
            )
            db.execute(
                "UPDATE accounts SET total_credits = total_credits + ? WHERE id = ?", (amount, account_id)
            )
            row = db.execute("SELECT * FROM credits WHERE id = ?", (cid,)).fetchone()
        return rows.credit(row), True

    async def list_credits(self, account_id: str) -> list[Credit]:
        found = self._all("SELECT * FROM credits WHERE account_id = ? ORDER BY created_at", (account_id,))
        return [rows.credit(r) for r in found]

    # -- keys -----------------------------------------------------------------------------

    async def create_key(self, key: ApiKey, secret_hash: str) -> ApiKey:
        with self._tx() as db:
            db.execute(
                "INSERT INTO api_keys (id, account_id, scope, name, hint, limit_pico, limit_reset, expires_at,"
                " disabled, rpm, tpm, max_concurrency, allowed_models, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key.id,
                    key.account_id,
                    key.scope,
                    key.name,
                    key.hint,
                    key.limit,
                    key.limit_reset,
                    key.expires_at,
                    int(key.disabled),
                    key.rpm,
                    key.tpm,
                    key.max_concurrency,
                    orjson.dumps(list(key.allowed_models)).decode()
                    if key.allowed_models is not None
                    else None,
                    key.created_at,
                    key.updated_at,
                ),
            )
            db.execute(
                "INSERT INTO key_secrets VALUES (?, ?, NULL, ?)", (secret_hash, key.id, key.created_at)
            )
        found = await self.get_key(key.id)
        assert found is not None
        return found

    async def find_key(self, secret_hash: str) -> tuple[ApiKey, str | None] | None:
        row = self._one(
            "SELECT k.*, s.valid_until, a.rpm AS account_rpm, a.tpm AS account_tpm FROM key_secrets s"
            " JOIN api_keys k ON k.id = s.key_id JOIN accounts a ON a.id = k.account_id WHERE s.hash = ?",
            (secret_hash,),
        )
        return (rows.api_key(row), row["valid_until"]) if row else None

    async def get_key(self, key_id: str) -> ApiKey | None:
        row = self._one("SELECT * FROM api_keys WHERE id = ?", (key_id,))
        return rows.api_key(row) if row else None

    async def list_keys(self, account_id: str | None = None, scope: str | None = None) -> list[ApiKey]:
        clauses, params = [], []
        if account_id is not None:
            clauses.append("account_id = ?")
            params.append(account_id)
        if scope is not None:
            clauses.append("scope = ?")
            params.append(scope)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        return [
            rows.api_key(r) for r in self._all(f"SELECT * FROM api_keys{where} ORDER BY created_at", params)
        ]

    async def update_key(self, key_id: str, fields: dict[str, Any]) -> ApiKey | None:
        unknown = set(fields) - set(_KEY_FIELDS)
        if unknown:
            raise StoreError(f"cannot change {sorted(unknown)} of a key")
        with self._tx() as db:
            for name, value in fields.items():
                if name == "allowed_models" and value is not None:
                    value = orjson.dumps(list(value)).decode()
                if name == "disabled":
                    value = int(bool(value))
                db.execute(f"UPDATE api_keys SET {_KEY_FIELDS[name]} = ? WHERE id = ?", (value, key_id))
            now = iso(utcnow())
            if "limit" in fields:  # `ledger verify` tells a lowered limit from a breach by this
                db.execute("INSERT INTO key_limit_changes VALUES (?, ?, ?)", (key_id, now, fields["limit"]))
            db.execute("UPDATE api_keys SET updated_at = ? WHERE id = ?", (now, key_id))
            self._bump(db)
        return await self.get_key(key_id)

    async def add_key_secret(self, key_id: str, secret_hash: str, retire_others_at: str | None) -> None:
        now = iso(utcnow())
        with self._tx() as db:
            db.execute(
                "UPDATE key_secrets SET valid_until = ? WHERE key_id = ? AND (valid_until IS NULL OR valid_until > ?)",
                (retire_others_at or now, key_id, retire_others_at or now),
            )
            db.execute("INSERT INTO key_secrets VALUES (?, ?, NULL, ?)", (secret_hash, key_id, now))
            self._bump(db)

    # -- records --------------------------------------------------------------------------

    async def record_leaks(
        self, found: Sequence[tuple[str, str | None, str | None]], items: int, reporter: str | None, now: str
    ) -> int:
        """Revoke each live key in `found` (key id, url, source) and keep the report; returns how many
        keys this report revoked."""
        revoked = 0
        with self._tx() as db:
            for key_id, url, source in found:
                row = db.execute(
                    "SELECT account_id, revoked_at FROM api_keys WHERE id = ?", (key_id,)
                ).fetchone()
                if row is None:
                    continue
                if row["revoked_at"] is None:
                    db.execute(
                        "UPDATE api_keys SET revoked_at = ?, updated_at = ? WHERE id = ?", (now, now, key_id)
                    )
                    revoked += 1
                db.execute(
                    "INSERT INTO leak_events VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (new_id("leak_", 10), key_id, row["account_id"], url, source, reporter, now),
                )
            db.execute(
                "INSERT INTO leak_reports VALUES (?, ?, ?, ?, ?)",
                (new_id("lrep_", 10), items, revoked, reporter, now),
            )
            if revoked:
                self._bump(db)
        return revoked

    async def list_leak_events(self, account_id: str) -> list[dict[str, Any]]:
        found = self._all(
            "SELECT id, key_id, url, source, reported_at FROM leak_events WHERE account_id = ? ORDER BY reported_at DESC",
            (account_id,),
        )
        return [dict(r) for r in found]
