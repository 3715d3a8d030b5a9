"""A response's head and what follows it in the same event-loop step leave in one write, at
the step's end.

uvicorn writes a response's head (status line and headers) as soon as the app sends
`http.response.start`, and the body with the next message: two `send` system calls, two TCP
segments, and often two wake-ups of the client, for an answer of a few hundred bytes. Each
request's cycle writes through `HeadHeld` instead, which keeps the head, and everything the
response writes after it in the same step, until that step ends, and then sends them with one
`writelines` (one `writev`). Held to the step's end, the answers of one step (many, under load)
also leave back to back rather than ~100 µs apart, so a client that has gone to sleep is woken
once for all of them, not once each: on loopback the writer pays for each wake-up inside its
write (the same reason as engine/outbox.py; the A/B is in docs/architecture.md, "Speed"). A
stream's head, written in a step of its own, still shows at once; a `100 Continue`, written
before the response starts, goes out as it comes.
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

    __slots__ = ("_cycle", "_held", "_loop", "_seen_head", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: _Cycle, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._cycle = cycle
        self._loop = loop  # the protocol's (asking asyncio for it costs a getpid() in Python 3.11)
        self._held: list[bytes] | None = None  # the head and what followed it in its step
        self._seen_head = False

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            held.append(data)
        elif not self._seen_head and self._cycle.response_started:
            # uvicorn marks the response started, then writes its head: this is it.
            self._seen_head = True
            self._held = [data]
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        """Send what is held (at the end of the step that wrote the head, or before closing);
        from then on the cycle writes straight to the transport."""
        held = self._held
        if held is not None:
            self._held = None
            self._cycle.transport = self._transport
            if not self._transport.is_closing():
                self._transport.writelines(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        # Anything else uvicorn might ask of a transport (get_extra_info, ...) is the real one's.
        return getattr(self._transport, name)
