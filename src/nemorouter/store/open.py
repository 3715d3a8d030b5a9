"""`open_store`: the store a `NEMO_DATABASE_URL` names. Apart from `base` so that the protocol
imports no backend (and no backend imports this): the store package has no import circle."""

from __future__ import annotations

import os

from nemorouter.settings import DbPool
from nemorouter.store.base import Store, StoreError


def open_store(database_url: str, pool: DbPool | None = None) -> Store:
    """The store for a `NEMO_DATABASE_URL`; PostgreSQL's pool per `pool` (default: from the
    environment, NEMO_DB_POOL_MIN, NEMO_DB_POOL_MAX, NEMO_DB_COMMAND_TIMEOUT)."""
    if database_url.startswith("sqlite:///"):
        from nemorouter.store.sqlite import SqliteStore  # (imported on use: one backend per process)

        return SqliteStore(database_url.removeprefix("sqlite:///"))
    if database_url.startswith(("postgresql://", "postgres://")):
        from nemorouter.store.postgres import PostgresStore

        if pool is None:
            try:
                pool = DbPool.from_env(os.environ)
            except ValueError as exc:
                raise StoreError(str(exc)) from None
        # The pool opens on first use (it needs the running event loop); sized per process.
        return PostgresStore(
            database_url, min_size=pool.min_size, max_size=pool.max_size, command_timeout=pool.command_timeout
        )
    raise StoreError(f"unsupported NEMO_DATABASE_URL scheme: {database_url.split(':', 1)[0]!r}")
