"""Builds every service from settings (no globals): used by the HTTP app and the CLI alike."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from nemorouter.service.administration.admin import Admin
from nemorouter.service.administration.catalog import bundled_catalog
from nemorouter.settings import Settings
from nemorouter.store.base import Store
from nemorouter.store.file_modes import secure_data_dir, secure_sqlite_files
from nemorouter.store.open import open_store
from nemorouter.timeutil import utcnow
from nemorouter.vault import Vault, VaultError, load_master_key
from nemorouter.vault.check import vault_in_use, verify_master_key

if TYPE_CHECKING:
    # The server's parts are imported by start_gateway, not by every CLI command (73 modules,
    # ~50 ms of CPU each); Redis only by gateways configured with it.
    from nemorouter.engine.http import UpstreamClient
    from nemorouter.limits.redis import RedisLimiter
    from nemorouter.service.alerting.alerts import AlertWatcher
    from nemorouter.service.alerting.outbox import OutboxWorker
    from nemorouter.service.auth import Authenticates
    from nemorouter.service.gateway import Gateway
    from nemorouter.service.jobs.invalidation import Invalidation
    from nemorouter.service.routing import RoutingTable

log = logging.getLogger("nemorouter")
ADMIN_TOKEN_META = "admin_token_sha256"


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Services:
    settings: Settings
    store: Store
    vault: Vault
    admin: Admin
    clock: Callable[[], datetime]
    admin_token_hash: str | None = None
    routes: RoutingTable | None = None
    gateway: Gateway | None = None
    auth: Authenticates | None = None  # an Authenticator (tracing may wrap it)
    client: UpstreamClient | None = None
    alerts: AlertWatcher | None = None  # alerts out (server only)
    outbox: OutboxWorker | None = None
    invalidation: Invalidation | None = None  # with Redis: config changes announced to every replica
    master_source: str = "NEMO_MASTER_KEY"  # where the master key came from, for error lines

    def admin_token_ok(self, token: str | None) -> bool:
        """Constant-time check of the operator token against its stored hash."""
        if not token or self.admin_token_hash is None:
            return False
        return hmac.compare_digest(_token_hash(token), self.admin_token_hash)


async def open_services(
    settings: Settings, *, create: bool = False, clock: Callable[[], datetime] = utcnow
) -> Services:
    """Store + vault + admin (what the CLI needs). `create` makes the master key if missing.

    The master key must open the database's vault (vault/check.py): a wrong one is refused here,
    before any command or server can use it; and `create` never mints a master key over a
    database that already holds a vault sealed under another one.
    """
    secure_data_dir(settings.data_dir, create=create)  # 0700; the SQLite files 0600 (store/file_modes.py)
    secure_sqlite_files(settings.database_url, create=create)
    store = open_store(settings.database_url, settings.db_pool)
    key_file = settings.data_dir / "master.key"
    source = "NEMO_MASTER_KEY" if settings.master_key else str(key_file)
    try:
        if create and not settings.master_key and not key_file.exists() and await vault_in_use(store):
            raise VaultError(
                f"refusing to create a new master key: {key_file} is missing but this database already"
                " holds a vault sealed under one; restore master.key or set NEMO_MASTER_KEY"
            )
        vault = Vault(load_master_key(settings.master_key, settings.data_dir, create=create))
        await verify_master_key(store, vault, source)
    except BaseException:
        await store.close()
        raise
    services = Services(settings, store, vault, Admin(store, vault, clock), clock, master_source=source)
    if settings.admin_token:
        services.admin_token_hash = _token_hash(settings.admin_token)
    return services


async def initialize(services: Services) -> tuple[list[int], int, str | None]:
    """`nemorouter init`: migrations, bundled catalog, admin token. Idempotent.

    Returns the migrations applied, catalog rows loaded, and a newly generated admin token
    (shown once; only its hash is kept) or None.
    """
    applied = await services.store.migrate()
    await verify_master_key(services.store, services.vault, services.master_source)  # seals the check
    loaded = await services.store.load_catalog(bundled_catalog())
    new_token = None
    if services.settings.admin_token is None and await services.store.get_meta(ADMIN_TOKEN_META) is None:
        new_token = "nemo-admin-" + secrets.token_urlsafe(32)
        await services.store.set_meta(ADMIN_TOKEN_META, _token_hash(new_token))
    return applied, loaded, new_token


async def start_gateway(services: Services, owner: str) -> None:
    """Everything the HTTP server needs on top of the CLI's services."""
    from nemorouter.engine.http import UpstreamClient
    from nemorouter.limits.local import LocalLimiter
    from nemorouter.service.alerting.alerts import AlertWatcher
    from nemorouter.service.alerting.outbox import OutboxWorker
    from nemorouter.service.auth import Authenticator
    from nemorouter.service.gateway import Gateway
    from nemorouter.service.routing import RoutingTable

    store = services.store
    await store.migrate()
    await verify_master_key(store, services.vault, services.master_source)  # a never-initialized database
    if services.admin_token_hash is None:
        services.admin_token_hash = await store.get_meta(ADMIN_TOKEN_META)
    # One SQLite file serves one process, so every open hold at start belongs to a dead one.
    # On PostgreSQL other replicas may be serving: only holds whose owner's lease has lapsed
    # (or who has none) are released, now and every few seconds (service/jobs/background.py).
    recovered = await store.recover_holds(None) if services.settings.database_url.startswith("sqlite") else []
    await store.renew_lease(owner, services.settings.lease_seconds)  # before this process holds anything
    recovered += await store.recover_dead_holds()
    if recovered:
        log.warning(
            "released holds left by a stopped process",
            extra={"count": len(recovered), "owners": sorted({h.owner for h in recovered})},
        )
    services.routes = RoutingTable(store, services.vault)
    await services.routes.refresh(force=True)
    services.client = UpstreamClient(services.settings.timeouts, services.settings.outbound)
    await services.client.start()
    services.auth = Authenticator(store, services.clock, services.routes)
    limiter = LocalLimiter()
    if services.settings.redis_url:
        limiter, services.invalidation = shared_state(services.settings, services.routes)
    services.gateway = Gateway(
        store,
        services.routes,
        services.client,
        limiter,
        services.clock,
        owner,
        keepalive_seconds=services.settings.sse_keepalive,
        upstream_counts_per_minute=services.settings.count_tokens_upstream_per_minute,
    )
    services.alerts = AlertWatcher(
        store,
        services.settings,
        services.clock,
        services.gateway.refusals,
        overruns=services.gateway.overruns,
    )
    services.outbox = OutboxWorker(store, services.vault, services.settings, services.clock)


def shared_state(settings: Settings, routes: RoutingTable) -> tuple[RedisLimiter, Invalidation]:
    """Redis for replicas: rate limits every replica shares, and config changes announced."""
    import redis.asyncio as aioredis

    from nemorouter.limits.redis import RedisLimiter
    from nemorouter.service.jobs.invalidation import Invalidation

    assert settings.redis_url is not None
    client = aioredis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=0.5,  # a Redis that does not answer falls back quickly (limits/redis.py)
        socket_timeout=0.5,
        health_check_interval=10,
    )
    return RedisLimiter(client, settings.redis_prefix), Invalidation(client, settings.redis_prefix, routes)


async def close_services(services: Services) -> None:
    if services.gateway is not None and services.gateway.limiter.shared:
        await services.gateway.limiter.close()
    if services.client is not None:
        await services.client.close()
    await services.store.close()
