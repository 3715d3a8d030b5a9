"""Accounts, credits, customer keys, leak reports, usage records and billing reports on PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from nemorouter.money import Prices
from nemorouter.store import rows
from nemorouter.store.base import StoreError
from nemorouter.store.money_values import check_credit_total
from nemorouter.store.postgres.conn import Conn
from nemorouter.store.postgres.money import PostgresMoney
from nemorouter.store.records import Account, ApiKey, Credit, Generation, UsageRow
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
_ACCOUNT_FIELDS = {"name", "email", "rpm", "tpm"}
# A request is on the bill once settled; a failure carries no charge unless the ledger is
# broken, and then it is billed anyway so the bill matches the ledger (as in SQLite).
_CHARGED = "status <> 'pending' AND (status IN ('success', 'partial', 'cancelled') OR cost <> 0)"


def _models_text(allowed: Sequence[str] | None) -> str | None:
    return orjson.dumps(list(allowed)).decode() if allowed is not None else None


class PostgresAccounts(PostgresMoney):
    # -- accounts and credits -------------------------------------------------------------

    async def create_account(self, name: str, email: str | None) -> Account:
        row = await self._one(
            "INSERT INTO accounts (id, name, email, created_at) VALUES ($1, $2, $3, $4) RETURNING *",
            new_id("acct_", 10),
            name,
            email,
            iso(utcnow()),
        )
        return rows.account(row)

    async def get_account(self, account_id: str) -> Account | None:
        row = await self._one("SELECT * FROM accounts WHERE id = $1", account_id)
        return rows.account(row) if row else None

    async def list_accounts(self) -> list[Account]:
        return [rows.account(r) for r in await self._all("SELECT * FROM accounts ORDER BY created_at, id")]

    async def update_account(self, account_id: str, fields: dict[str, Any]) -> Account | None:
        unknown = set(fields) - _ACCOUNT_FIELDS
        if unknown:
            raise StoreError(f"cannot change {sorted(unknown)} of an account")

        async def op(conn: Conn) -> None:
            if fields:
                sql = f"UPDATE accounts SET {self._sets(list(fields))} WHERE id = ${len(fields) + 1}"
                await conn.execute(sql, *fields.values(), account_id)
            await self._bump(conn)

        await self._atomic(op)
        return await self.get_account(account_id)

    async def add_credit(
        self, account_id: str, amount: int, reason: str, idempotency_key: str | None
    ) -> tuple[Credit, bool]:
        async def op(conn: Conn) -> tuple[Credit, bool]:
            # A credit under a used idempotency key (even one a concurrent call is writing: the
            # insert waits for it) inserts nothing, and the first credit is the answer.
            row = await conn.fetchrow(
                "INSERT INTO credits VALUES ($1, $2, $3, $4, $5, $6)"
                " ON CONFLICT (account_id, idempotency_key) DO NOTHING RETURNING *",
                new_id("cr_", 10),
                account_id,
                amount,
                reason,
                idempotency_key,
                iso(utcnow()),
            )
            if row is None:
                prior = await conn.fetchrow(
                    "SELECT * FROM credits WHERE account_id = $1 AND idempotency_key = $2",
                    account_id,
                    idempotency_key,
                )
                return rows.credit(prior), False
            total = await conn.fetchval(
                "UPDATE accounts SET total_credits = total_credits + $1 WHERE id = $2 RETURNING total_credits",
                amount,
                account_id,
            )
            if total is not None:  # past the range: refused, and the credit rolled back
                check_credit_total(total - amount, amount)
            return rows.credit(row), True

        try:
            return await self._atomic(op)
        except asyncpg.ForeignKeyViolationError:
            raise StoreError(f"no account {account_id}") from None

    async def list_credits(self, account_id: str) -> list[Credit]:
        found = await self._all(
            "SELECT * FROM credits WHERE account_id = $1 ORDER BY created_at, id", account_id
        )
        return [rows.credit(r) for r in found]

    # -- keys -----------------------------------------------------------------------------

    async def create_key(self, key: ApiKey, secret_hash: str) -> ApiKey:
        async def op(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO api_keys (id, account_id, scope, name, hint, limit_pico, limit_reset, expires_at,"
                " disabled, rpm, tpm, max_concurrency, allowed_models, created_at, updated_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                key.id,
                key.account_id,
                key.scope,
                key.name,
                key.hint,
                key.limit,
                key.limit_reset,
                key.expires_at,
                key.disabled,
                key.rpm,
                key.tpm,
                key.max_concurrency,
                _models_text(key.allowed_models),
                key.created_at,
                key.updated_at,
            )
            await conn.execute(
                "INSERT INTO key_secrets VALUES ($1, $2, NULL, $3)", secret_hash, key.id, key.created_at
            )

        try:
            await self._atomic(op)
        except asyncpg.ForeignKeyViolationError:
            raise StoreError(f"no account {key.account_id}") from None
        except asyncpg.UniqueViolationError:
            raise StoreError(f"key {key.id} (or its secret) already exists") from None
        found = await self.get_key(key.id)
        assert found is not None
        return found

    async def find_key(self, secret_hash: str) -> tuple[ApiKey, str | None] | None:
        row = await self._one(
            "SELECT k.*, s.valid_until, a.rpm AS account_rpm, a.tpm AS account_tpm FROM key_secrets s"
            " JOIN api_keys k ON k.id = s.key_id JOIN accounts a ON a.id = k.account_id WHERE s.hash = $1",
            secret_hash,
        )
        return (rows.api_key(row), row["valid_until"]) if row else None

    async def get_key(self, key_id: str) -> ApiKey | None:
        row = await self._one("SELECT * FROM api_keys WHERE id = $1", key_id)
        return rows.api_key(row) if row else None

    async def list_keys(self, account_id: str | None = None, scope: str | None = None) -> list[ApiKey]:
        clauses, params = [], []
        for column, value in (("account_id", account_id), ("scope", scope)):
            if value is not None:
                params.append(value)
                clauses.append(f"{column} = ${len(params)}")
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        found = await self._all(f"SELECT * FROM api_keys{where} ORDER BY created_at, id", *params)
        return [rows.api_key(r) for r in found]

    async def update_key(self, key_id: str, fields: dict[str, Any]) -> ApiKey | None:
        unknown = set(fields) - set(_KEY_FIELDS)
        if unknown:
            raise StoreError(f"cannot change {sorted(unknown)} of a key")
        values = dict(fields)
        if "allowed_models" in values:
            values["allowed_models"] = _models_text(values["allowed_models"])
        if "disabled" in values:
            values["disabled"] = bool(values["disabled"])
        values["updated_at"] = iso(utcnow())
        columns = [_KEY_FIELDS.get(name, name) for name in values]

        async def op(conn: Conn) -> None:
            sql = f"UPDATE api_keys SET {self._sets(columns)} WHERE id = ${len(columns) + 1}"
            await conn.execute(sql, *values.values(), key_id)
            if "limit" in fields:  # `ledger verify` tells a lowered limit from a breach by this
                await conn.execute(
                    "INSERT INTO key_limit_changes VALUES ($1, $2, $3)",
                    key_id,
                    values["updated_at"],
                    fields["limit"],
                )
            await self._bump(conn)

        await self._atomic(op)
        return await self.get_key(key_id)

    async def add_key_secret(self, key_id: str, secret_hash: str, retire_others_at: str | None) -> None:
        now = iso(utcnow())
        retire = retire_others_at or now

        async def op(conn: Conn) -> None:
            await conn.execute(
                "UPDATE key_secrets SET valid_until = $1 WHERE key_id = $2"
                " AND (valid_until IS NULL OR valid_until > $1)",
                retire,
                key_id,
            )
            await conn.execute("INSERT INTO key_secrets VALUES ($1, $2, NULL, $3)", secret_hash, key_id, now)
            await self._bump(conn)

        try:
            await self._atomic(op)
        except asyncpg.ForeignKeyViolationError:
            raise StoreError(f"no key {key_id}") from None
        except asyncpg.UniqueViolationError:
            raise StoreError("that secret is already in use") from None

    # -- records --------------------------------------------------------------------------

    async def record_leaks(
        self, found: Sequence[tuple[str, str | None, str | None]], items: int, reporter: str | None, now: str
    ) -> int:
        """Revoke each live key in `found` (key id, url, source) and keep the report; returns how many
        keys this report revoked (a key two reports name at once is counted by one of them)."""

        async def op(conn: Conn) -> int:
            revoked = 0
            # Keys in id order: two reports naming the same keys lock them in the same order.
            for key_id, url, source in sorted(found, key=lambda item: item[0]):
                account_id = await conn.fetchval(
                    "UPDATE api_keys SET revoked_at = $2, updated_at = $2 WHERE id = $1"
                    " AND revoked_at IS NULL RETURNING account_id",
                    key_id,
                    now,
                )
                if account_id is not None:
                    revoked += 1
                else:
                    account_id = await conn.fetchval("SELECT account_id FROM api_keys WHERE id = $1", key_id)
                    if account_id is None:
                        continue
                await conn.execute(
                    "INSERT INTO leak_events VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    new_id("leak_", 10),
                    key_id,
                    account_id,
                    url,
                    source,
                    reporter,
                    now,
                )
            await conn.execute(
                "INSERT INTO leak_reports VALUES ($1, $2, $3, $4, $5)",
                new_id("lrep_", 10),
                items,
                revoked,
                reporter,
                now,
            )
            if revoked:
                await self._bump(conn)
            return revoked

        return await self._atomic(op)

    async def list_leak_events(self, account_id: str) -> list[dict[str, Any]]:
        found = await self._all(
            "SELECT id, key_id, url, source, reported_at FROM leak_events WHERE account_id = $1"
            " ORDER BY reported_at DESC, id",
            account_id,
        )
        return [dict(r) for r in found]

    async def list_generations(self, account_id: str, key_id: str | None, limit: int) -> list[Generation]:
        if key_id is None:
            found = await self._all(
                "SELECT * FROM generations WHERE account_id = $1 ORDER BY id DESC LIMIT $2", account_id, limit
            )
        else:
            found = await self._all(
                "SELECT * FROM generations WHERE key_id = $1 AND account_id = $2 ORDER BY id DESC LIMIT $3",
                key_id,
                account_id,
                limit,
            )
        return [rows.generation(r) for r in found]

    async def get_generation(self, generation_id: str) -> Generation | None:
        row = await self._one("SELECT * FROM generations WHERE id = $1", generation_id)
        return rows.generation(row) if row else None

    # -- billing reports (usage API, monthly statements): exact NUMERIC sums ----------------

    async def usage_rows(self, account_id: str, since: str, until: str) -> list[UsageRow]:
        found = await self._all(
            "SELECT substr(created_at, 1, 10) AS day, key_id, model, provider, price_version_id, COUNT(*),"
            " SUM(prompt_tokens), SUM(completion_tokens), SUM(cached_tokens), SUM(cache_write_tokens),"
            " SUM(reasoning_tokens), SUM(cost), unit, SUM(units) FROM generations"
            f" WHERE account_id = $1 AND created_at >= $2 AND created_at < $3 AND {_CHARGED}"
            " GROUP BY 1, 2, 3, 4, 5, 13 ORDER BY 1, 2, 3, 4, 5, 13",
            account_id,
            since,
            until,
        )
        return [_usage_row(r) for r in found]

    async def provider_usage_rows(self, provider: str, since: str, until: str) -> list[UsageRow]:
        found = await self._all(
            "SELECT substr(created_at, 1, 10) AS day, COALESCE(provider_key_id, ''), COALESCE(upstream_model, ''),"
            " provider, price_version_id, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), SUM(cached_tokens),"
            " SUM(cache_write_tokens), SUM(reasoning_tokens), SUM(cost), unit, SUM(units) FROM generations"
            f" WHERE provider = $1 AND created_at >= $2 AND created_at < $3 AND {_CHARGED}"
            " GROUP BY 1, 2, 3, 4, 5, 13 ORDER BY 1, 2, 3, 4, 5, 13",
            provider,
            since,
            until,
        )
        return [_usage_row(r) for r in found]

    async def charges_before(self, account_id: str, until: str) -> int:
        total = await self._one(
            "SELECT COALESCE(SUM(cost), 0) FROM generations WHERE account_id = $1 AND created_at < $2"
            " AND status <> 'pending' AND cost <> 0",
            account_id,
            until,
        )
        assert total is not None
        return int(total[0])

    async def price_versions(self, ids: Sequence[int]) -> dict[int, Prices]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        found = await self._all("SELECT id, pricing FROM price_versions WHERE id = ANY($1::bigint[])", wanted)
        return {int(r["id"]): rows.prices(r["pricing"]) for r in found}


def _usage_row(r: Any) -> UsageRow:
    """A row of `usage_rows`' sums (NUMERIC: exact, made ints): day, key, model, provider, price
    version, requests, tokens..., cost, then the unit and its count."""
    return UsageRow.of((r[0], r[1], r[2], r[3], r[4], r[12]), [int(v) for v in (*r[5:12], r[13])])
