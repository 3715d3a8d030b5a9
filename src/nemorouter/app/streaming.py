"""An SSE response that notices the client leaving and always closes its stream.

Starlette's StreamingResponse leaves a half-consumed generator to the garbage collector
when the client disconnects; a stream that holds money must settle deterministically, so
this response cancels the relay on `http.disconnect` and always awaits `aclose()`.

A Relay (the OpenAI chat door's stream) is sent by the compiled `relay_pump.pump`; another
door's conversion of one (frontdoors/event_stream.py) by the loop here.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import Receive, Scope, Send

from nemorouter.app.headers import secured
from nemorouter.app.relay_pump import pump
from nemorouter.service.relay import Frames, Relay


class SseResponse:
    def __init__(self, chunks: Frames, headers: dict[str, str]) -> None:
        self.chunks = chunks
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        self.raw_headers += [(k.encode(), v.encode()) for k, v in headers.items()]
        secured(self.raw_headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        gone = False

        async def watch() -> None:
            nonlocal gone
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone = True
                    task.cancel()
                    return

        watcher = asyncio.create_task(watch())
        chunks = self.chunks
        try:
            if isinstance(chunks, Relay):
                await pump(chunks, send, self.raw_headers)
            else:
                await _frames(chunks, send, self.raw_headers)
        except asyncio.CancelledError:
            if not gone:
                raise
            task.uncancel()
        except OSError:
            pass  # the client went away while we were writing
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await chunks.aclose()


async def _frames(chunks: Frames, send: Send, headers: list[tuple[bytes, bytes]]) -> None:
    # Started before anything can fail: a generator never started would skip its own cleanup on
    # aclose(), and the request would never settle.
    first = await anext(chunks, None)
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if first is not None:
        await send({"type": "http.response.body", "body": first, "more_body": True})
        async for frame in chunks:
            await send({"type": "http.response.body", "body": frame, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
