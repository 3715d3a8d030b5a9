"""The server's background work, never on the request path: the ledger's sealer, the alert
watcher and the alert delivery worker. Started and stopped by the app's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from nemorouter.service.container import Services
from nemorouter.store.base import Store

log = logging.getLogger("nemorouter")
SEAL_EVERY = 0.5  # seconds: a settled entry is tamper-evident within about this long
STOP_GRACE = 5.0  # seconds a round in progress may take to finish at shutdown


@dataclass
class Background:
    stopping: asyncio.Event
    tasks: list[asyncio.Task[None]]


async def _sealing(store: Store, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        try:
            await store.seal_ledger()
        except Exception:
            log.exception("sealing the ledger failed; trying again")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), SEAL_EVERY)


def start_background(services: Services) -> Background:
    stopping = asyncio.Event()
    jobs: list[Coroutine[Any, Any, None]] = [_sealing(services.store, stopping)]
    if services.alerts is not None:
        jobs.append(services.alerts.run(stopping))
    if services.outbox is not None:
        jobs.append(services.outbox.run(stopping))
    if services.invalidation is not None:
        jobs.append(services.invalidation.run(stopping))
    return Background(stopping, [asyncio.create_task(job) for job in jobs])


async def stop_background(services: Services, background: Background) -> None:
    """Stop every task, then note what happened last (alerts queued, entries settled during the
    drain sealed) before the store closes. Queued alerts go out after the next start."""
    background.stopping.set()
    _, late = await asyncio.wait(background.tasks, timeout=STOP_GRACE)
    for task in late:
        task.cancel()  # a delivery in flight: its lease runs out and it is retried
    await asyncio.gather(*background.tasks, return_exceptions=True)
    try:
        if services.alerts is not None:
            await services.alerts.tick()
        await services.store.seal_ledger()
    except Exception:
        log.exception("final alert and seal round failed")
