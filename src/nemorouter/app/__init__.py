"""The thin ASGI layer: routes, error mapping, streaming responses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nemorouter.app import admin, inference, management
from nemorouter.app.http import json_response, on_http_error, on_nemo_error, on_unexpected
from nemorouter.errors import NemoError
from nemorouter.service.container import Services, close_services, open_services, start_gateway
from nemorouter.settings import Settings
from nemorouter.store.sqlite import SqliteStore
from nemorouter.timeutil import new_id

log = logging.getLogger("nemorouter")


async def healthz(request: Request) -> Response:
    return json_response({"ok": True})


async def readyz(request: Request) -> Response:
    services: Services = request.app.state.services
    try:
        await services.store.config_version()
    except Exception:
        return json_response({"ok": False, "database": False}, status=503)
    return json_response({"ok": True, "database": True})


async def _checkpointer(store: SqliteStore) -> None:
    """WAL checkpoints off the event loop, so a commit never pays for one."""
    while True:
        await asyncio.sleep(1.0)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(store.checkpoint)


def create_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = await open_services(settings)
        await start_gateway(services, owner=new_id("proc_", 6))
        app.state.services = services
        background = None
        if isinstance(services.store, SqliteStore):
            services.store.set_autocheckpoint(0)
            background = asyncio.create_task(_checkpointer(services.store))
        try:
            yield
        finally:
            if background is not None:
                background.cancel()
            await close_services(services)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        *inference.routes,
        *management.routes,
        *admin.routes,
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={NemoError: on_nemo_error, HTTPException: on_http_error, Exception: on_unexpected},
    )
