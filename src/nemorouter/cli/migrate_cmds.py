"""`nemorouter migrate up|status`: the database schema on its own, for deployments that migrate
before rolling out replicas (`init` and `serve` migrate too). Needs no master key."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import typer

from nemorouter.cli.common import emit, fail
from nemorouter.settings import Settings
from nemorouter.store.base import StoreError
from nemorouter.store.migration_files import backend_of, migration_names
from nemorouter.store.open import open_store
from nemorouter.store.roles import SchemaStore

migrate = typer.Typer(
    help="The database schema: apply pending migrations (up) or list them (status).", no_args_is_help=True
)


def _database(url: str) -> str:
    """Where the schema lives, never a password."""
    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite:///")
    from nemorouter.store.postgres.conn import describe  # asyncpg loads only for PostgreSQL

    return describe(url)


def _with_store(action: Callable[[SchemaStore], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    settings = Settings.from_env()
    url = settings.database_url

    async def main() -> dict[str, Any]:
        store = open_store(url, settings.db_pool)
        try:
            return {"database": _database(url), "backend": backend_of(url), **await action(store)}
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except StoreError as exc:
        fail(str(exc))


@migrate.command("up")
def up() -> None:
    """Apply every pending migration and print the ones applied.

    In order; on PostgreSQL all in one transaction, under a lock, so replicas starting at the
    same time (which migrate too) wait for it and find nothing left to do."""

    async def act(store: SchemaStore) -> dict[str, Any]:
        names = migration_names(backend_of(Settings.from_env().database_url))
        applied = await store.migrate()
        pending = await store.pending_migrations()
        return {"applied": [names[v] for v in applied], "pending": [names[v] for v in pending]}

    emit(_with_store(act))


@migrate.command("status")
def status() -> None:
    """Every migration this build ships, applied (when) or pending; changes nothing."""
    url = Settings.from_env().database_url
    names = migration_names(backend_of(url))
    path = url.removeprefix("sqlite:///")
    if path != url and not Path(path).exists():  # never create a database just to look at it
        emit(_status(_database(url), backend_of(url), names, {}))
        return

    async def act(store: SchemaStore) -> dict[str, Any]:
        found = _status("", "", names, await store.applied_migrations())
        return {"migrations": found["migrations"], "pending": found["pending"]}

    emit(_with_store(act))


def _status(database: str, backend: str, names: dict[int, str], applied: dict[int, str]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = [
        {
            "version": v,
            "name": name,
            "state": "applied" if v in applied else "pending",
            "applied_at": applied.get(v),
        }
        for v, name in names.items()
    ]
    # Applied by a newer build than this one: listed, never undone.
    rows += [
        {"version": v, "name": None, "state": "unknown", "applied_at": applied[v]}
        for v in sorted(set(applied) - set(names))
    ]
    pending = [names[v] for v in names if v not in applied]
    return {"database": database, "backend": backend, "migrations": rows, "pending": pending}
