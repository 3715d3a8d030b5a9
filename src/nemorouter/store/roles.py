"""The store's roles, one small protocol each, so that a caller can be typed against the part it
uses; `base.Store` is their union, which both backends implement. Every method is atomic on its
own. (The web console's users and sessions: `ConsoleStore`, in console_records.)"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from nemorouter.money import Prices
from nemorouter.store.alert_records import Alert, AlertSettings, OutboxItem
from nemorouter.store.audit_records import AuditEntry, AuditRecord
from nemorouter.store.records import (
    Account,
    ApiKey,
    CatalogEntry,
    Credit,
    Deployment,
    Generation,
    Hold,
    LedgerReport,
    Model,
    Overrun,
    Provider,
    ProviderKey,
    ReserveResult,
    UsageRow,
)


class SchemaStore(Protocol):
    """The schema and the store's own settings: migrations, the meta table, the config version
    (bumped by every catalog change so each server reloads its routing), closing."""

    async def migrate(self) -> list[int]: ...
    async def pending_migrations(self) -> list[int]: ...
    async def applied_migrations(self) -> dict[int, str]:
        """Version -> when it was applied (ISO text); empty for a database never migrated."""
        ...

    async def close(self) -> None: ...
    async def config_version(self) -> int: ...
    async def get_meta(self, key: str) -> str | None: ...
    async def set_meta(self, key: str, value: str) -> None: ...


class CatalogStore(Protocol):
    """The routing configuration: the bundled list prices, providers and the vault's sealed keys,
    models and their deployments."""

    async def load_catalog(self, entries: Sequence[CatalogEntry]) -> int: ...
    async def list_catalog(self, vendor: str | None = None) -> list[CatalogEntry]: ...
    async def create_provider(
        self, name: str, kind: str, base_url: str, config: dict[str, Any]
    ) -> Provider: ...
    async def get_provider(self, name_or_id: str) -> Provider | None: ...
    async def list_providers(self) -> list[Provider]: ...
    async def add_provider_key(
        self, provider_id: str, key_id: str, label: str, weight: int, fingerprint: str, envelope: str
    ) -> ProviderKey: ...
    async def update_provider_key(self, key_id: str, fields: dict[str, Any]) -> ProviderKey | None: ...
    async def delete_provider_key(self, key_id: str) -> bool: ...
    async def list_provider_keys(self, provider_id: str | None = None) -> list[ProviderKey]: ...
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
        aliases: Sequence[str] | None = None,  # None: keep the model's; a list replaces them
    ) -> Model: ...
    async def get_model(self, model_id: str) -> Model | None: ...
    async def list_models(self) -> list[Model]: ...
    async def delete_model(self, model_id: str) -> bool: ...
    async def get_deployment(self, deployment_id: str) -> Deployment | None: ...


class AccountStore(Protocol):
    """Accounts, their credits and their keys (and leaked-key reports, which revoke keys)."""

    async def create_account(self, name: str, email: str | None) -> Account: ...
    async def get_account(self, account_id: str) -> Account | None: ...
    async def list_accounts(self) -> list[Account]: ...
    async def update_account(self, account_id: str, fields: dict[str, Any]) -> Account | None: ...
    async def add_credit(
        self, account_id: str, amount: int, reason: str, idempotency_key: str | None
    ) -> tuple[Credit, bool]: ...
    async def list_credits(self, account_id: str) -> list[Credit]: ...
    async def create_key(self, key: ApiKey, secret_hash: str) -> ApiKey: ...
    async def find_key(self, secret_hash: str) -> tuple[ApiKey, str | None] | None: ...
    async def get_key(self, key_id: str) -> ApiKey | None: ...
    async def list_keys(self, account_id: str | None = None, scope: str | None = None) -> list[ApiKey]: ...
    async def update_key(self, key_id: str, fields: dict[str, Any]) -> ApiKey | None: ...
    async def add_key_secret(self, key_id: str, secret_hash: str, retire_others_at: str | None) -> None: ...
    async def record_leaks(
        self, found: Sequence[tuple[str, str | None, str | None]], items: int, reporter: str | None, now: str
    ) -> int: ...
    async def list_leak_events(self, account_id: str) -> list[dict[str, Any]]: ...


class MoneyStore(Protocol):
    """The hard cap: a hold against the key's window limit and the account's balance, replaced by
    the exact charge or released (the rule itself: `cap_rule`)."""

    async def reserve(self, hold: Hold, now: str) -> ReserveResult: ...
    async def settle(self, request_id: str, generation: Generation, window: str) -> bool: ...
    async def release(self, request_id: str, generation: Generation | None) -> bool: ...
    async def recover_holds(self, owner: str | None) -> list[Hold]: ...
    async def open_holds(self) -> list[Hold]: ...
    async def key_spend_since(self, key_id: str, since: str) -> int: ...


class LeaseStore(Protocol):
    """Which serving processes are alive: holds are released per owner (docs/failures.md)."""

    async def renew_lease(self, owner: str, seconds: float) -> bool:
        """Keep serving process `owner` alive for `seconds` more (by the database's clock),
        creating its lease if missing. Returns False when there was no lease: at start, or after
        it lapsed and another process released `owner`'s holds."""
        ...

    async def drop_lease(self, owner: str) -> None:
        """A clean stop: `owner` serves no more (its holds are settled or released)."""
        ...

    async def recover_dead_holds(self) -> list[Hold]:
        """Release every open hold whose owner's lease has lapsed or who has none, as
        `recover_holds` does; a live process's holds are never touched."""
        ...


class LedgerStore(Protocol):
    """The ledger's records and checks: usage records, the operator's overruns, the sums and the
    hash chain `verify_ledger` checks."""

    async def get_generation(self, generation_id: str) -> Generation | None: ...
    async def list_generations(self, account_id: str, key_id: str | None, limit: int) -> list[Generation]: ...
    async def verify_ledger(self) -> LedgerReport: ...
    async def record_overrun(self, found: Overrun) -> None: ...
    async def list_overruns(
        self, provider: str | None = None, since: str | None = None, until: str | None = None
    ) -> list[Overrun]: ...
    async def seal_ledger(self, now_ns: int | None = None) -> int:
        """Append a hash-chain seal for every final ledger entry not sealed yet (background
        only); returns how many this round appended. SQLite seals a charge in the batch that
        settles it (store/sqlite/seals.py), so there a round finds only what no settle sealed.
        `verify_ledger` checks the chain."""
        ...

    # Seconds between the background's sealing rounds (service/jobs/background.py): an entry no
    # settle sealed is tamper-evident within about this long. SQLite scans in a thread and writes
    # on the event loop in short slices, PostgreSQL in a transaction of its own (every round is
    # round trips and a durable commit): both a few times a second.
    seal_every: float
    # Entries a round seals at most (per kind): a round that sealed as many may have left some,
    # and the next one starts at once instead of after `seal_every`.
    seal_batch: int


class ReportStore(Protocol):
    """Billing reports (usage API, monthly statements, provider invoices): money summed as Python
    ints, never in SQL."""

    async def provider_usage_rows(self, provider: str, since: str, until: str) -> list[UsageRow]:
        """Charged requests a provider served, per UTC day, vault key, upstream model and price
        snapshot (`key_id` holds the provider key id): the operator's side of its invoice."""
        ...

    async def usage_rows(self, account_id: str, since: str, until: str) -> list[UsageRow]:
        """The account's charged requests created in [since, until), summed per UTC day, key,
        model, provider and price version. Open holds (pending) are not charges and are left out."""
        ...

    async def charges_before(self, account_id: str, until: str) -> int:
        """The exact sum of every charge of the account on requests created before `until`."""
        ...

    async def price_versions(self, ids: Sequence[int]) -> dict[int, Prices]:
        """The price snapshots with these ids (unknown ids are left out)."""
        ...


class AlertStore(Protocol):
    """Alerts out: accounts' webhooks, the low-balance watch and the delivery outbox."""

    async def get_alert_settings(self, account_id: str) -> AlertSettings | None: ...
    async def put_alert_settings(
        self, account_id: str, url: str, threshold: int | None, envelope: str, now: str
    ) -> tuple[AlertSettings, bool]:
        """Set an account's webhook; `envelope` (the sealed signing secret) is kept only when the
        account had none. Returns the settings and whether they were created."""
        ...

    async def enqueue_alert(self, alert: Alert) -> bool:
        """Queue an alert (an account's only if it has a webhook; an id queued before is not
        queued again). Returns whether it was queued."""
        ...

    async def low_balance_watch(self) -> list[tuple[AlertSettings, int]]:
        """Every account with a low-balance threshold, with its balance."""
        ...

    async def set_low_balance(self, account_id: str, alert: Alert | None, now: str) -> bool:
        """With `alert`: mark the account low and queue the alert in one step, once until the
        mark is cleared; without: clear the mark."""
        ...

    async def claim_alerts(self, now: str, lease_until: str, limit: int) -> list[OutboxItem]:
        """Due deliveries, each counted as an attempt and leased until `lease_until`."""
        ...

    async def alert_attempted(
        self, alert_id: str, *, delivered: bool, now: str, retry_at: str | None, error: str | None
    ) -> None: ...
    async def list_alerts(self, account_id: str, limit: int) -> list[dict[str, Any]]: ...


class AuditStore(Protocol):
    """The audit log (who did what, when), hash-chained."""

    async def append_audit(self, entry: AuditEntry) -> AuditRecord:
        """Append an entry at the end of the chain (appends are serialized, across replicas too)."""
        ...

    async def list_audit(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        account_id: str | None = None,
        target: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """The newest entries first; `target` matches any id among an entry's targets."""
        ...

    async def verify_audit(self) -> tuple[list[str], int]:
        """Problems of the audit chain (changed, removed or reordered entries) and the count checked."""
        ...
