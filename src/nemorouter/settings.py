"""Settings, read once from the environment and passed in (never global)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Upstream timeouts in seconds (the contract's defaults)."""

    connect: float = 10.0
    first_byte: float = 60.0
    idle: float = 60.0
    total: float = 600.0


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    database_url: str
    redis_url: str | None = None  # shared rate limits and cache invalidation across replicas
    redis_prefix: str = "nemo:"  # every Redis key and channel starts with this (one Redis, many gateways)
    master_key: str | None = None
    admin_token: str | None = None
    max_body_bytes: int = 32 * 1024 * 1024
    shutdown_grace: float = 30.0
    metrics_token: str | None = None
    sse_keepalive: float = 10.0
    auth_failures_per_minute: int = 30  # per client address; then 429 (app/throttle.py)
    timeouts: Timeouts = field(default_factory=Timeouts)
    # -- money trail ("One bill" 3, 4): Stripe top-ups and alerts out --------------------------
    stripe_webhook_secret: str | None = None  # unset: POST /webhooks/stripe answers 503
    operator_alert_url: str | None = None  # quarantined provider keys are alerted here, if set
    operator_alert_secret: str | None = None  # `whsec_` + base64, as the account webhooks' secrets
    alert_retry_base: float = 5.0  # seconds to the first retry of an alert; doubles each time
    alert_retry_cap: float = 3600.0  # retries at most this far apart
    alert_retry_for: float = 86400.0  # and for this long after the alert was written

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        data_dir = Path(env.get("NEMO_DATA_DIR") or Path.home() / ".nemorouter").expanduser()
        database_url = env.get("NEMO_DATABASE_URL") or f"sqlite:///{data_dir / 'nemorouter.db'}"
        return cls(
            data_dir=data_dir,
            database_url=database_url,
            redis_url=env.get("NEMO_REDIS_URL") or None,
            redis_prefix=env.get("NEMO_REDIS_PREFIX") or "nemo:",
            master_key=env.get("NEMO_MASTER_KEY") or None,
            admin_token=env.get("NEMO_ADMIN_TOKEN") or None,
            max_body_bytes=int(env.get("NEMO_MAX_BODY_BYTES") or 32 * 1024 * 1024),
            shutdown_grace=float(env.get("NEMO_SHUTDOWN_GRACE") or 30),
            metrics_token=env.get("NEMO_METRICS_TOKEN") or None,
            sse_keepalive=float(env.get("NEMO_SSE_KEEPALIVE") or 10),
            auth_failures_per_minute=int(env.get("NEMO_AUTH_FAILURES_PER_MINUTE") or 30),
            stripe_webhook_secret=env.get("NEMO_STRIPE_WEBHOOK_SECRET") or None,
            operator_alert_url=env.get("NEMO_OPERATOR_ALERT_URL") or None,
            operator_alert_secret=env.get("NEMO_OPERATOR_ALERT_SECRET") or None,
            alert_retry_base=float(env.get("NEMO_ALERT_RETRY_BASE") or 5),
            alert_retry_cap=float(env.get("NEMO_ALERT_RETRY_CAP") or 3600),
            alert_retry_for=float(env.get("NEMO_ALERT_RETRY_FOR") or 86400),
        )
