"""The thin ASGI layer: routes, error mapping, streaming responses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from nemorouter import __version__
from nemorouter.app import admin, inference, management, public, webhooks
from nemorouter.app.fast import FastPath
from nemorouter.app.headers import SecurityHeaders
from nemorouter.app.http import json_response, on_http_error, on_nemo_error, on_unexpected
from nemorouter.app.metrics_route import metrics
from nemorouter.app.openapi import docs_html
from nemorouter.app.openapi import document as openapi_document
from nemorouter.app.ready import Readiness
from nemorouter.errors import NemoError
from nemorouter.service.container import Services, close_services, open_services, start_gateway
from nemorouter.service.jobs.background import start_background, stop_background
from nemorouter.settings import Settings
from nemorouter.timeutil import new_id

log = logging.getLogger("nemorouter")


async def healthz(request: Request) -> Response:
    return json_response({"ok": True})


async def openapi(request: Request) -> Response:
    return json_response(openapi_document(__version__))


async def docs(request: Request) -> Response:
    return HTMLResponse(docs_html(openapi_document(__version__)))


async def readyz(request: Request) -> Response:
    """503 naming the database when it does not answer; Redis is reported (`degraded`), not fatal."""
    services: Services = request.app.state.services
    readiness: Readiness = request.app.state.readiness
    report = await readiness.check(services.store)
    return json_response(report, status=200 if report["ok"] else 503)


async def _checkpoints(store: object, stopping: asyncio.Event, every: float = 0.05) -> None:
    """SQLite only: copy WAL pages into the database from a worker thread, so that a commit on
    the event loop seldom checkpoints (steadier tail latency). Twenty times a second: a round's
    first sync writes out every WAL page made since the last one, and the requests beside a round
    are the slow ones, so many short rounds slow fewer requests by less than a few long ones (p99
    at one connection 3.32 ms every 0.5 s, 2.20 every 0.1 s, 1.64 every 0.05 s in alternating A/Bs;
    docs/architecture.md). A round with nothing to copy costs no sync, and one with nothing
    written since the last (`checkpoint_due`) is not handed to the thread at all."""
    checkpoint = getattr(store, "checkpoint", None)
    in_background = getattr(store, "checkpoint_in_background", None)
    due = getattr(store, "checkpoint_due", None)
    if checkpoint is None or in_background is None or due is None:
        return
    in_background()
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), every)
            return
        try:
            if due():
                await asyncio.to_thread(checkpoint)
        except Exception:  # a busy database just means: next time
            log.debug("background checkpoint skipped", exc_info=True)


def create_app(settings: Settings) -> FastPath:
    tracing = None
    if settings.otlp_endpoint:  # only then is OpenTelemetry imported (the `otel` extra)
        try:
            from nemorouter.tracing import Tracing
        except ImportError as exc:
            raise RuntimeError(
                f"NEMO_OTLP_ENDPOINT is set but OpenTelemetry is not installed ({exc.name}):"
                " pip install 'nemorouter[otel]'"
            ) from None
        tracing = Tracing(settings.otlp_endpoint)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = await open_services(settings)
        await start_gateway(services, owner=new_id("proc_", 6))
        if tracing is not None:
            tracing.instrument(services)
        app.state.services = services
        app.state.readiness = Readiness(settings.redis_url)
        app.state.leak_limits = public.LeakLimits()
        stopping = asyncio.Event()
        maintenance = asyncio.create_task(_checkpoints(services.store, stopping))
        background = start_background(services)  # sealer, alert watcher, alert delivery
        try:
            yield
        finally:
            await stop_background(services, background)
            stopping.set()
            await maintenance  # never close the store under a running checkpoint
            await app.state.readiness.close()
            await close_services(services)
            if tracing is not None:
                tracing.shutdown()

    from nemorouter.console.routes import routes as console_routes  # the console imports app parts

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *inference.routes,
        *management.routes,
        *public.routes,
        *webhooks.routes,
        *admin.routes,
        *console_routes,  # the web console: GET / and everything under /console
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={NemoError: on_nemo_error, HTTPException: on_http_error, Exception: on_unexpected},
    )
    fast = FastPath(app, settings.auth_failures_per_minute, settings.cors_origins)
    # Traced, every request runs under a server span (the FastPath itself is unchanged).
    return fast if tracing is None else tracing.wrap_app(fast)  # type: ignore[return-value]
