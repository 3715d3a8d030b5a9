"""The SSE parser (engine/sse.py): every event of a stream, however its bytes are cut."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from nemorouter.engine import sse
from nemorouter.providers.types import SseEvent

STREAM = (
    b": a comment first\r\n"
    b'data: {"a": 1}\r\n\r\n'
    b"event: message_start\n"
    b'data: {"b": 2}\n\n'
    b"data: line one\n"
    b"data: line two\n"
    b"id: 7\n"
    b"\n"
    b"data:no-space\n\n"
    b"event: ignored-without-data\n\n"
    b"data: [DONE]"  # the stream's end ends its last event
)
EXPECTED = [
    SseEvent(None, b'{"a": 1}'),
    SseEvent("message_start", b'{"b": 2}'),
    SseEvent(None, b"line one\nline two"),
    SseEvent(None, b"no-space"),
    SseEvent(None, b"[DONE]"),
]


async def _pieces(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(0)
        yield part


async def _all(parts: list[bytes]) -> list[SseEvent]:
    reader = sse.decode(_pieces(parts))
    found = [event async for event in reader]
    assert await reader.next_event() is None  # and stays ended
    return found


def test_every_event_whole_or_cut_at_any_byte() -> None:
    assert asyncio.run(_all([STREAM])) == EXPECTED
    for cut in range(1, len(STREAM)):
        assert asyncio.run(_all([STREAM[:cut], STREAM[cut:]])) == EXPECTED, cut
    assert asyncio.run(_all([STREAM[i : i + 1] for i in range(len(STREAM))])) == EXPECTED


def test_an_empty_stream_has_no_events() -> None:
    assert asyncio.run(_all([])) == []
    assert asyncio.run(_all([b"", b": only a comment\n\n"])) == []


def test_a_line_longer_than_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sse, "MAX_LINE", 64)  # the sources run here (the compiled build is serve's)
    with pytest.raises(ValueError, match="too long"):
        asyncio.run(_all([b"data: " + b"x" * 100]))
    assert asyncio.run(_all([b"data: " + b"x" * 50 + b"\n\n"])) == [SseEvent(None, b"x" * 50)]


@pytest.mark.parametrize(
    "piece",
    [
        b'data: {"a": 1}\n\n',
        b"data: x\r\n\n",
        b"data: x\r\n\r\n",
        b"data: \n\n",
        b"data:  two spaces\n\n",
        b"data: a\ndata: b\n\n",
        b"data: a\n\ndata: b\n\n",
        b"data: a\n\n\n",
        b"data: a\rb\n\n",
    ],
)
def test_a_piece_that_is_one_whole_event_reads_as_the_lines_would(piece: bytes) -> None:
    """EventParser takes a piece that is one `data: ...` event whole, without splitting it into
    lines: the events are the same as when the piece comes a byte at a time."""
    whole, split = sse.EventParser(), sse.EventParser()
    whole.feed(piece)
    whole.end()
    for i in range(len(piece)):
        split.feed(piece[i : i + 1])
    split.end()
    assert list(whole.ready) == list(split.ready)
