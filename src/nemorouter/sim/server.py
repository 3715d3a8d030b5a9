"""The provider simulator app and its runner (``nemorouter sim``).

A real HTTP server, served by the same uvicorn/uvloop/httptools stack as the
gateway, so tests and benchmarks exercise real sockets, chunked streaming and
dropped connections rather than an in-process mock.
"""

from __future__ import annotations

import logging
import socket

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nemorouter.sim import (
    anthropic_wire,
    audio,
    bedrock_invoke,
    bedrock_wire,
    counting,
    gemini_wire,
    images,
    openai_wire,
    responses_wire,
    sts,
    vertex_auth,
    vertex_wire,
)
from nemorouter.sim.state import MAX_RECORDED, SimState


async def _requests_list(request: Request) -> Response:
    state: SimState = request.app.state.sim
    raw = request.query_params.get("limit", str(MAX_RECORDED))
    try:
        limit = min(int(raw), MAX_RECORDED)
    except ValueError:
        return openai_wire.error_response(
            400, "'limit' must be an integer.", "invalid_request_error", param="limit"
        )
    return openai_wire.json_response(state.recent(limit))


async def _requests_clear(request: Request) -> Response:
    request.app.state.sim.requests.clear()
    return openai_wire.json_response({"cleared": True})


async def _health(request: Request) -> Response:
    return openai_wire.json_response({"status": "ok"})


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods answer in OpenAI's error shape, as the real API does."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = f"Invalid URL ({request.method} {request.url.path})" if status in (404, 405) else str(exc)
    return openai_wire.error_response(status, message, "invalid_request_error")


def create_sim_app(accepted_keys: set[str] | None = None) -> Starlette:
    """The sim as an ASGI app; ``accepted_keys=None`` accepts any ``sk-sim-...`` bearer key."""
    routes = [
        *openai_wire.routes(),
        *images.routes(),
        *audio.routes(),
        *responses_wire.routes(),
        *anthropic_wire.routes(),
        *gemini_wire.routes(),
        *bedrock_wire.routes(),
        *bedrock_invoke.routes(),
        *sts.routes(),
        *counting.routes(),
        *vertex_auth.routes(),
        *vertex_wire.routes(),
        Route("/_sim/requests", _requests_list, methods=["GET"]),
        Route("/_sim/requests", _requests_clear, methods=["DELETE"]),
        Route("/_sim/health", _health, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.sim = SimState(accepted_keys=frozenset(accepted_keys) if accepted_keys is not None else None)
    return app


class _QuietCuts(logging.Filter):
    """Drop uvicorn's complaint about the connections the sim drops on purpose (``cut_after``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


class _AnnouncingServer(uvicorn.Server):
    """Prints the URL only once the socket is accepting connections."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            print(f"nemorouter sim listening on http://{shown}:{port}", flush=True)


def sim_config(app: Starlette, host: str, port: int) -> uvicorn.Config:
    """The uvicorn settings the sim runs with (fast stack, no access log)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=30,
    )


def run_sim(host: str = "127.0.0.1", port: int = 4010, accepted_keys: set[str] | None = None) -> None:
    """Serve the sim until interrupted (blocking). ``port=0`` picks a free port (printed)."""
    config = sim_config(create_sim_app(accepted_keys), host, port)  # configures uvicorn's loggers
    logging.getLogger("uvicorn.error").addFilter(_QuietCuts())
    server = _AnnouncingServer(config)
    server.run()
