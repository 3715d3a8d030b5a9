"""The server's background work, never on the request path: the ledger's sealer, the alert
watcher, the alert delivery worker and this process's lease (renewed, and holds of dead
processes released). Started and stopped by the app's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from nemorouter.store.base import Store

if TYPE_CHECKING:  # only for the Protocol: invalidation imports redis, which only Redis deployments load
    from nemorouter.service.alerting.alerts import AlertWatcher
    from nemorouter.service.alerting.outbox import OutboxWorker
    from nemorouter.service.gateway import Gateway
    from nemorouter.service.jobs.invalidation import Invalidation
    from nemorouter.settings import Settings

log = logging.getLogger("nemorouter")
STOP_GRACE = 5.0  # seconds a round in progress may take to finish at shutdown


class Services(Protocol):
    """The parts of the server's `service.container.Services` its background work runs on (named
    here so that jobs/ does not import the container, which builds them)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def store(self) -> Store: ...
    @property
    def gateway(self) -> Gateway | None: ...
    @property
    def alerts(self) -> AlertWatcher | None: ...
    @property
    def outbox(self) -> OutboxWorker | None: ...
    @property
    def invalidation(self) -> Invalidation | None: ...


@dataclass
class Background:
    stopping: asyncio.Event
    tasks: list[asyncio.Task[None]]


async def _sealing(store: Store, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        sealed = 0
        try:
            sealed = await store.seal_ledger()
        except Exception:
            log.exception("sealing the ledger failed; trying again")
        if sealed >= store.seal_batch:  # more may be waiting: next round once requests had a turn
            await asyncio.sleep(0)
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), store.seal_every)


async def _leasing(services: Services, owner: str, stopping: asyncio.Event) -> None:
    """Renew this process's lease; release the holds of processes whose lease lapsed."""
    store, settings = services.store, services.settings
    every = settings.lease_renew  # below the lease (Settings checks it)
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), every)
            return
        try:
            if not await store.renew_lease(owner, settings.lease_seconds):
                log.error(
                    "this process's lease had lapsed (no contact with the database for too long):"
                    " its holds may have been released; requests then in flight are not charged",
                    extra={"owner": owner},
                )
            released = await store.recover_dead_holds()
            if released:
                log.warning(
                    "released holds left by a stopped process",
                    extra={"count": len(released), "owners": sorted({h.owner for h in released})},
                )
        except Exception:
            log.exception("renewing the process lease failed; trying again")


def start_background(services: Services) -> Background:
    stopping = asyncio.Event()
    jobs: list[Coroutine[Any, Any, None]] = [_sealing(services.store, stopping)]
    if services.gateway is not None:
        jobs.append(_leasing(services, services.gateway.owner, stopping))
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
        if services.gateway is not None:  # every request is over: nothing of ours stays held
            owner = services.gateway.owner
            left = await services.store.recover_holds(owner)
            if left:
                log.warning("released holds of requests cut off at shutdown", extra={"count": len(left)})
            await services.store.drop_lease(owner)
    except Exception:
        log.exception("releasing this process's lease failed; it lapses by itself")
    try:
        if services.alerts is not None:
            await services.alerts.tick()
        await services.store.seal_ledger()
    except Exception:
        log.exception("final alert and seal round failed")
