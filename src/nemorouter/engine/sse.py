"""Server-sent events: parsed once, here; adapters only see decoded events."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator

from nemorouter.providers.types import SseEvent

MAX_LINE = 16 * 1024 * 1024  # one event line's bytes, at most (a broken provider's stream)


class MalformedFrame(ValueError):
    """A stream whose framing cannot be read on (engine/eventstream.py: a message failing its CRC
    or its length limits, or a stream ending inside one): the provider's fault, not the wire's."""


class EventParser:
    """The events of a byte stream fed in pieces of any size (per the HTML SSE rules: lines end in
    LF or CRLF; a blank line ends an event; `end()`, the stream's end, ends its last one). Each
    complete event is appended to `ready`. A line longer than MAX_LINE raises ValueError.

    Pushed rather than pulled, so that a reader can take the events already received without
    awaiting anything (engine/http.py's StreamHandle.poll): the relay runs once per event."""

    def __init__(self) -> None:
        self.ready: deque[SseEvent] = deque()
        self._rest = b""  # a line begun in one piece and ended in a later one
        self._event: str | None = None
        self._data: list[bytes] = []

    def feed(self, piece: bytes) -> None:
        if not self._rest and not self._data and self._event is None and piece.startswith(b"data: "):
            # The usual piece, one whole `data: ...` event: taken without splitting it into lines.
            end = len(piece) - 2
            if end > 6 and piece.find(b"\n", 6) == end and piece[end + 1] == 10 and piece[end - 1] != 13:
                self.ready.append(SseEvent(None, piece[6:end]))
                return
        lines = (self._rest + piece).split(b"\n")
        rest = lines.pop()
        if len(rest) > MAX_LINE:
            raise ValueError("an event line is too long")
        self._rest = rest
        self._lines(lines)

    def end(self) -> None:
        self._lines([self._rest, b""])
        self._rest = b""

    def _lines(self, lines: list[bytes]) -> None:
        for raw in lines:
            line = raw.rstrip(b"\r")
            if not line:
                if self._data:
                    self.ready.append(SseEvent(self._event, b"\n".join(self._data)))
                    self._data = []
                self._event = None
                continue
            if line[0] == 58:  # ":" starts a comment
                continue
            name, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                self._data.append(value)
            elif name == b"event":
                self._event = value.decode("utf-8", "replace")


class EventReader:
    """The events of an async iterator of byte pieces (EventParser's rules). A class, not an async
    generator, so that it compiles (mypyc has no async generators). `next_event()` returns None
    at the end; it is also an async iterator."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._parser = EventParser()
        self._ended = False

    def __aiter__(self) -> EventReader:
        return self

    async def __anext__(self) -> SseEvent:
        event = await self.next_event()
        if event is None:
            raise StopAsyncIteration
        return event

    async def next_event(self) -> SseEvent | None:
        ready = self._parser.ready
        while not ready:
            if self._ended:
                return None
            try:
                piece = await self._chunks.__anext__()
            except StopAsyncIteration:
                self._ended = True
                self._parser.end()
                continue
            self._parser.feed(piece)
        return ready.popleft()


def decode(chunks: AsyncIterator[bytes]) -> EventReader:
    """The events of `chunks` (see EventReader)."""
    return EventReader(chunks)


def encode(payload: bytes, event: str | None = None) -> bytes:
    """One SSE frame for a JSON payload (which never contains a raw newline)."""
    if event is None:
        return b"data: " + payload + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


DONE = b"data: [DONE]\n\n"
