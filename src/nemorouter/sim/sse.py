"""A raw ASGI streaming response that flushes every chunk and can drop the connection.

Starlette's ``StreamingResponse`` always finishes the body cleanly; the sim
must also be able to end a stream the way a crashed upstream does. Returning
from the ASGI callable without the final body message makes uvicorn close the
transport mid-body, so the client sees an incomplete chunked read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

CUT = b"\x00sim-cut\x00"
"""Yield this (by identity) from the event iterator to drop the connection without ending the body."""


class SimStream(Response):
    """Sends each yielded ``bytes`` as its own body message, i.e. its own write to the socket."""

    def __init__(
        self,
        events: AsyncIterator[bytes],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str = "text/event-stream",
    ) -> None:
        self.events = events
        self.status_code = status_code
        self.media_type = media_type
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()

        async def watch_disconnect() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    return

        watcher = asyncio.create_task(watch_disconnect())
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            async for chunk in self.events:
                if gone.is_set() or chunk is CUT:
                    return  # uvicorn closes the transport: a real mid-body drop
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            aclose = getattr(self.events, "aclose", None)
            if aclose is not None:
                await aclose()
