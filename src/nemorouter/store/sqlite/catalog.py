"""The routing configuration on SQLite: the bundled price catalog, providers and their vault
keys, models and their deployments. Every change bumps the config version (routing reloads)."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson

from nemorouter.money import Prices
from nemorouter.store import rows
from nemorouter.store.base import StoreError
from nemorouter.store.records import CatalogEntry, Deployment, Model, Provider, ProviderKey
from nemorouter.store.sqlite.conn import SqliteConnection
from nemorouter.timeutil import iso, new_id, utcnow

_PROVIDER_KEY_FIELDS = {"disabled", "weight", "label", "quarantined_at"}


class SqliteCatalog(SqliteConnection):
    # -- catalog --------------------------------------------------------------------------

    async def load_catalog(self, entries: Sequence[CatalogEntry]) -> int:
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO catalog VALUES (?, ?, ?, ?, ?, ?, ?)",
                [rows.catalog_params(e) for e in entries],
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
        aliases: Sequence[str] | None = None,
    ) -> Model:
        now = iso(utcnow())
        with self._tx() as db:
            if db.execute("SELECT 1 FROM model_aliases WHERE alias = ?", (model_id,)).fetchone():
                raise StoreError(f"model id {model_id} is already an alias of another model")
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
            if aliases is not None:
                self._set_aliases(db, model_id, aliases)
            self._bump(db)
        found = await self.get_model(model_id)
        assert found is not None
        return found

    @staticmethod
    def _set_aliases(db: sqlite3.Connection, model_id: str, aliases: Sequence[str]) -> None:
        """Replace the model's aliases; refused when one is another model's id or alias."""
        db.execute("DELETE FROM model_aliases WHERE model_id = ?", (model_id,))
        for alias in aliases:
            taken = db.execute(
                "SELECT id FROM models WHERE id = ? UNION ALL SELECT model_id FROM model_aliases WHERE alias = ?",
                (alias, alias),
            ).fetchone()
            if taken is not None:
                raise StoreError(f"alias {alias} is already a name of model {taken[0]}")
            db.execute("INSERT INTO model_aliases (alias, model_id) VALUES (?, ?)", (alias, model_id))

    def _aliases(self, model_id: str | None) -> dict[str, tuple[str, ...]]:
        sql = "SELECT alias, model_id FROM model_aliases" + (" WHERE model_id = ?" if model_id else "")
        out: dict[str, list[str]] = defaultdict(list)
        for r in self._all(sql + " ORDER BY alias", (model_id,) if model_id else ()):
            out[r["model_id"]].append(r["alias"])
        return {k: tuple(v) for k, v in out.items()}

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
    def _model(r: sqlite3.Row, deployments: list[Deployment], aliases: tuple[str, ...]) -> Model:
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
            aliases=aliases,
        )

    async def get_model(self, model_id: str) -> Model | None:
        r = self._one(
            "SELECT m.*, p.pricing FROM models m JOIN price_versions p ON p.id = m.price_version_id WHERE m.id = ?",
            (model_id,),
        )
        if r is None:
            return None
        return self._model(
            r, self._deployments(model_id).get(model_id, []), self._aliases(model_id).get(model_id, ())
        )

    async def list_models(self) -> list[Model]:
        deps, aliases = self._deployments(None), self._aliases(None)
        found = self._all(
            "SELECT m.*, p.pricing FROM models m JOIN price_versions p ON p.id = m.price_version_id ORDER BY m.id"
        )
        return [self._model(r, deps.get(r["id"], []), aliases.get(r["id"], ())) for r in found]

    async def delete_model(self, model_id: str) -> bool:
        with self._tx() as db:
            db.execute("DELETE FROM deployments WHERE model_id = ?", (model_id,))
            db.execute("DELETE FROM model_aliases WHERE model_id = ?", (model_id,))
            deleted = db.execute("DELETE FROM models WHERE id = ?", (model_id,)).rowcount
            self._bump(db)
        return bool(deleted)

    async def get_deployment(self, deployment_id: str) -> Deployment | None:
        for deps in self._deployments(None).values():
            for dep in deps:
                if dep.id == deployment_id:
                    return dep
        return None
