"""Server-sent events: parsed once, here; adapters only see decoded events."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

from nemorouter.providers.types import SseEvent

MAX_LINE = 16 * 1024 * 1024  # one event line's bytes, at most (a broken provider's stream)


async def decode(chunks: AsyncIterable[bytes]) -> AsyncIterator[SseEvent]:
    """Turn a byte stream, in pieces of any size, into events (per the HTML SSE rules: lines end
    in LF or CRLF; a blank line ends an event; a stream's end ends its last one)."""
    event: str | None = None
    data: list[bytes] = []
    rest = b""  # a line begun in one piece and ended in a later one
    pieces = aiter(chunks)
    ended = False
    while not ended:
        try:
            lines = (rest + await anext(pieces)).split(b"\n")
            rest = lines.pop()
            if len(rest) > MAX_LINE:
                raise ValueError("an event line is too long")
        except StopAsyncIteration:
            ended, lines = True, [rest, b""]
        for raw in lines:
            line = raw.rstrip(b"\r")
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


def encode(payload: bytes, event: str | None = None) -> bytes:
    """One SSE frame for a JSON payload (which never contains a raw newline)."""
    if event is None:
        return b"data: " + payload + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


DONE = b"data: [DONE]\n\n"
