"""Running the HTTP server: uvicorn with uvloop and httptools, JSON logs, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import multiprocessing
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Callable, Generator
from typing import Any

import uvicorn

from nemorouter import _native, logs
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


def raise_open_file_limit() -> int:
    """Lift this process's soft limit on open files to its hard limit, and return it.

    Every open stream holds two sockets (the client's and the provider's) for as long as the model
    writes, so the usual soft limit of 1,024 would cap a gateway near 500 concurrent streams while
    the hard limit allows far more; servers that hold many connections raise it the same way.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _config(settings: Settings, host: str, port: int) -> uvicorn.Config:
    # The client address every throttle uses (auth failures, leak reports, console sign-ins) is the
    # peer's, unless the peer is one of NEMO_TRUSTED_PROXIES: then the right-most address in its
    # X-Forwarded-For that is not a trusted proxy (uvicorn's ProxyHeadersMiddleware, which also
    # takes X-Forwarded-Proto from those peers only). None by default: uvicorn's own default would
    # trust loopback (and FORWARDED_ALLOW_IPS), letting any local client pick its address.
    trusted = [str(network) for network in settings.trusted_proxies]
    return uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        loop="uvloop",
        http=guarded_protocol(
            settings.client_header_timeout, settings.client_body_timeout, settings.max_header_bytes
        ),
        lifespan="on",
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or [],
        access_log=False,
        server_header=False,  # no `server: uvicorn`: nothing to fingerprint, one header less to write
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace),
        timeout_keep_alive=30,
    )


def serve(settings: Settings, host: str, port: int, on_ready: Callable[[], None] | None = None) -> None:
    logs.configure(settings.log_level)
    raise_open_file_limit()
    config = _config(settings, host, port)

    def ready() -> None:
        print(f"NemoRouter listening on http://{host}:{port}", flush=True)
        compiled = _native.compiled_modules()
        print(
            f"native: {len(compiled)} hot modules compiled (mypyc)"
            if compiled
            else f"native: not in use, {_native.status}; plain Python",
            flush=True,
        )
        if on_ready is not None:
            on_ready()

    server = _Server(config, ready)
    server.run()
    if not server.started:
        sys.exit(1)


def shared_state_problem(settings: Settings) -> str | None:
    """Why several processes cannot share this configuration's state, or None if they can."""
    if not settings.database_url.startswith(("postgres://", "postgresql://")):
        return "--workers above 1 needs PostgreSQL (NEMO_DATABASE_URL=postgresql://...): one SQLite file serves one process"
    if not settings.redis_url:
        return "--workers above 1 needs Redis (NEMO_REDIS_URL=redis://...) for rate limits and cache invalidation the processes share"
    return None


def _follow_parent(parent: int) -> None:
    """Linux: get SIGTERM (a graceful drain) if the parent dies, even by SIGKILL; no orphans serving."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the line above
        sys.exit(0)


def _worker(settings: Settings, sock: socket.socket, ready: Any, parent: int) -> None:
    """One forked worker: its own event loop, store pool and owner id, serving the shared socket."""
    _follow_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into SIGTERM
    logs.configure(settings.log_level)
    server = _Server(_config(settings, "", 0), ready.set)
    server.run(sockets=[sock])
    sys.exit(0 if server.started else 1)


def serve_workers(settings: Settings, host: str, port: int, workers: int) -> None:
    """`serve --workers N`: N forked processes accept on one listening socket.

    Every process is a whole gateway (its own hold owner); they agree through PostgreSQL (money,
    holds, config) and Redis (rate limits, invalidation). A worker that dies is started again;
    SIGTERM or SIGINT stops all of them gracefully and exits 0 once they have drained.
    """
    logs.configure(settings.log_level)
    raise_open_file_limit()  # inherited by the forked workers
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr, flush=True)
        sys.exit(1)
    sock.listen(2048)
    sock.set_inheritable(True)
    ctx = multiprocessing.get_context("fork")
    stopping = False

    def start() -> tuple[Any, Any]:
        ready = ctx.Event()
        proc = ctx.Process(target=_worker, args=(settings, sock, ready, os.getpid()), daemon=False)
        proc.start()
        return proc, ready

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for proc, _ in procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)

    procs = [start() for _ in range(workers)]
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    announced = False
    while True:
        if not announced and all(ready.is_set() for _, ready in procs):
            print(f"NemoRouter listening on http://{host}:{port} ({workers} workers)", flush=True)
            announced = True
        for i, (proc, _) in enumerate(procs):
            if proc.exitcode is None:
                continue
            if stopping:
                continue
            if not announced:  # a worker that cannot start: stop the rest and fail
                stop(signal.SIGTERM, None)
                for other, _ in procs:
                    other.join()
                sys.exit(1)
            print(
                f"worker {proc.pid} exited ({proc.exitcode}); starting another", file=sys.stderr, flush=True
            )
            procs[i] = start()
        if stopping and all(proc.exitcode is not None for proc, _ in procs):
            break
        time.sleep(0.1)
    sock.close()
    sys.exit(0)
