"""The embedded store: one SQLite file in WAL mode (`store.SqliteStore`, one mixin per role)."""

from nemorouter.store.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
