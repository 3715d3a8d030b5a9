"""A deliberately bad upstream on loopback: answers every request the same broken way, and counts."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field


@dataclass
class FaultyUpstream:
    """`mode`: `status` (an OpenAI-shaped error with `status`, and `retry_after` if set), `reset`
    (close the connection as soon as the request arrives), or `hang` (never answer)."""

    mode: str = "status"
    status: int = 500
    retry_after: int | None = None
    port: int = 0
    requests: int = 0
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _ready: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                self.requests += 1
                if self.mode == "reset":
                    writer.transport.abort()
                    return
                if self.mode == "hang":
                    await asyncio.sleep(3600)
                body = b'{"error": {"message": "simulated failure", "type": "server_error", "code": null}}'
                extra = f"retry-after: {self.retry_after}\r\n" if self.retry_after is not None else ""
                writer.write(
                    f"HTTP/1.1 {self.status} Error\r\ncontent-type: application/json\r\n{extra}"
                    f"content-length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def start(self) -> FaultyUpstream:
        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        self._ready.wait(5)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
