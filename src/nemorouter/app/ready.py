"""GET /readyz: can this process serve? The database must answer (503 naming it when it does
not: a load balancer takes the replica out). Redis, when one is configured (NEMO_REDIS_URL), is
checked and reported but does not make a replica unready: without it every replica still serves,
on per-process rate limits (docs/deployment.md), so failing readiness would take every replica
out at once for an outage they ride through. The body names it under `degraded`; alert on that."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from nemorouter.store.base import Store

log = logging.getLogger("nemorouter")
TIMEOUT = 2.0  # seconds each part has to answer: a probe must not hang on a dead peer


class Readiness:
    """The checks, with a Redis connection of their own (made on first use, kept, closed at
    shutdown), so a probe never waits behind the rate limiter's traffic."""

    def __init__(self, redis_url: str | None) -> None:
        self._redis_url = redis_url
        self._redis: Any = None

    async def check(self, store: Store) -> dict[str, Any]:
        parts: dict[str, bool] = {"database": await _answers(store.config_version(), "database")}
        if self._redis_url is not None:
            parts["redis"] = await _answers(self._ping(), "redis")
        failed = [name for name in ("database",) if not parts[name]]
        degraded = [name for name in ("redis",) if parts.get(name) is False]
        return {
            "ok": not failed,
            **parts,
            **({"failed": failed} if failed else {}),
            **({"degraded": degraded} if degraded else {}),
        }

    async def _ping(self) -> bool:
        if self._redis is None:
            import redis.asyncio as aioredis

            assert self._redis_url is not None
            self._redis = aioredis.Redis.from_url(
                self._redis_url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT
            )
        return bool(await self._redis.ping())

    async def close(self) -> None:
        client, self._redis = self._redis, None
        if client is not None:
            await client.aclose()


async def _answers(probe: Any, part: str) -> bool:
    try:
        await asyncio.wait_for(probe, TIMEOUT)
    except Exception as exc:  # whatever the failure, the part is not ready; the log says why
        log.warning("readiness check failed", extra={"part": part, "error": type(exc).__name__})
        return False
    return True
