"""Config changes reach every replica at once: a Redis pub/sub nudge to recheck the config version.

Best effort by design. Correctness never rests on a message: each replica also polls the
store's config version (RoutingTable, every 0.25 s), and `reserve` re-checks a key's
revocation, disabling and expiry in the database on every request. The message only turns
"within a quarter second" into "within a round trip" for keys, catalog and deployments.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from nemorouter.service.routing import RoutingTable

log = logging.getLogger("nemorouter.invalidation")
RESUBSCRIBE_AFTER = 1.0  # seconds between attempts while Redis is down


class Invalidation:
    def __init__(self, client: aioredis.Redis, prefix: str, routes: RoutingTable) -> None:
        self._redis = client
        self.channel = f"{prefix}config"
        self._routes = routes
        self._tasks: set[asyncio.Task[None]] = set()
        self.received = 0  # messages acted on (for tests and metrics)
        routes.on_change = self.announce

    def announce(self, version: int) -> None:
        """This replica changed the config: tell the others (in the background, best effort)."""
        task = asyncio.get_running_loop().create_task(self._publish(version))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, version: int) -> None:
        try:
            await self._redis.publish(self.channel, str(version))
        except RedisError as exc:
            log.warning(
                "config change not announced (replicas see it within their poll)", extra={"error": str(exc)}
            )

    async def run(self, stopping: asyncio.Event) -> None:
        """Listen until stopping; on any message, reload the routing table (and so the key cache)."""
        lost = False
        while not stopping.is_set():
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                if lost:
                    log.warning("config channel back")
                    lost = False
                await self._routes.recheck()  # anything missed while unsubscribed
                while not stopping.is_set():
                    message: Any = await pubsub.get_message(timeout=0.5)
                    if message is not None:
                        self.received += 1
                        await self._routes.recheck()
            except (RedisError, OSError) as exc:
                if not lost:  # once per outage, not once per attempt
                    log.warning(
                        "config channel lost; replicas rely on the poll until it is back",
                        extra={"error": str(exc)},
                    )
                    lost = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), RESUBSCRIBE_AFTER)
            except Exception:
                log.exception("config channel failed; retrying")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), RESUBSCRIBE_AFTER)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
