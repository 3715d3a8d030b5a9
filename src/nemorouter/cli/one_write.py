"""A response's head and the start of its body leave in one write.

uvicorn writes a response's head (status line and headers) as soon as the app sends
`http.response.start`, and the body with the next message: two `send` system calls, two TCP
segments, and often two wake-ups of the client, for an answer of a few hundred bytes. Each
request's cycle writes through `HeadHeld` instead, which keeps the head back until the first
write of the body and sends both with one `writelines` (one `writev`). A head never waits past
the end of the event-loop step that wrote it (a response that starts and then waits for its
first byte, a stream's say, still shows its head at once), and a `100 Continue`, written before
the response starts, goes out as it comes.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol


class _Cycle(Protocol):
    """What is used of uvicorn's RequestResponseCycle: whether its response has started, and
    the transport it writes through (given back the real one once the head is out)."""

    response_started: bool
    transport: Any


class HeadHeld:
    """The transport as one request's cycle sees it (uvicorn gives each cycle its own)."""

    __slots__ = ("_cycle", "_head", "_loop", "_seen_head", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: _Cycle, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._cycle = cycle
        self._loop = loop  # the protocol's (asking asyncio for it costs a getpid() in Python 3.11)
        self._head: bytes | None = None
        self._seen_head = False

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.writelines((head, data))
            self._cycle.transport = self._transport  # the rest of the body: straight through
        elif not self._seen_head and self._cycle.response_started:
            # uvicorn marks the response started, then writes its head: this is it.
            self._seen_head = True
            self._head = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        """Send a head still held (end of the step that wrote it, or before closing)."""
        head = self._head
        if head is not None:
            self._head = None
            self._cycle.transport = self._transport
            if not self._transport.is_closing():
                self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        # Anything else uvicorn might ask of a transport (get_extra_info, ...) is the real one's.
        return getattr(self._transport, name)
