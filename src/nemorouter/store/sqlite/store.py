"""The embedded store: one SQLite file in WAL mode.

This module holds configuration and administration; the money path (reserve, settle,
release, ledger checks) is in `sqlite.money`, the connection and group commit in `sqlite.conn`.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from importlib import resources
from typing import Any

import orjson

from nemorouter.money import Prices
from nemorouter.store import rows
from nemorouter.store.base import StoreError
from nemorouter.store.money_values import check_credit_total
from nemorouter.store.records import (
    Account,
    ApiKey,
    CatalogEntry,
    Credit,
    Deployment,
    Generation,
    Model,
    Provider,
    ProviderKey,
    UsageRow,
)
from nemorouter.store.sqlite.alerts import SqliteAlerts
from nemorouter.store.sqlite.audit import SqliteAudit
from nemorouter.store.sqlite.console import SqliteConsole
from nemorouter.store.sqlite.leases import SqliteLeases
from nemorouter.store.sqlite.ledger import SqliteLedger
from nemorouter.store.sqlite.money import SqliteMoney
from nemorouter.store.sqlite.seals import SqliteSeals
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
_PROVIDER_KEY_FIELDS = {"disabled", "weight", "label", "quarantined_at"}


class SqliteStore(
    SqliteMoney, SqliteLedger, SqliteAlerts, SqliteSeals, SqliteLeases, SqliteAudit, SqliteConsole
):
    """Implements `nemorouter.store.base.Store` on SQLite (alerts out and the ledger's hash chain
    in `sqlite.alerts` and `sqlite.seals`)."""

    @staticmethod
    def _bump(db: sqlite3.Connection) -> None:
        """Config changed: every server's routing table reloads on its next version check."""
        db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'config_version'")

    def _migration_files(self) -> list[tuple[int, str]]:
        folder = resources.files("nemorouter.store.sqlite") / "migrations"
        found = [
            (int(f.name.split("_", 1)[0]), f.read_text()) for f in folder.iterdir() if f.name.endswith(".sql")
        ]
        return sorted(found)

    async def pending_migrations(self) -> list[int]:
        try:
            done = {r[0] for r in self._all("SELECT version FROM schema_migrations")}
        except sqlite3.OperationalError:
            done = set()
        return [version for version, _ in self._migration_files() if version not in done]

    async def applied_migrations(self) -> dict[int, str]:
        try:
            found = self._all("SELECT version, applied_at FROM schema_migrations ORDER BY version")
        except sqlite3.OperationalError:
            return {}
        return {int(r[0]): str(r[1]) for r in found}

    async def migrate(self) -> list[int]:
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT)"
        )
        done = {r[0] for r in self._all("SELECT version FROM schema_migrations")}
        applied = []
        for version, script in self._migration_files():
            if version in done:
                continue
            self._db.executescript(
                "BEGIN IMMEDIATE;\n"
                + script
                + f"\nINSERT INTO schema_migrations VALUES ({version}, '{iso(utcnow())}');\nCOMMIT;"
            )
            applied.append(version)
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('config_version', '1')")
        return applied

    async def close(self) -> None:
        self.close_connection()

    async def get_meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return str(row[0]) if row else None

    async def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    async def config_version(self) -> int:
        row = self._one("SELECT value FROM meta WHERE key = 'config_version'")
        return int(row[0]) if row else 0

    # -- catalog --------------------------------------------------------------------------

    async def load_catalog(self, entries: Sequence[CatalogEntry]) -> int:
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO catalog VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        e.vendor,
                        e.model_id,
                        e.mode,
                        orjson.dumps(e.pricing).decode(),
                        e.context_length,
                        e.max_output,
                        e.source,
                    )
                    for e in entries
                ],
            )
        return len(entries)

    async def list_catalog(self, vendor: str | None = None) -> list[CatalogEntry]:
        sql = "SELECT * FROM catalog" + (" WHERE vendor = ?" if vendor else "") + " ORDER BY vendor, model_id"
        return [
            CatalogEntry(
                r["vendor"],
                r["model_id"],
                r["mode"],
                orjson.loads(r["pricing"]),
                r["context_length"],
                r["max_output"],
                r["source"],
            )
            for r in self._all(sql, (vendor,) if vendor else ())
        ]

    # -- providers ------------------------------------------------------------------------

    async def create_provider(self, name: str, kind: str, base_url: str, config: dict[str, Any]) -> Provider:
        pid = new_id("prov_", 8)
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO providers (id, name, kind, base_url, config, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (pid, name, kind, base_url, orjson.dumps(config).decode(), iso(utcnow())),
                )
                self._bump(db)
        except sqlite3.IntegrityError:
            raise StoreError(f"a provider named {name!r} already exists") from None
        found = await self.get_provider(pid)
        assert found is not None
        return found

    async def get_provider(self, name_or_id: str) -> Provider | None:
        row = self._one("SELECT * FROM providers WHERE id = ? OR name = ?", (name_or_id, name_or_id))
        return rows.provider(row) if row else None

    async def list_providers(self) -> list[Provider]:
        return [rows.provider(r) for r in self._all("SELECT * FROM providers ORDER BY name")]

    async def add_provider_key(
        self, provider_id: str, key_id: str, label: str, weight: int, fingerprint: str, envelope: str
    ) -> ProviderKey:
        with self._tx() as db:
            db.execute(
                "INSERT INTO provider_keys (id, provider_id, label, weight, fingerprint, envelope, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key_id, provider_id, label, weight, fingerprint, envelope, iso(utcnow())),
            )
            self._bump(db)
        row = self._one("SELECT * FROM provider_keys WHERE id = ?", (key_id,))
        return rows.provider_key(row)

    async def update_provider_key(self, key_id: str, fields: dict[str, Any]) -> ProviderKey | None:
        unknown = set(fields) - _PROVIDER_KEY_FIELDS
        if unknown:
            raise StoreError(f"cannot change {sorted(unknown)} of a provider key")
        with self._tx() as db:
            for column, value in fields.items():
                db.execute(f"UPDATE provider_keys SET {column} = ? WHERE id = ?", (value, key_id))
            self._bump(db)
        row = self._one("SELECT * FROM provider_keys WHERE id = ?", (key_id,))
        return rows.provider_key(row) if row else None

    async def delete_provider_key(self, key_id: str) -> bool:
        with self._tx() as db:
            deleted = db.execute("DELETE FROM provider_keys WHERE id = ?", (key_id,)).rowcount
            self._bump(db)
        return bool(deleted)

    async def list_provider_keys(self, provider_id: str | None = None) -> list[ProviderKey]:
        if provider_id is None:
            return [
                rows.provider_key(r) for r in self._all("SELECT * FROM provider_keys ORDER BY created_at")
            ]
        found = self._all(
            "SELECT * FROM provider_keys WHERE provider_id = ? ORDER BY created_at", (provider_id,)
        )
        return [rows.provider_key(r) for r in found]

    # -- models ---------------------------------------------------------------------------

    def _price_version(self, db: sqlite3.Connection, prices: Prices) -> int:
        text = rows.prices_text(prices)
        row = db.execute("SELECT id FROM price_versions WHERE pricing = ? ORDER BY id DESC LIMIT 1", (text,))
        found = row.fetchone()
        if found:
            return int(found[0])
        cur = db.execute(
            "INSERT INTO price_versions (pricing, created_at) VALUES (?, ?)", (text, iso(utcnow()))
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    async def upsert_model(
        self,
        model_id: str,
        name: str,
        mode: str,
        context_length: int,
        max_output: int,
        prices: Prices,
        deployments: Sequence[dict[str, Any]],
        replace_deployments: bool,
    ) -> Model:
        now = iso(utcnow())
        with self._tx() as db:
            version = self._price_version(db, prices)
            db.execute(
                "INSERT INTO models (id, name, mode, context_length, max_output, price_version_id, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET name = excluded.name,"
                " mode = excluded.mode, context_length = excluded.context_length, max_output = excluded.max_output,"
                " price_version_id = excluded.price_version_id, updated_at = excluded.updated_at",
                (model_id, name, mode, context_length, max_output, version, now, now),
            )
            if replace_deployments:
                db.execute("DELETE FROM deployments WHERE model_id = ?", (model_id,))
            for dep in deployments:
                provider = db.execute(
                    "SELECT id FROM providers WHERE name = ? OR id = ?", (dep["provider"], dep["provider"])
                ).fetchone()
                if provider is None:
                    raise StoreError(f"unknown provider {dep['provider']!r}")
                own = dep.get("prices")
                db.execute(
                    "DELETE FROM deployments WHERE model_id = ? AND provider_id = ? AND upstream_model = ?",
                    (model_id, provider[0], dep["upstream_model"]),
                )
                db.execute(
                    "INSERT INTO deployments (id, model_id, provider_id, upstream_model, priority, weight,"
                    " price_version_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        new_id("dep_", 8),
                        model_id,
                        provider[0],
                        dep["upstream_model"],
                        int(dep.get("priority", 0)),
                        int(dep.get("weight", 1)),
                        self._price_version(db, own) if own is not None else None,
                    ),
                )
            self._bump(db)
        found = await self.get_model(model_id)
        assert found is not None
        return found

    def _deployments(self, model_id: str | None) -> dict[str, list[Deployment]]:
        sql = (
            "SELECT d.*, p.pricing FROM deployments d LEFT JOIN price_versions p ON p.id = d.price_version_id"
            + (" WHERE d.model_id = ?" if model_id else "")
            + " ORDER BY d.priority, d.id"
        )
        out: dict[str, list[Deployment]] = defaultdict(list)
        for r in self._all(sql, (model_id,) if model_id else ()):
            out[r["model_id"]].append(
                Deployment(
                    id=r["id"],
                    model_id=r["model_id"],
                    provider_id=r["provider_id"],
                    upstream_model=r["upstream_model"],
                    priority=r["priority"],
                    weight=r["weight"],
                    price_version_id=r["price_version_id"],
                    prices=rows.prices(r["pricing"]) if r["pricing"] else None,
                    disabled=bool(r["disabled"]),
                )
            )
        return out

    @staticmethod
    def _model(r: sqlite3.Row, deployments: list[Deployment]) -> Model:
        return Model(
            id=r["id"],
            name=r["name"],
            mode=r["mode"],
            context_length=r["context_length"],
            max_output=r["max_output"],
            price_version_id=r["price_version_id"],
            prices=rows.prices(r["pricing"]),
            created_at=r["created_at"],
            updated_at=r["updated_at"],
            deployments=tuple(deployments),
        )

    async def get_model(self, model_id: str) -> Model | None:
        r = self._one(
            "SELECT m.*, p.pricing FROM models m JOIN price_versions p ON p.id = m.price_version_id WHERE m.id = ?",
            (model_id,),
        )
        return self._model(r, self._deployments(model_id).get(model_id, [])) if r else None

    async def list_models(self) -> list[Model]:
        deps = self._deployments(None)
        found = self._all(
            "SELECT m.*, p.pricing FROM models m JOIN price_versions p ON p.id = m.price_version_id ORDER BY m.id"
        )
        return [self._model(r, deps.get(r["id"], [])) for r in found]

    async def delete_model(self, model_id: str) -> bool:
        with self._tx() as db:
            db.execute("DELETE FROM deployments WHERE model_id = ?", (model_id,))
            deleted = db.execute("DELETE FROM models WHERE id = ?", (model_id,)).rowcount
            self._bump(db)
        return bool(deleted)

    async def get_deployment(self, deployment_id: str) -> Deployment | None:
        for deps in self._deployments(None).values():
            for dep in deps:
                if dep.id == deployment_id:
                    return dep
        return None

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

    async def list_generations(self, account_id: str, key_id: str | None, limit: int) -> list[Generation]:
        if key_id is None:
            found = self._all(
                "SELECT * FROM generations WHERE account_id = ? ORDER BY id DESC LIMIT ?", (account_id, limit)
            )
        else:
            found = self._all(
                "SELECT * FROM generations WHERE key_id = ? AND account_id = ? ORDER BY id DESC LIMIT ?",
                (key_id, account_id, limit),
            )
        return [rows.generation(r) for r in found]

    async def get_generation(self, generation_id: str) -> Generation | None:
        row = self._one("SELECT * FROM generations WHERE id = ?", (generation_id,))
        return rows.generation(row) if row else None

    # -- billing reports (usage API, monthly statements) -------------------------------------
    # Money is summed here as Python ints over the rows, never with SQLite's SUM (raises on a
    # 64-bit overflow) or TOTAL (a float).

    # A request is on the bill once settled (its cost is the charge); a failure carries no charge
    # unless the ledger is broken, and then it is billed anyway so the bill matches the ledger.
    _CHARGED = "status != 'pending' AND (status IN ('success', 'partial', 'cancelled') OR cost != 0)"

    async def usage_rows(self, account_id: str, since: str, until: str) -> list[UsageRow]:
        sums: dict[tuple[str, str, str, str | None, int | None], list[int]] = {}
        cursor = self._read(
            "SELECT substr(created_at, 1, 10), key_id, model, provider, price_version_id, prompt_tokens,"
            " completion_tokens, cached_tokens, cache_write_tokens, reasoning_tokens, cost FROM generations"
            f" WHERE account_id = ? AND created_at >= ? AND created_at < ? AND {self._CHARGED}",
            (account_id, since, until),
        )
        for day, key_id, model, provider, version, *amounts in cursor:
            found = sums.setdefault((day, key_id, model, provider, version), [0] * 7)
            found[0] += 1
            for i, amount in enumerate(amounts, start=1):
                found[i] += amount
        return [UsageRow(*group, *totals) for group, totals in sums.items()]

    async def provider_usage_rows(self, provider: str, since: str, until: str) -> list[UsageRow]:
        """Charged requests served by `provider`, summed per UTC day, vault key (`key_id` holds the
        provider key id), upstream model and price snapshot: what the provider's invoice bills."""
        sums: dict[tuple[str, str, str, str | None, int | None], list[int]] = {}
        cursor = self._read(
            "SELECT substr(created_at, 1, 10), provider_key_id, upstream_model, provider, price_version_id,"
            " prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, reasoning_tokens, cost"
            f" FROM generations WHERE provider = ? AND created_at >= ? AND created_at < ? AND {self._CHARGED}",
            (provider, since, until),
        )
        for day, key_id, model, name, version, *amounts in cursor:
            found = sums.setdefault((day, key_id or "", model or "", name, version), [0] * 7)
            found[0] += 1
            for i, amount in enumerate(amounts, start=1):
                found[i] += amount
        return [UsageRow(*group, *totals) for group, totals in sorted(sums.items(), key=lambda kv: kv[0][:3])]

    async def charges_before(self, account_id: str, until: str) -> int:
        total = 0
        for (cost,) in self._read(
            "SELECT cost FROM generations WHERE account_id = ? AND created_at < ? AND status != 'pending'"
            " AND cost != 0",
            (account_id, until),
        ):
            total += cost
        return total

    async def price_versions(self, ids: Sequence[int]) -> dict[int, Prices]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        marks = ", ".join("?" * len(wanted))
        found = self._all(f"SELECT id, pricing FROM price_versions WHERE id IN ({marks})", wanted)
        return {int(r["id"]): rows.prices(r["pricing"]) for r in found}
