"""The store protocol: narrow, atomic operations. SQLite and PostgreSQL implement it alike.

This module imports no backend (`open.open_store` picks one), so every backend may import
`StoreError` from here without an import circle.
"""

from __future__ import annotations

from typing import Protocol

from nemorouter.store.console_records import ConsoleStore
from nemorouter.store.roles import (
    AccountStore,
    AlertStore,
    AuditStore,
    CatalogStore,
    LeaseStore,
    LedgerStore,
    MoneyStore,
    ReportStore,
    SchemaStore,
)


class StoreError(Exception):
    """A store operation was refused (duplicate name, unknown id, ...); safe to show."""


class Store(
    SchemaStore,
    CatalogStore,
    AccountStore,
    MoneyStore,
    LeaseStore,
    LedgerStore,
    ReportStore,
    AlertStore,
    AuditStore,
    ConsoleStore,
    Protocol,
):
    """Everything durable: the union of the roles (`roles`). Every method is atomic on its own."""
