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
    redis_url: str | None = None
    master_key: str | None = None
    admin_token: str | None = None
    max_body_bytes: int = 32 * 1024 * 1024
    shutdown_grace: float = 30.0
    metrics_token: str | None = None
    sse_keepalive: float = 10.0
    timeouts: Timeouts = field(default_factory=Timeouts)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        data_dir = Path(env.get("NEMO_DATA_DIR") or Path.home() / ".nemorouter").expanduser()
        database_url = env.get("NEMO_DATABASE_URL") or f"sqlite:///{data_dir / 'nemorouter.db'}"
        return cls(
            data_dir=data_dir,
            database_url=database_url,
            redis_url=env.get("NEMO_REDIS_URL") or None,
            master_key=env.get("NEMO_MASTER_KEY") or None,
            admin_token=env.get("NEMO_ADMIN_TOKEN") or None,
            max_body_bytes=int(env.get("NEMO_MAX_BODY_BYTES") or 32 * 1024 * 1024),
            shutdown_grace=float(env.get("NEMO_SHUTDOWN_GRACE") or 30),
            metrics_token=env.get("NEMO_METRICS_TOKEN") or None,
            sse_keepalive=float(env.get("NEMO_SSE_KEEPALIVE") or 10),
        )
