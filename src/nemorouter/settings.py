"""Settings, read once from the environment and passed in (never global)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ValueError):
    """A setting from the environment is invalid; the message names it (shown as one line)."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Upstream timeouts in seconds (the contract's defaults)."""

    connect: float = 10.0
    first_byte: float = 60.0
    idle: float = 60.0
    total: float = 600.0


@dataclass(frozen=True, slots=True)
class DbPool:
    """PostgreSQL connections per process (`serve` replica or worker; SQLite ignores it)."""

    min_size: int = 2  # opened at the first use and kept
    max_size: int = 10  # at most this many statements of this process at once
    # Seconds one statement may run before it is cancelled; None: never. Off by default: a
    # settle or release cut off would leave its hold open until the process stops.
    command_timeout: float | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DbPool:
        """NEMO_DB_POOL_MIN, NEMO_DB_POOL_MAX, NEMO_DB_COMMAND_TIMEOUT (0 or empty: none)."""
        try:
            sizes = int(env.get("NEMO_DB_POOL_MIN") or 2), int(env.get("NEMO_DB_POOL_MAX") or 10)
        except ValueError:
            raise SettingsError("NEMO_DB_POOL_MIN and NEMO_DB_POOL_MAX must be integers") from None
        try:
            timeout = float(env.get("NEMO_DB_COMMAND_TIMEOUT") or 0)
        except ValueError:
            raise SettingsError("NEMO_DB_COMMAND_TIMEOUT must be a number of seconds") from None
        if not 0 <= sizes[0] <= sizes[1] or sizes[1] < 1:
            raise SettingsError(
                f"bad pool size: min {sizes[0]}, max {sizes[1]} (need 0 <= min <= max, max >= 1)"
            )
        if timeout < 0:
            raise SettingsError("NEMO_DB_COMMAND_TIMEOUT must be 0 (none) or more seconds")
        return cls(sizes[0], sizes[1], timeout or None)


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    database_url: str
    redis_url: str | None = None  # shared rate limits and cache invalidation across replicas
    redis_prefix: str = "nemo:"  # every Redis key and channel starts with this (one Redis, many gateways)
    db_pool: DbPool = field(default_factory=DbPool)
    master_key: str | None = None
    admin_token: str | None = None
    max_body_bytes: int = 32 * 1024 * 1024
    shutdown_grace: float = 30.0
    metrics_token: str | None = None
    sse_keepalive: float = 10.0
    auth_failures_per_minute: int = 30  # per client address; then 429 (app/throttle.py)
    timeouts: Timeouts = field(default_factory=Timeouts)
    # -- slow or oversized clients (cli/guarded_http.py) ----------------------------------------
    client_header_timeout: float = 10.0  # seconds to send a request's line and headers (else 408)
    client_body_timeout: float = 60.0  # seconds to send its whole body once the headers are in
    max_header_bytes: int = 64 * 1024  # request line and headers together (else 431)
    otlp_endpoint: str | None = None  # OpenTelemetry traces over OTLP/HTTP when set (tracing.py)
    log_level: str = "INFO"  # NEMO_LOG_LEVEL; the one line per request is written at INFO
    # -- money trail ("One bill" 3, 4): Stripe top-ups and alerts out --------------------------
    stripe_webhook_secret: str | None = None  # unset: POST /webhooks/stripe answers 503
    stripe_topup_url: str | None = None  # the console's "add credits" link; `{account_id}` is filled in
    operator_alert_url: str | None = None  # quarantined provider keys are alerted here, if set
    operator_alert_secret: str | None = None  # `whsec_` + base64, as the account webhooks' secrets
    alert_retry_base: float = 5.0  # seconds to the first retry of an alert; doubles each time
    alert_retry_cap: float = 3600.0  # retries at most this far apart
    alert_retry_for: float = 86400.0  # and for this long after the alert was written
    # -- many replicas (docs/failures.md, "Holds of a dead process") -------------------------
    lease_seconds: float = 15.0  # a process silent this long is dead: its holds are released
    lease_renew: float = 5.0  # how often a process renews its lease and looks for dead ones

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        try:
            lease = float(env.get("NEMO_PROCESS_LEASE") or 15)
            renew = float(env.get("NEMO_PROCESS_LEASE_RENEW") or 5)
        except ValueError:
            raise SettingsError("NEMO_PROCESS_LEASE and NEMO_PROCESS_LEASE_RENEW must be seconds") from None
        if not 0 < renew < lease:
            raise SettingsError(
                "need 0 < NEMO_PROCESS_LEASE_RENEW < NEMO_PROCESS_LEASE (seconds; defaults 5 and 15)"
            )
        log_level = (env.get("NEMO_LOG_LEVEL") or "INFO").upper()
        if log_level not in LOG_LEVELS:
            raise SettingsError(f"NEMO_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        data_dir = Path(env.get("NEMO_DATA_DIR") or Path.home() / ".nemorouter").expanduser()
        database_url = env.get("NEMO_DATABASE_URL") or f"sqlite:///{data_dir / 'nemorouter.db'}"
        return cls(
            data_dir=data_dir,
            database_url=database_url,
            redis_url=env.get("NEMO_REDIS_URL") or None,
            redis_prefix=env.get("NEMO_REDIS_PREFIX") or "nemo:",
            db_pool=DbPool.from_env(env),
            master_key=env.get("NEMO_MASTER_KEY") or None,
            admin_token=env.get("NEMO_ADMIN_TOKEN") or None,
            max_body_bytes=int(env.get("NEMO_MAX_BODY_BYTES") or 32 * 1024 * 1024),
            shutdown_grace=float(env.get("NEMO_SHUTDOWN_GRACE") or 30),
            metrics_token=env.get("NEMO_METRICS_TOKEN") or None,
            sse_keepalive=float(env.get("NEMO_SSE_KEEPALIVE") or 10),
            auth_failures_per_minute=int(env.get("NEMO_AUTH_FAILURES_PER_MINUTE") or 30),
            stripe_webhook_secret=env.get("NEMO_STRIPE_WEBHOOK_SECRET") or None,
            stripe_topup_url=env.get("NEMO_STRIPE_TOPUP_URL") or None,
            operator_alert_url=env.get("NEMO_OPERATOR_ALERT_URL") or None,
            operator_alert_secret=env.get("NEMO_OPERATOR_ALERT_SECRET") or None,
            alert_retry_base=float(env.get("NEMO_ALERT_RETRY_BASE") or 5),
            alert_retry_cap=float(env.get("NEMO_ALERT_RETRY_CAP") or 3600),
            alert_retry_for=float(env.get("NEMO_ALERT_RETRY_FOR") or 86400),
            client_header_timeout=float(env.get("NEMO_CLIENT_HEADER_TIMEOUT") or 10),
            client_body_timeout=float(env.get("NEMO_CLIENT_BODY_TIMEOUT") or 60),
            max_header_bytes=int(env.get("NEMO_MAX_HEADER_BYTES") or 64 * 1024),
            otlp_endpoint=env.get("NEMO_OTLP_ENDPOINT") or None,
            log_level=log_level,
            lease_seconds=lease,
            lease_renew=renew,
        )
