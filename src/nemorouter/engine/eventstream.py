"""AWS event-stream framing (`application/vnd.amazon.eventstream`), decoded with botocore's own
decoder: what Bedrock's ConverseStream answers in, instead of SSE.

Each binary message (prelude, headers, payload, CRCs checked by botocore) becomes an `SseEvent`
with the same interface as `sse.EventParser`, so adapters see one kind of event whatever the
framing: `event` is the message's `:event-type`, or its `:exception-type` for an exception
message (Bedrock's in-stream errors, e.g. `throttlingException`), or its `:error-code` for an
`error` message; `data` is the payload (JSON for Bedrock; for an `error` message, its
`:error-message`). Imported only when an event-stream request is made: botocore is a large
import that no other kind of provider pays for.
"""

from __future__ import annotations

import struct
from collections import deque

from botocore.eventstream import EventStreamBuffer, ParserError

from nemorouter.engine.sse import MalformedFrame
from nemorouter.providers.types import SseEvent

__all__ = ["EventStreamParser", "MalformedFrame"]


class EventStreamParser:
    """The messages of an event stream fed in pieces of any size; complete ones in `ready`."""

    def __init__(self) -> None:
        self.ready: deque[SseEvent] = deque()
        self._buffer = EventStreamBuffer()
        self._pending = 0  # bytes fed and not yet part of a complete message

    def feed(self, piece: bytes) -> None:
        self._buffer.add_data(piece)
        self._pending += len(piece)
        try:
            for message in self._buffer:
                self._pending -= message.prelude.total_length
                self.ready.append(_event(message.headers, message.payload))
        except (ParserError, struct.error, ValueError, IndexError) as exc:
            # botocore names the check that failed (lengths and CRCs, never payload bytes); a
            # prelude whose lengths contradict each other can fail its unpacking instead.
            raise MalformedFrame(f"unreadable event-stream message: {type(exc).__name__}") from None

    def end(self) -> None:
        if self._pending:
            raise MalformedFrame("the event stream ended inside a message")


def _event(headers: dict[str, object], payload: bytes) -> SseEvent:
    kind = headers.get(":message-type")
    if kind == "exception":
        return SseEvent(_text(headers.get(":exception-type")), payload)
    if kind == "error":
        message = headers.get(":error-message")
        return SseEvent(_text(headers.get(":error-code")) or "error", _text(message).encode())
    return SseEvent(_text(headers.get(":event-type")) or None, payload)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
