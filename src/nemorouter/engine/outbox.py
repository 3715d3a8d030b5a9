"""Requests to providers written in one event-loop step leave together, at the step's end.

A request's handler runs from its client's bytes to its provider's request without waiting, so
the requests of one step (many, under load) are written tens of microseconds apart. Each lone
write to a provider that has gone to sleep wakes it (on loopback, the writer pays for that
wake-up inside its `write`), and the provider then answers one request per wake-up. Written
back to back at the end of the step, they reach it together: one wake-up serves all of them,
and their answers come back together. Measured with `make bench`'s stub on this 2-core machine,
the stub woke 1.5 times per request before (0.16 for the floor proxy, whose aiohttp client
happens to write its requests back to back), and the gateway spent ~12 % less CPU per request
after (docs/architecture.md, "Speed"). At one request at a time it costs one turn of the loop.
"""

from __future__ import annotations

import asyncio

# A body this large goes in a write of its own rather than copied onto its head.
SEPARATE_BODY = 65536

# The writes waiting for the end of the current step of each running loop (one entry per loop
# with writes waiting; removed as they go, so a loop that stops leaves nothing behind).
_waiting: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Transport, bytes, bytes]]] = {}


def send_at_step_end(
    loop: asyncio.AbstractEventLoop, transport: asyncio.Transport, head: bytes, body: bytes
) -> None:
    """Write `head` then `body` on `transport` once this step of `loop` ends, after the writes
    queued before them; dropped if the transport is closing by then (its exchange has failed
    or been given up, and is answered as such)."""
    pending = _waiting.get(loop)
    if pending is None:
        _waiting[loop] = pending = []
        loop.call_soon(_flush, loop)
    pending.append((transport, head, body))


def _flush(loop: asyncio.AbstractEventLoop) -> None:
    for transport, head, body in _waiting.pop(loop, ()):
        if transport.is_closing():
            continue
        if len(body) < SEPARATE_BODY:
            transport.write(head + body)
        else:
            transport.write(head)
            transport.write(body)
