"""What the dispatcher tells the service: failed attempts counted, refused vault keys quarantined.

The dispatcher (engine/dispatch.py) decides; this writes. A quarantine is a store row every
replica routes by, until an operator releases it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from nemorouter.engine.dispatch import Attempt
from nemorouter.providers.types import Failure, FailureKind
from nemorouter.service.metrics import Metrics
from nemorouter.service.routing import RoutingTable, Target
from nemorouter.service.tasks import Tasks
from nemorouter.store.base import Store
from nemorouter.timeutil import iso

log = logging.getLogger("nemorouter.gateway")


class Quarantine:
    """The dispatcher's `Observer`."""

    def __init__(
        self,
        store: Store,
        routes: RoutingTable,
        clock: Callable[[], datetime],
        metrics: Metrics,
        tasks: Tasks,
    ) -> None:
        self.store = store
        self.routes = routes
        self.clock = clock
        self.metrics = metrics
        self.tasks = tasks

    def attempt_failed(self, provider: str, kind: FailureKind) -> None:
        self.metrics.upstream_failures.labels(provider, kind.value).inc()

    def key_refused(self, attempt: Attempt[Any], failure: Failure) -> None:
        target: Target = attempt.origin
        self.tasks.spawn(self.quarantine(target, failure))

    async def quarantine(self, target: Target, failure: Failure) -> None:
        """Mark the key quarantined in the store (kept out of routing by every replica until an
        operator releases it). Requests in flight may see the same refusal: the first one's
        time stays, so the operator is alerted once."""
        try:
            current = {k.id: k for k in await self.store.list_provider_keys(target.provider.id)}
            found = current.get(target.key.id)
            if found is not None and found.quarantined_at is None:
                await self.store.update_provider_key(target.key.id, {"quarantined_at": iso(self.clock())})
                log.error(
                    "provider key quarantined: its provider refused it; fix it and PATCH quarantined=false",
                    extra={
                        "provider": target.provider.name,
                        "provider_key": target.key.id,
                        "status": failure.status,
                    },
                )
            await self.routes.refresh(force=True)
        except Exception:
            log.exception("provider key not quarantined", extra={"provider_key": target.key.id})
