"""Server-sent events: parsed once, here; adapters only see decoded events."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

from nemorouter.providers.types import SseEvent


async def decode(lines: AsyncIterable[bytes]) -> AsyncIterator[SseEvent]:
    """Turn a byte stream split on newlines into events (per the HTML SSE rules)."""
    event: str | None = None
    data: list[bytes] = []
    async for raw in lines:
        line = raw.rstrip(b"\r\n")
        if not line:
            if data:
                yield SseEvent(event, b"\n".join(data))
            event, data = None, []
            continue
        if line.startswith(b":"):
            continue
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
    if data:
        yield SseEvent(event, b"\n".join(data))


def encode(payload: bytes, event: str | None = None) -> bytes:
    """One SSE frame for a JSON payload (which never contains a raw newline)."""
    if event is None:
        return b"data: " + payload + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


DONE = b"data: [DONE]\n\n"
