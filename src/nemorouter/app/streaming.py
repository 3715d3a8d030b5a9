"""An SSE response that notices the client leaving and always closes its generator.

Starlette's StreamingResponse leaves a half-consumed generator to the garbage collector
when the client disconnects; a stream that holds money must settle deterministically, so
this response cancels the relay on `http.disconnect` and always awaits `aclose()`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

from starlette.types import Receive, Scope, Send

from nemorouter.app.headers import secured


class SseResponse:
    def __init__(self, chunks: AsyncGenerator[bytes, None], headers: dict[str, str]) -> None:
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
        try:
            # Start the generator before anything can fail: a generator never started would skip
            # its own cleanup on aclose(), and the request would never settle.
            first = await anext(self.chunks, None)
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            if first is not None:
                await send({"type": "http.response.body", "body": first, "more_body": True})
                async for frame in self.chunks:
                    await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
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
            await self.chunks.aclose()
