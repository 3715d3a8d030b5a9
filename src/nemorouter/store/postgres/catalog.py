"""The routing configuration on PostgreSQL: the bundled price catalog, providers and their vault
keys, models and their deployments. Every change bumps the config version (routing reloads)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from nemorouter.money import Prices
from nemorouter.store import rows
from nemorouter.store.base import StoreError
from nemorouter.store.postgres.conn import Conn, PostgresConnection, Record
from nemorouter.store.records import CatalogEntry, Deployment, Model, Provider, ProviderKey
from nemorouter.timeutil import iso, new_id, utcnow

_PROVIDER_KEY_FIELDS = {"disabled", "weight", "label", "quarantined_at"}


class PostgresCatalog(PostgresConnection):
    # -- catalog --------------------------------------------------------------------------

    async def load_catalog(self, entries: Sequence[CatalogEntry]) -> int:
        async with self._tx() as conn:
            await conn.executemany(
                "INSERT INTO catalog VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (vendor, model_id)"
                " DO UPDATE SET mode = excluded.mode, pricing = excluded.pricing,"
                " context_length = excluded.context_length, max_output = excluded.max_output,"
                " source = excluded.source",
                [rows.catalog_params(e) for e in entries],
            )
        return len(entries)

    async def list_catalog(self, vendor: str | None = None) -> list[CatalogEntry]:
        where = " WHERE vendor = $1" if vendor else ""
        found = await self._all(
            f"SELECT * FROM catalog{where} ORDER BY vendor, model_id", *([vendor] if vendor else [])
        )
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
            for r in found
        ]

    # -- providers ------------------------------------------------------------------------

    async def create_provider(self, name: str, kind: str, base_url: str, config: dict[str, Any]) -> Provider:
        async def op(conn: Conn) -> Record:
            row = await conn.fetchrow(
                "INSERT INTO providers (id, name, kind, base_url, config, created_at)"
                " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
                new_id("prov_", 8),
                name,
                kind,
                base_url,
                orjson.dumps(config).decode(),
                iso(utcnow()),
            )
            await self._bump(conn)
            return row

        try:
            return rows.provider(await self._atomic(op))
        except asyncpg.UniqueViolationError:
            raise StoreError(f"a provider named {name!r} already exists") from None

    async def get_provider(self, name_or_id: str) -> Provider | None:
        row = await self._one(
            "SELECT * FROM providers WHERE id = $1 OR name = $1 ORDER BY id = $1 DESC LIMIT 1", name_or_id
        )
        return rows.provider(row) if row else None

    async def list_providers(self) -> list[Provider]:
        return [rows.provider(r) for r in await self._all("SELECT * FROM providers ORDER BY name")]

    async def add_provider_key(
        self, provider_id: str, key_id: str, label: str, weight: int, fingerprint: str, envelope: str
    ) -> ProviderKey:
        async def op(conn: Conn) -> Record:
            row = await conn.fetchrow(
                "INSERT INTO provider_keys (id, provider_id, label, weight, fingerprint, envelope, created_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
                key_id,
                provider_id,
                label,
                weight,
                fingerprint,
                envelope,
                iso(utcnow()),
            )
            await self._bump(conn)
            return row

        try:
            return rows.provider_key(await self._atomic(op))
        except asyncpg.ForeignKeyViolationError:
            raise StoreError(f"unknown provider {provider_id!r}") from None
        except asyncpg.UniqueViolationError:
            raise StoreError(f"a provider key {key_id!r} already exists") from None

    async def update_provider_key(self, key_id: str, fields: dict[str, Any]) -> ProviderKey | None:
        unknown = set(fields) - _PROVIDER_KEY_FIELDS
        if unknown:
            raise StoreError(f"cannot change {sorted(unknown)} of a provider key")
        values = {k: bool(v) if k == "disabled" else v for k, v in fields.items()}

        async def op(conn: Conn) -> None:
            if values:
                sql = f"UPDATE provider_keys SET {self._sets(list(values))} WHERE id = ${len(values) + 1}"
                await conn.execute(sql, *values.values(), key_id)
            await self._bump(conn)

        await self._atomic(op)
        row = await self._one("SELECT * FROM provider_keys WHERE id = $1", key_id)
        return rows.provider_key(row) if row else None

    async def delete_provider_key(self, key_id: str) -> bool:
        async def op(conn: Conn) -> bool:
            deleted = await self._matched(conn, "DELETE FROM provider_keys WHERE id = $1 RETURNING 1", key_id)
            await self._bump(conn)
            return deleted

        return await self._atomic(op)

    async def list_provider_keys(self, provider_id: str | None = None) -> list[ProviderKey]:
        if provider_id is None:
            found = await self._all("SELECT * FROM provider_keys ORDER BY created_at, id")
        else:
            found = await self._all(
                "SELECT * FROM provider_keys WHERE provider_id = $1 ORDER BY created_at, id", provider_id
            )
        return [rows.provider_key(r) for r in found]

    # -- models ---------------------------------------------------------------------------

    @staticmethod
    async def _price_version(conn: Conn, prices: Prices) -> int:
        text = rows.prices_text(prices)
        found = await conn.fetchval(
            "SELECT id FROM price_versions WHERE md5(pricing) = md5($1) AND pricing = $1 ORDER BY id DESC LIMIT 1",
            text,
        )
        if found is None:
            found = await conn.fetchval(
                "INSERT INTO price_versions (pricing, created_at) VALUES ($1, $2) RETURNING id",
                text,
                iso(utcnow()),
            )
        return int(found)

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

        async def op(conn: Conn) -> None:
            # Names are checked and set under one lock, so two admins cannot give one name twice.
            await conn.execute("LOCK TABLE model_aliases IN SHARE ROW EXCLUSIVE MODE")
            if await conn.fetchval("SELECT 1 FROM model_aliases WHERE alias = $1", model_id):
                raise StoreError(f"model id {model_id} is already an alias of another model")
            version = await self._price_version(conn, prices)
            await conn.execute(
                "INSERT INTO models (id, name, mode, context_length, max_output, price_version_id, created_at,"
                " updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (id) DO UPDATE SET"
                " name = excluded.name, mode = excluded.mode, context_length = excluded.context_length,"
                " max_output = excluded.max_output, price_version_id = excluded.price_version_id,"
                " updated_at = excluded.updated_at",
                model_id,
                name,
                mode,
                context_length,
                max_output,
                version,
                now,
            )
            if replace_deployments:
                await conn.execute("DELETE FROM deployments WHERE model_id = $1", model_id)
            for dep in deployments:
                provider = await conn.fetchval(
                    "SELECT id FROM providers WHERE id = $1 OR name = $1 ORDER BY id = $1 DESC LIMIT 1",
                    dep["provider"],
                )
                if provider is None:
                    raise StoreError(f"unknown provider {dep['provider']!r}")
                own = dep.get("prices")
                await conn.execute(
                    "DELETE FROM deployments WHERE model_id = $1 AND provider_id = $2 AND upstream_model = $3",
                    model_id,
                    provider,
                    dep["upstream_model"],
                )
                await conn.execute(
                    "INSERT INTO deployments (id, model_id, provider_id, upstream_model, priority, weight,"
                    " price_version_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    new_id("dep_", 8),
                    model_id,
                    provider,
                    dep["upstream_model"],
                    int(dep.get("priority", 0)),
                    int(dep.get("weight", 1)),
                    await self._price_version(conn, own) if own is not None else None,
                )
            if aliases is not None:
                await _set_aliases(conn, model_id, aliases)
            await self._bump(conn)

        await self._atomic(op)
        found = await self.get_model(model_id)
        assert found is not None
        return found

    async def _deployments(self, model_id: str | None) -> dict[str, list[Deployment]]:
        sql = (
            "SELECT d.*, p.pricing FROM deployments d LEFT JOIN price_versions p ON p.id = d.price_version_id"
            + (" WHERE d.model_id = $1" if model_id else "")
            + " ORDER BY d.priority, d.id"
        )
        out: dict[str, list[Deployment]] = defaultdict(list)
        for r in await self._all(sql, *([model_id] if model_id else [])):
            out[r["model_id"]].append(_deployment(r))
        return out

    async def get_model(self, model_id: str) -> Model | None:
        r = await self._one(
            "SELECT m.*, p.pricing FROM models m JOIN price_versions p ON p.id = m.price_version_id WHERE m.id = $1",
            model_id,
        )
        if r is None:
            return None
        aliases = (await self._aliases(model_id)).get(model_id, ())
        return _model(r, (await self._deployments(model_id)).get(model_id, []), aliases)

    async def list_models(self) -> list[Model]:
        deps, aliases = await self._deployments(None), await self._aliases(None)
        found = await self._all(
            "SELECT m.*, p.pricing FROM models m JOIN price_versions p ON p.id = m.price_version_id ORDER BY m.id"
        )
        return [_model(r, deps.get(r["id"], []), aliases.get(r["id"], ())) for r in found]

    async def _aliases(self, model_id: str | None) -> dict[str, tuple[str, ...]]:
        sql = "SELECT alias, model_id FROM model_aliases" + (" WHERE model_id = $1" if model_id else "")
        out: dict[str, list[str]] = defaultdict(list)
        for r in await self._all(sql + " ORDER BY alias", *([model_id] if model_id else [])):
            out[r["model_id"]].append(r["alias"])
        return {k: tuple(v) for k, v in out.items()}

    async def delete_model(self, model_id: str) -> bool:
        async def op(conn: Conn) -> bool:
            await conn.execute("DELETE FROM deployments WHERE model_id = $1", model_id)
            await conn.execute("DELETE FROM model_aliases WHERE model_id = $1", model_id)
            deleted = await self._matched(conn, "DELETE FROM models WHERE id = $1 RETURNING 1", model_id)
            await self._bump(conn)
            return deleted

        return await self._atomic(op)

    async def get_deployment(self, deployment_id: str) -> Deployment | None:
        r = await self._one(
            "SELECT d.*, p.pricing FROM deployments d LEFT JOIN price_versions p ON p.id = d.price_version_id"
            " WHERE d.id = $1",
            deployment_id,
        )
        return _deployment(r) if r else None


def _deployment(r: Record) -> Deployment:
    return Deployment(
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


async def _set_aliases(conn: Conn, model_id: str, aliases: Sequence[str]) -> None:
    """Replace the model's aliases; refused when one is another model's id or alias."""
    await conn.execute("DELETE FROM model_aliases WHERE model_id = $1", model_id)
    for alias in aliases:
        taken = await conn.fetchval(
            "SELECT id FROM models WHERE id = $1 UNION ALL SELECT model_id FROM model_aliases WHERE alias = $1",
            alias,
        )
        if taken is not None:
            raise StoreError(f"alias {alias} is already a name of model {taken}")
        await conn.execute("INSERT INTO model_aliases (alias, model_id) VALUES ($1, $2)", alias, model_id)


def _model(r: Record, deployments: list[Deployment], aliases: tuple[str, ...]) -> Model:
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
