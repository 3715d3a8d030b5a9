"""Our OpenAI chat stream turned into a front door's own stream of named events.

The gateway streams OpenAI SSE frames (`data: {chunk}`, keep-alive comments, a final usage chunk
with the exact cost, `data: [DONE]`). A door whose clients expect named events (Anthropic's
Messages stream; the Responses API's `response.*` events follow the same pattern) gives a
converter that turns each chunk into events; this pump does the framing in and out, once for
every such door.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any, Protocol

import orjson

from nemorouter import jsonx
from nemorouter.engine.sse import encode
from nemorouter.service.relay import PROMPT_COMMENT, Frames

Event = tuple[str, dict[str, Any]]  # (event name, data object)


class EventConverter(Protocol):
    """Feed each OpenAI chunk in order, then `end()`; each returns the events to send. `ended`
    turns true when a chunk ended the door's stream (an error event)."""

    ended: bool

    def feed(self, chunk: dict[str, Any]) -> Sequence[Event]: ...

    def end(self) -> Sequence[Event]: ...


def _frames(events: Sequence[Event]) -> list[bytes]:
    return [encode(jsonx.dumps(data), event=name) for name, data in events]


def _chunk(data: bytes) -> dict[str, Any]:
    # Only the final usage chunk carries money; it is parsed exactly, the rest fast.
    parsed = jsonx.loads_exact(data) if b'"cost"' in data else orjson.loads(data)
    return parsed if isinstance(parsed, dict) else {}


async def converted_events(chunks: Frames, converter: EventConverter) -> AsyncGenerator[bytes, None]:
    """Our OpenAI SSE frames in, the converter's named events out. Closing this closes `chunks`,
    so a client that leaves still settles (the relay charges what was generated)."""
    pending = b""
    try:
        async for piece in chunks:
            pending += piece
            while b"\n\n" in pending:
                frame, pending = pending.split(b"\n\n", 1)
                data = b"\n".join(
                    line[5:].lstrip(b" ") for line in frame.split(b"\n") if line.startswith(b"data:")
                )
                if not data:
                    if frame.startswith(PROMPT_COMMENT):
                        # The prompt count, early: for converters that start with it.
                        prompt = getattr(converter, "prompt", None)
                        if prompt is not None:
                            prompt(orjson.loads(frame[len(PROMPT_COMMENT) :]))
                    # A keep-alive comment passes as it is: SSE clients skip it, proxies see traffic.
                    elif frame.startswith(b":"):
                        yield frame + b"\n\n"
                    continue
                if data == b"[DONE]":
                    for out in _frames(converter.end()):
                        yield out
                    return
                for out in _frames(converter.feed(_chunk(data))):
                    yield out
                if converter.ended:
                    return  # an error event ends the stream
        for out in _frames(converter.end()):
            yield out
    finally:
        await chunks.aclose()
