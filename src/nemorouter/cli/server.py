"""Running the HTTP server: uvicorn with uvloop and httptools, JSON logs, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import sys
from collections.abc import Callable, Generator

import uvicorn

from nemorouter import logs
from nemorouter.app import create_app
from nemorouter.cli.guarded_http import guarded_protocol, sweep
from nemorouter.settings import Settings


class _Server(uvicorn.Server):
    """Announces readiness (the contract's `http://HOST:PORT` line) once sockets accept."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready
        self._stop_sweeping = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """uvicorn re-raises SIGTERM after a graceful shutdown; the contract wants exit 0."""
        with super().capture_signals():
            yield
            self._captured_signals.clear()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            # Slow clients are cut by deadline (cli/guarded_http.py), one sweep for all connections.
            self._sweeper = asyncio.create_task(sweep(self.server_state.connections, self._stop_sweeping))
            # Everything built so far lives as long as the process: keep it out of the collector's
            # way, and collect the young generation less often (each request allocates hundreds of
            # short-lived objects; the default threshold of 700 runs a collection every request or two).
            gc.collect()
            gc.freeze()
            gc.set_threshold(50_000, 20, 20)
            self._on_ready()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._stop_sweeping.set()
        if self._sweeper is not None:
            await self._sweeper
        await super().shutdown(sockets)


def serve(settings: Settings, host: str, port: int, on_ready: Callable[[], None] | None = None) -> None:
    logs.configure()
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        loop="uvloop",
        http=guarded_protocol(
            settings.client_header_timeout, settings.client_body_timeout, settings.max_header_bytes
        ),
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace),
        timeout_keep_alive=30,
    )

    def ready() -> None:
        print(f"NemoRouter listening on http://{host}:{port}", flush=True)
        if on_ready is not None:
            on_ready()

    server = _Server(config, ready)
    server.run()
    if not server.started:
        sys.exit(1)
