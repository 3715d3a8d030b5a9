"""The shared store: PostgreSQL, for any number of replicas (`store.PostgresStore`, one mixin per role)."""

from nemorouter.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
