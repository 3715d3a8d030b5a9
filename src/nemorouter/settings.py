"""Settings, read once from the environment and passed in (never global)."""

from __future__ import annotations

import base64
import binascii
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from urllib.parse import unquote, urlsplit

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
        timeout = _seconds(env, "NEMO_DB_COMMAND_TIMEOUT", 0)
        if not 0 <= sizes[0] <= sizes[1] or sizes[1] < 1:
            raise SettingsError(
                f"bad pool size: NEMO_DB_POOL_MIN {sizes[0]}, NEMO_DB_POOL_MAX {sizes[1]}"
                " (need 0 <= min <= max, max >= 1)"
            )
        return cls(sizes[0], sizes[1], timeout or None)


@dataclass(frozen=True, slots=True)
class ProxyServer:
    """An HTTP proxy for calls to providers (engine/proxy.py): host, port, and its credentials as
    a ready `Proxy-Authorization` value, kept out of every repr and log."""

    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Outbound:
    """How calls to providers leave: through which proxy (the usual `HTTPS_PROXY`, `HTTP_PROXY`
    and `NO_PROXY` variables, read once at start) and with how many connections per origin."""

    https_proxy: ProxyServer | None = None  # https origins: a CONNECT tunnel, TLS inside it
    http_proxy: ProxyServer | None = None  # http origins: requests in absolute form
    no_proxy: tuple[str, ...] = ()  # hosts, domains, IPs, CIDR blocks (`*`: all) reached directly
    max_connections_per_origin: int = 4096  # more requests than this wait their turn

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Outbound:
        """The lower-case variable wins over the upper-case one, as in curl and Python's urllib."""
        no_proxy = env.get("no_proxy") or env.get("NO_PROXY") or ""
        return cls(
            https_proxy=_proxy(env, "https_proxy"),
            http_proxy=_proxy(env, "http_proxy"),
            no_proxy=tuple(part.strip().lower() for part in no_proxy.split(",") if part.strip()),
            max_connections_per_origin=_count(env, "NEMO_UPSTREAM_MAX_CONNECTIONS", 4096),
        )


def _proxy(env: Mapping[str, str], lower: str) -> ProxyServer | None:
    """`http://[user:password@]host[:port]` (no scheme: http://, as curl reads it). The message of
    a bad one names the variable, never its value (which may hold the password)."""
    name = lower if env.get(lower) else lower.upper()
    text = (env.get(name) or "").strip()
    if not text:
        return None
    if "://" not in text:
        text = "http://" + text
    usage = f"{name} must be http://[user:password@]host[:port]"
    try:
        parts = urlsplit(text)
        port = 80 if parts.port is None else parts.port
        if port == 0:
            raise ValueError("port 0")
    except ValueError:
        raise SettingsError(f"{usage} (its port is not a number from 1 to 65535)") from None
    if parts.scheme != "http":
        raise SettingsError(f"{usage}: only plain-HTTP proxies are supported (got {parts.scheme[:10]}://)")
    if not parts.hostname or any(c.isspace() for c in text) or parts.path not in ("", "/"):
        raise SettingsError(f"{usage} (no path, no spaces)")
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode()
    return ProxyServer(parts.hostname, port, authorization)


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
    # Money series (cost per model, overruns) on /metrics without the token: an explicit opt-in.
    metrics_public_money: bool = False
    sse_keepalive: float = 10.0
    auth_failures_per_minute: int = 30  # per client address; then 429 (web/throttle.py)
    # Upstream count_tokens calls one key may cause a minute, per process; past it, offline counts.
    count_tokens_upstream_per_minute: int = 60
    # Peers whose X-Forwarded-For names the client (cli/server.py); none by default.
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
    cors_origins: tuple[str, ...] = ("*",)  # browser origins allowed on /v1/ (app/cors.py); `*`: any
    timeouts: Timeouts = field(default_factory=Timeouts)
    outbound: Outbound = field(default_factory=Outbound)  # proxies and connections to providers
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
    # Customers' webhooks may go to private/loopback addresses (service/alerting/destinations.py).
    webhooks_allow_private: bool = False
    operator_alert_secret: str | None = None  # `whsec_` + base64, as the account webhooks' secrets
    alert_retry_base: float = 5.0  # seconds to the first retry of an alert; doubles each time
    alert_retry_cap: float = 3600.0  # retries at most this far apart
    alert_retry_for: float = 86400.0  # and for this long after the alert was written
    # -- many replicas (docs/failures.md, "Holds of a dead process") -------------------------
    lease_seconds: float = 15.0  # a process silent this long is dead: its holds are released
    lease_renew: float = 5.0  # how often a process renews its lease and looks for dead ones

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Every NEMO_* value checked here, so a bad one is one line at start (cli/main.py), never a
        traceback or a server that starts and fails later."""
        env = os.environ if env is None else env
        lease = _seconds(env, "NEMO_PROCESS_LEASE", 15, signed=True)
        renew = _seconds(env, "NEMO_PROCESS_LEASE_RENEW", 5, signed=True)
        if not 0 < renew < lease:
            raise SettingsError(
                "need 0 < NEMO_PROCESS_LEASE_RENEW < NEMO_PROCESS_LEASE (seconds; defaults 5 and 15)"
            )
        log_level = (env.get("NEMO_LOG_LEVEL") or "INFO").strip().upper()
        if log_level not in LOG_LEVELS:
            raise SettingsError(f"NEMO_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        data_dir = Path(env.get("NEMO_DATA_DIR") or Path.home() / ".nemorouter").expanduser()
        if data_dir.exists() and not data_dir.is_dir():
            raise SettingsError(f"NEMO_DATA_DIR {data_dir} exists and is not a directory")
        database_url = env.get("NEMO_DATABASE_URL") or f"sqlite:///{data_dir / 'nemorouter.db'}"
        if not database_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise SettingsError(
                "NEMO_DATABASE_URL must be sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB"
            )
        redis_url = env.get("NEMO_REDIS_URL") or None
        if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError("NEMO_REDIS_URL must start with redis://, rediss:// or unix://")
        alert_base = _seconds(env, "NEMO_ALERT_RETRY_BASE", 5, positive=True)
        alert_cap = _seconds(env, "NEMO_ALERT_RETRY_CAP", 3600, positive=True)
        if alert_cap < alert_base:
            raise SettingsError("NEMO_ALERT_RETRY_CAP must be at least NEMO_ALERT_RETRY_BASE")
        return cls(
            data_dir=data_dir,
            database_url=database_url,
            redis_url=redis_url,
            redis_prefix=env.get("NEMO_REDIS_PREFIX") or "nemo:",
            db_pool=DbPool.from_env(env),
            outbound=Outbound.from_env(env),
            master_key=_master_key(env.get("NEMO_MASTER_KEY") or None),
            admin_token=env.get("NEMO_ADMIN_TOKEN") or None,
            max_body_bytes=_count(env, "NEMO_MAX_BODY_BYTES", 32 * 1024 * 1024),
            shutdown_grace=_seconds(env, "NEMO_SHUTDOWN_GRACE", 30),
            metrics_token=env.get("NEMO_METRICS_TOKEN") or None,
            metrics_public_money=_flag(env, "NEMO_METRICS_PUBLIC_MONEY"),
            sse_keepalive=_seconds(env, "NEMO_SSE_KEEPALIVE", 10, positive=True),
            auth_failures_per_minute=_count(env, "NEMO_AUTH_FAILURES_PER_MINUTE", 30),
            count_tokens_upstream_per_minute=_count(
                env, "NEMO_COUNT_TOKENS_UPSTREAM_PER_MINUTE", 60, allow_zero=True
            ),
            trusted_proxies=trusted_proxies(env.get("NEMO_TRUSTED_PROXIES") or ""),
            cors_origins=cors_origins(env.get("NEMO_CORS_ORIGINS") or "*"),
            stripe_webhook_secret=env.get("NEMO_STRIPE_WEBHOOK_SECRET") or None,
            stripe_topup_url=_url(env, "NEMO_STRIPE_TOPUP_URL"),
            operator_alert_url=_url(env, "NEMO_OPERATOR_ALERT_URL"),
            webhooks_allow_private=_flag(env, "NEMO_WEBHOOKS_ALLOW_PRIVATE"),
            operator_alert_secret=_signing_secret(env.get("NEMO_OPERATOR_ALERT_SECRET") or None),
            alert_retry_base=alert_base,
            alert_retry_cap=alert_cap,
            alert_retry_for=_seconds(env, "NEMO_ALERT_RETRY_FOR", 86400, positive=True),
            client_header_timeout=_seconds(env, "NEMO_CLIENT_HEADER_TIMEOUT", 10, positive=True),
            client_body_timeout=_seconds(env, "NEMO_CLIENT_BODY_TIMEOUT", 60, positive=True),
            max_header_bytes=_count(env, "NEMO_MAX_HEADER_BYTES", 64 * 1024),
            otlp_endpoint=_url(env, "NEMO_OTLP_ENDPOINT"),
            log_level=log_level,
            lease_seconds=lease,
            lease_renew=renew,
        )


# -- parsing one value: each failure names the variable and what it must be -----------------------

_MAX_COUNT = 2**53  # far above any sensible byte or rate limit, and exact as a float


def _count(env: Mapping[str, str], name: str, default: int, *, allow_zero: bool = False) -> int:
    """A whole number >= 1 (a limit of 0 or less would refuse everything or divide by zero), or
    >= 0 with `allow_zero` where 0 means "none"."""
    text = (env.get(name) or "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number (got {text[:40]!r})") from None
    low = 0 if allow_zero else 1
    if not low <= value <= _MAX_COUNT:
        raise SettingsError(f"{name} must be a whole number from {low} to {_MAX_COUNT} (got {value})")
    return value


def _seconds(
    env: Mapping[str, str], name: str, default: float, *, positive: bool = False, signed: bool = False
) -> float:
    """A finite number of seconds, >= 0 (> 0 with `positive`; any sign with `signed`, for values
    the caller checks against each other)."""
    text = (env.get(name) or "").strip()
    if not text:
        return float(default)
    try:
        value = float(text)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds (got {text[:40]!r})") from None
    if signed and math.isfinite(value):
        return value
    if not math.isfinite(value) or value < 0 or (positive and value == 0) or value > 10**9:
        raise SettingsError(f"{name} must be a number of seconds {'above' if positive else 'at least'} 0")
    return value


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def _flag(env: Mapping[str, str], name: str) -> bool:
    text = (env.get(name) or "").strip().lower()
    if text not in _TRUE + _FALSE:
        raise SettingsError(f"{name} must be 1 or 0 (true/false)")
    return text in _TRUE


def _url(env: Mapping[str, str], name: str) -> str | None:
    text = (env.get(name) or "").strip()
    if not text:
        return None
    if not text.startswith(("http://", "https://")) or any(c.isspace() for c in text):
        raise SettingsError(f"{name} must be an http:// or https:// URL")
    return text


def _master_key(value: str | None) -> str | None:
    """Base64 of exactly 32 bytes (vault/master.py reads it; checked here to fail at start)."""
    if value is None:
        return None
    try:
        key = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SettingsError("NEMO_MASTER_KEY is not valid base64") from None
    if len(key) != 32:
        raise SettingsError("NEMO_MASTER_KEY must decode to exactly 32 bytes")
    return value


def _signing_secret(value: str | None) -> str | None:
    """`whsec_` + base64 (service/alerting/outbox.py signs operator alerts with it)."""
    if value is None:
        return None
    body = value.strip().removeprefix("whsec_")
    try:
        key = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise SettingsError("NEMO_OPERATOR_ALERT_SECRET must be `whsec_` followed by base64")
    return value


def trusted_proxies(text: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """NEMO_TRUSTED_PROXIES: comma-separated addresses or CIDR blocks (e.g. `10.0.0.0/8, ::1`)."""
    found = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            found.append(ip_network(part, strict=False))
        except ValueError:
            raise SettingsError(
                f"NEMO_TRUSTED_PROXIES: {part[:60]!r} is not an IP address or CIDR block"
            ) from None
    return tuple(found)


def cors_origins(text: str) -> tuple[str, ...]:
    """NEMO_CORS_ORIGINS: `*`, or comma-separated origins as browsers send them
    (`https://app.example.com`, `http://localhost:3000`: a scheme, a host, maybe a port; no path)."""
    found = tuple(part.strip() for part in text.split(",") if part.strip())
    if found == ("*",):
        return found
    if not found or "*" in found:
        raise SettingsError("NEMO_CORS_ORIGINS must be `*` alone or a comma-separated list of origins")
    for origin in found:
        parts = urlsplit(origin)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path
            or parts.query
            or parts.fragment
            or parts.username is not None
            or any(c.isspace() for c in origin)
        ):
            raise SettingsError(
                f"NEMO_CORS_ORIGINS: {origin[:60]!r} is not an origin like https://app.example.com"
            )
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            raise SettingsError(f"NEMO_CORS_ORIGINS: {origin[:60]!r} has a malformed port") from None
    return tuple(origin.lower() for origin in found)
