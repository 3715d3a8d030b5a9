"""AWS event-stream framing through the real client: a loopback upstream writes Bedrock-shaped
binary messages; `UpstreamClient.open_stream` with `framing=EVENT_STREAM` decodes them with
botocore's decoder into the same `SseEvent`s adapters see for SSE. A corrupt message (CRC,
length limits, a stream ending inside one) is a PROTOCOL failure, never a crash."""

from __future__ import annotations

import asyncio
import binascii
import random
import struct

import pytest

from engine.loopback import Reply, served
from nemorouter.engine.eventstream import EventStreamParser
from nemorouter.engine.http import StreamHandle, TransportFailure, UpstreamClient
from nemorouter.engine.sse import MalformedFrame
from nemorouter.providers.types import EVENT_STREAM, FailureKind, SseEvent, UpstreamRequest
from nemorouter.settings import Timeouts
from nemorouter.sim.bedrock_frames import event, exception, frame

START = event("messageStart", b'{"role":"assistant"}')
DELTA = event("contentBlockDelta", b'{"contentBlockIndex":0,"delta":{"text":"hi"}}')
STOP = event("messageStop", b'{"stopReason":"end_turn"}')
# A prelude with a valid CRC announcing 30 MB: past botocore's 24 MB payload limit.
OVERSIZED = struct.pack("!II", 30 * 1024 * 1024, 0) + struct.pack(
    "!I", binascii.crc32(struct.pack("!II", 30 * 1024 * 1024, 0))
)
THROTTLED = exception("throttlingException", b'{"message":"Too many requests"}')


def _chunked(pieces: list[bytes], pause: float = 0.0) -> Reply:
    async def reply(writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.amazon.eventstream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for piece in pieces:
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    return reply


async def _events(pieces: list[bytes], framing: str = EVENT_STREAM) -> list[SseEvent]:
    up = await served(_chunked(pieces))
    client = UpstreamClient(Timeouts())
    await client.start()
    try:
        handle = await client.open_stream(UpstreamRequest(up.url, {}, b"{}", True, framing))
        assert isinstance(handle, StreamHandle)
        got = []
        while (found := await handle.next_event()) is not None:
            got.append(found)
        handle.close(finished=True)
        return got
    finally:
        await client.close()
        await up.stop()


async def test_messages_split_anywhere_arrive_as_events_with_their_types() -> None:
    whole = START + DELTA + THROTTLED + STOP
    # Cut into pieces of 1 to 7 bytes: prelude, headers and payload all cross piece boundaries.
    rng = random.Random(7)
    pieces, at = [], 0
    while at < len(whole):
        step = rng.randint(1, 7)
        pieces.append(whole[at : at + step])
        at += step
    got = await _events(pieces)
    assert [(e.event, e.data) for e in got] == [
        ("messageStart", b'{"role":"assistant"}'),
        ("contentBlockDelta", b'{"contentBlockIndex":0,"delta":{"text":"hi"}}'),
        ("throttlingException", b'{"message":"Too many requests"}'),  # an exception: its type
        ("messageStop", b'{"stopReason":"end_turn"}'),
    ]


async def test_several_messages_in_one_piece_and_the_sse_path_unchanged() -> None:
    got = await _events([START + DELTA + STOP])
    assert [e.event for e in got] == ["messageStart", "contentBlockDelta", "messageStop"]
    sse = await _events([b"event: a\ndata: 1\n\n", b"data: 2\n\n"], framing="sse")
    assert [(e.event, e.data) for e in sse] == [("a", b"1"), (None, b"2")]


def _flip(message: bytes, at: int) -> bytes:
    return message[:at] + bytes([message[at] ^ 0x01]) + message[at + 1 :]


@pytest.mark.parametrize(
    "corrupt",
    [
        _flip(DELTA, 2),  # the prelude's length: its CRC fails
        _flip(DELTA, len(DELTA) - 20),  # a payload byte: the message CRC fails
        _flip(DELTA, len(DELTA) - 1),  # the message CRC itself
        OVERSIZED,
        DELTA[:-5],  # the stream ends inside a message
    ],
    ids=["prelude-crc", "payload-crc", "message-crc", "oversized", "truncated"],
)
async def test_a_corrupt_message_is_a_protocol_failure_after_the_good_ones(corrupt: bytes) -> None:
    up = await served(_chunked([START, corrupt], pause=0.02))
    client = UpstreamClient(Timeouts())
    await client.start()
    handle = await client.open_stream(UpstreamRequest(up.url, {}, b"{}", True, EVENT_STREAM))
    assert isinstance(handle, StreamHandle)
    first = await handle.next_event()
    assert first is not None and first.event == "messageStart"
    with pytest.raises(TransportFailure) as caught:
        while await handle.next_event() is not None:
            pass
    assert caught.value.failure.kind is FailureKind.PROTOCOL and caught.value.failure.status == 502
    handle.close()
    await client.close()
    await up.stop()


def test_garbage_in_any_amount_only_ever_raises_malformed_frame() -> None:
    rng = random.Random(22)
    good = START + DELTA + STOP
    for _ in range(400):
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = bytearray(rng.randbytes(rng.randint(1, 80)))
        parser = EventStreamParser()
        try:
            parser.feed(bytes(data))
            parser.end()
        except MalformedFrame:
            continue
        assert all(isinstance(e, SseEvent) for e in parser.ready)


def test_an_error_message_carries_its_code_and_text() -> None:
    parser = EventStreamParser()
    parser.feed(
        frame({":message-type": "error", ":error-code": "InternalFailure", ":error-message": "boom"}, b"")
    )
    parser.end()
    assert [(e.event, e.data) for e in parser.ready] == [("InternalFailure", b"boom")]
