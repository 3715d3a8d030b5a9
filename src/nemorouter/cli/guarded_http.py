"""uvicorn's httptools protocol with limits on slow and oversized clients.

uvicorn bounds only the idle time between requests (`timeout_keep_alive`): a client may take
forever to send a request's headers or body (slowloris), and httptools buffers headers of any
size. Here each connection carries a deadline for the phase it is in — headers
(`NEMO_CLIENT_HEADER_TIMEOUT`, from the connection or the request's first byte), then body
(`NEMO_CLIENT_BODY_TIMEOUT`, once the headers are in) — and one sweeper per server cuts the
connections past theirs: 408 if no response has started, else just closed. A request line and
headers over `NEMO_MAX_HEADER_BYTES` answer 431. Per request this costs a few attribute writes;
the sweeping runs once a second whatever the traffic. Each request's response writes its head
and its body's start in one system call (`one_write`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from nemorouter import jsonx
from nemorouter.cli.one_write import HeadHeld

SWEEP_EVERY = 0.5  # seconds: a deadline is enforced within this much of passing

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def _refusal(status: int, kind: str, message: str) -> bytes:
    body = jsonx.dumps({"error": {"code": status, "type": kind, "message": message}})
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class GuardedHttpProtocol(HttpToolsProtocol):
    header_timeout = 10.0
    body_timeout = 60.0
    max_header_bytes = 64 * 1024

    _deadline: float | None = None
    _reading_headers = True
    _header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline = self.loop.time() + self.header_timeout

    def data_received(self, data: bytes) -> None:
        if self._reading_headers:
            self._header_bytes += len(data)
            if self._header_bytes > self.max_header_bytes and not self._headers_end_within(data):
                self._refuse(431, "headers_too_large", f"request headers over {self.max_header_bytes} bytes")
                return
        super().data_received(data)

    def _headers_end_within(self, data: bytes) -> bool:
        """Whether the headers end in `data` within the limit (what follows is body)."""
        end = data.find(b"\r\n\r\n")
        return end != -1 and self._header_bytes - len(data) + end <= self.max_header_bytes

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._deadline = self.loop.time() + self.header_timeout

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._header_bytes = 0
        self._deadline = self.loop.time() + self.body_timeout
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle is not before:  # a new request's, whose app has not run yet
            cycle.transport = HeadHeld(self.transport, cycle, self.loop)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        self._reading_headers = True
        self._deadline = None  # the whole request is in; the app's time is not the client's
        super().on_message_complete()

    def check_deadline(self, now: float) -> None:
        """Called by the sweeper: cut this connection if its client is past its deadline."""
        if self._deadline is None or now < self._deadline or self.transport.is_closing():
            return
        self._deadline = None
        if self.cycle is None or not self.cycle.response_started:
            phase = "headers" if self._reading_headers else "body"
            self._refuse(408, "request_timeout", f"the request {phase} took too long to arrive")
        else:
            self.transport.close()

    def _refuse(self, status: int, kind: str, message: str) -> None:
        self._deadline = None
        if self.cycle is not None:
            self.cycle.disconnected = True  # the app's reads end; what it sends is dropped
            self.cycle.message_event.set()
        with contextlib.suppress(RuntimeError, OSError):
            self.transport.write(_refusal(status, kind, message))
        self.transport.close()


def guarded_protocol(header_timeout: float, body_timeout: float, max_header_bytes: int) -> type:
    """The protocol class with these limits (uvicorn makes one instance per connection)."""
    attrs: dict[str, Any] = {
        "header_timeout": header_timeout,
        "body_timeout": body_timeout,
        "max_header_bytes": max_header_bytes,
    }
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), attrs)


async def sweep(connections: set[Any], stopping: asyncio.Event) -> None:
    """Cut every connection past its deadline, twice a second, until `stopping` is set."""
    loop = asyncio.get_running_loop()
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), SWEEP_EVERY)
            return
        now = loop.time()
        for connection in list(connections):
            if isinstance(connection, GuardedHttpProtocol):
                connection.check_deadline(now)
