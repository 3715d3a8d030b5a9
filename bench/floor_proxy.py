"""Floor proxy: the cheapest honest Python pass-through, the baseline NemoRouter is judged against.

Same server stack as the gateway (uvicorn+uvloop+httptools, one worker) and the same upstream client
(one pooled aiohttp session), but no framework and no features: it forwards method, path, body,
Content-Type and Authorization, and returns the upstream's status, content-type and body (streamed
through unbuffered for SSE). Whatever NemoRouter costs above this is the price of its features.
With `--workers N` it runs the way `nemorouter serve --workers N` does: N forked processes accepting
on one listening socket, so a multi-worker gateway row is compared with a floor of as many workers.

    python bench/floor_proxy.py --port 9002 --upstream http://127.0.0.1:9001 [--workers 2]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp
import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

FORWARDED = (b"content-type", b"authorization")


async def _read_body(receive: Receive) -> bytes:
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


def make_app(upstream: str) -> ASGIApp:
    """Build the proxy app; the session lives in the closure, opened and closed by the lifespan."""
    upstream = upstream.rstrip("/")
    session: aiohttp.ClientSession | None = None

    async def lifespan(receive: Receive, send: Send) -> None:
        nonlocal session
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
                session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if session is not None:
                    await session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http" or session is None:
            return
        body = await _read_body(receive)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in FORWARDED}
        url = upstream + scope["path"]
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode("latin-1")
        streaming = False
        try:
            async with session.request(scope["method"], url, data=body, headers=headers) as resp:
                status = resp.status
                content_type = resp.headers.get("Content-Type", "application/json").encode("latin-1")
                if content_type.startswith(b"text/event-stream"):
                    streaming = True
                    sse_headers = [(b"content-type", content_type)]
                    await send({"type": "http.response.start", "status": status, "headers": sse_headers})
                    async for chunk in resp.content.iter_any():
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    await send({"type": "http.response.body", "body": b""})
                    return
                data = await resp.read()
        except aiohttp.ClientError as exc:
            if streaming:  # headers already sent: all we can do is cut the stream
                return
            status, content_type = 502, b"application/json"
            data = b'{"error": {"message": "upstream error: %s"}}' % type(exc).__name__.encode()
        resp_headers = [(b"content-type", content_type), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": resp_headers})
        await send({"type": "http.response.body", "body": data})

    return app


def _config(upstream: str, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        make_app(upstream),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
    )


def serve_workers(upstream: str, host: str, port: int, workers: int) -> None:
    """Fork `workers` servers on one listening socket (as nemorouter's `serve --workers`); SIGTERM or
    SIGINT stops them all; returns once every one has exited."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # a worker: its own event loop and aiohttp session
            uvicorn.Server(_config(upstream, host, port)).run(sockets=[sock])
            os._exit(0)
        children.append(pid)

    def stop(signum: int, frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for child in children:
        os.waitpid(child, 0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="upstream base URL, e.g. http://127.0.0.1:9001")
    parser.add_argument("--workers", type=int, default=1, help="forked processes on one socket (default 1)")
    args = parser.parse_args()
    if args.workers < 1:
        sys.exit("--workers must be at least 1")
    if args.workers == 1:
        uvicorn.Server(_config(args.upstream, args.host, args.port)).run()
    else:
        serve_workers(args.upstream, args.host, args.port, args.workers)


if __name__ == "__main__":
    main()
