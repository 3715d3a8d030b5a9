"""The HTTP/1.1 client to providers, against a real server on loopback whose every byte the test
writes: framing (Content-Length, chunked, the connection's end), coding, keep-alive reuse and
its refusals, deadlines, broken answers, header injection, TLS. On both event loops (conftest)."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from engine.loopback import UA, answer, certificate, deadline, post, served
from nemorouter.engine.http import UpstreamClient
from nemorouter.engine.http1 import (
    DRAIN_SECONDS,
    STREAM_BUFFER,
    Http1Client,
    HttpError,
    InvalidHeader,
)
from nemorouter.errors import InvalidRequest
from nemorouter.providers.types import UpstreamRequest
from nemorouter.settings import Timeouts


@pytest.fixture
async def client() -> AsyncIterator[Http1Client]:
    made = Http1Client(UA, keepalive=30.0)
    yield made
    await made.close()


async def test_the_request_on_the_wire_and_a_content_length_answer(client: Http1Client) -> None:
    up = await served(answer(b'{"ok":true}', extra="Retry-After: 7\r\nX-Thing: A\r\n"))
    got = await post(client, up, b'{"q":"\xc3\xa9"}')
    assert (got.status, got.body, got.headers["retry-after"], got.headers["x-thing"]) == (
        200,
        b'{"ok":true}',
        "7",
        "A",
    )
    head, _, body = up.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/x?a=1 HTTP/1.1"
    assert set(lines[1:]) == {
        f"Host: 127.0.0.1:{up.port}".encode(),
        b"User-Agent: " + UA.encode(),
        b"Authorization: Bearer sk-up",
        b"Content-Type: application/json",
        b"Content-Length: 10",
    }
    assert body == b'{"q":"\xc3\xa9"}'
    await up.stop()


async def test_keep_alive_reuses_one_connection_and_connection_close_is_honoured(client: Http1Client) -> None:
    up = await served(answer(b"{}"))
    for _ in range(5):
        assert (await post(client, up)).status == 200
    assert up.connections == 1 and len(up.requests) == 5
    closing = await served(answer(b"{}", extra="Connection: close\r\n"))
    for _ in range(3):
        assert (await post(client, closing)).body == b"{}"
    assert closing.connections == 3  # each answer said close: never reused
    await up.stop()
    await closing.stop()


async def test_an_idle_connection_past_keepalive_is_not_reused() -> None:
    client = Http1Client(UA, keepalive=0.05)
    up = await served(answer(b"{}"))
    await post(client, up)
    await asyncio.sleep(0.1)
    await post(client, up)
    assert up.connections == 2
    await client.close()
    await up.stop()


async def test_chunked_and_until_close_and_gzip_and_deflate_bodies(client: Http1Client) -> None:
    async def chunked(writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b"6\r\n world\r\n0\r\n\r\n")

    async def until_close(writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nno length, ")
        await writer.drain()
        writer.write(b"ends with the connection")
        writer.close()

    packed = gzip.compress(b'{"packed":true}' * 100)
    up = await served(chunked)
    assert (await post(client, up)).body == b"hello world"
    assert (await post(client, up)).body == b"hello world" and up.connections == 1
    closing = await served(until_close)
    assert (await post(client, closing)).body == b"no length, ends with the connection"
    zipped = await served(answer(packed, extra="Content-Encoding: gzip\r\n"))
    assert (await post(client, zipped)).body == b'{"packed":true}' * 100
    deflated = await served(answer(zlib.compress(b"deflated"), extra="Content-Encoding: deflate\r\n"))
    assert (await post(client, deflated)).body == b"deflated"
    for server in (up, closing, zipped, deflated):
        await server.stop()


async def test_early_hints_are_skipped_for_the_answer_after_them(client: Http1Client) -> None:
    async def hints(writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n")
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")

    up = await served(hints)
    got = await post(client, up)
    assert (got.status, got.body, "link" in got.headers) == (201, b"ok", False)
    await up.stop()


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",  # then the connection ends
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        b"NOT HTTP AT ALL\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\nnot gzip!",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\nxx",
        b"",  # closed without a word
    ],
)
async def test_a_broken_answer_is_a_broken_error_and_its_connection_is_dropped(
    client: Http1Client, wire: bytes
) -> None:
    async def broken(writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(wire)
        await writer.drain()
        writer.close()

    up = await served(broken)
    with pytest.raises(HttpError) as caught:
        await post(client, up)
    assert caught.value.kind == "broken"
    up.reply = answer(b"{}")
    assert (await post(client, up)).body == b"{}" and up.connections == 2
    await up.stop()


async def test_a_deadline_passed_is_a_timeout_and_the_connection_is_not_reused(client: Http1Client) -> None:
    slow = True

    async def sometimes_slow(writer: asyncio.StreamWriter, request: bytes) -> None:
        if slow:
            await asyncio.sleep(0.5)
        await answer(b"late" if slow else b"{}")(writer, request)

    up = await served(sometimes_slow)
    started = asyncio.get_running_loop().time()
    with pytest.raises(HttpError) as caught:
        await post(client, up, within=0.2)
    elapsed = asyncio.get_running_loop().time() - started
    assert caught.value.kind == "timeout" and 0.19 <= elapsed < 0.45
    slow = False
    assert (await post(client, up)).body == b"{}"  # the late answer never reaches this request
    assert up.connections == 2
    await up.stop()


async def test_no_server_is_a_connect_error(client: Http1Client) -> None:
    up = await served(answer(b"{}"))
    await up.stop()
    with pytest.raises(HttpError) as caught:
        await post(client, up)
    assert caught.value.kind == "connect"


async def test_a_cancelled_caller_leaves_no_half_read_connection_in_the_pool(client: Http1Client) -> None:
    async def slow(writer: asyncio.StreamWriter, request: bytes) -> None:
        await asyncio.sleep(0.3)
        await answer(b"slow")(writer, request)

    up = await served(slow)
    task = asyncio.create_task(post(client, up))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    up.reply = answer(b"fresh")
    assert (await post(client, up)).body == b"fresh" and up.connections == 2
    await up.stop()


async def test_bytes_on_an_idle_connection_get_it_dropped(client: Http1Client) -> None:
    async def chatty(writer: asyncio.StreamWriter, request: bytes) -> None:
        await answer(b"{}")(writer, request)
        await asyncio.sleep(0.02)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale")

    up = await served(chatty)
    assert (await post(client, up)).body == b"{}"
    await asyncio.sleep(0.1)
    up.reply = answer(b"new")
    assert (await post(client, up)).body == b"new" and up.connections == 2
    await up.stop()


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ({"Authorization": "Bearer sk\r\nX-Evil: 1"}, "Authorization"),  # a header of its own
        ({"anthropic-beta": "tools\nX-Evil: 1"}, "anthropic-beta"),
        ({"x-api-key": "sk\rX"}, "x-api-key"),
        ({"x-api-key": "sk\x00"}, "x-api-key"),
        ({"x-api-key": "sk\x7f"}, "x-api-key"),
        ({"x-api-key": "snow\u2603"}, "x-api-key"),  # outside Latin-1: not one byte each
        ({"X-A\nB": "v"}, "'X-A\\nB'"),
        ({"X-A: B": "v"}, "'X-A: B'"),  # a colon would move the value into the name
        ({"": "v"}, "''"),
    ],
)
async def test_a_header_that_cannot_be_sent_is_refused_before_anything_is_sent(
    client: Http1Client, headers: dict[str, str], named: str
) -> None:
    up = await served(answer(b"{}"))
    with pytest.raises(InvalidHeader) as caught:
        await client.request(up.url, {"Content-Type": "application/json", **headers}, b"{}", 2.0, deadline())
    assert named in str(caught.value) and "sk" not in str(caught.value).replace(named, "")
    assert up.requests == [] and up.connections == 0
    fine = {"X-Tab": "a\tb", "X-Latin": "caf\xe9", "X-Empty": ""}
    assert (await client.request(up.url, fine, b"{}", 2.0, deadline())).body == b"{}"
    assert b"X-Latin: caf\xe9\r\n" in up.requests[0]
    await up.stop()


async def test_the_upstream_client_answers_an_unsendable_header_as_the_requests_400() -> None:
    up = await served(answer(b"{}"))
    upstream = UpstreamClient(Timeouts())
    await upstream.start()
    bad = UpstreamRequest(up.url, {"anthropic-beta": "x\r\nX-Evil: 1"}, b"{}")
    for send in (upstream.send, upstream.open_stream):
        with pytest.raises(InvalidRequest) as caught:
            await send(bad)
        assert (caught.value.status, caught.value.type) == (400, "invalid_request")
        assert "anthropic-beta" in caught.value.message and "Evil" not in caught.value.message
    assert up.requests == []
    good = await upstream.send(UpstreamRequest(up.url, {"anthropic-beta": "x"}, b"{}"))
    assert (good.status, good.body) == (200, b"{}")
    await upstream.close()
    await up.stop()


async def test_a_stream_arrives_piece_by_piece_and_its_connection_is_reused(client: Http1Client) -> None:
    async def events(writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for piece in (b"data: 1\n\n", b"data: 2\n\n"):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(b"0\r\n\r\n")

    up = await served(events)
    got = await post(client, up, idle=1.0)
    assert got.status == 200 and got.headers["content-type"] == "text/event-stream"
    pieces = [piece async for piece in got.chunks()]
    assert pieces == [b"data: 1\n\n", b"data: 2\n\n"]  # as they came, not gathered
    got.close()
    again = await post(client, up, idle=1.0)
    assert b"".join([p async for p in again.chunks()]) == b"data: 1\n\ndata: 2\n\n"
    again.close()
    assert up.connections == 1
    await up.stop()


async def test_a_stalled_stream_times_out_and_one_closed_early_is_not_reused(client: Http1Client) -> None:
    async def stalls(writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n")
        await writer.drain()
        await asyncio.sleep(1.0)

    up = await served(stalls)
    got = await post(client, up, idle=0.2)
    pieces = got.chunks()
    assert await anext(pieces) == b"data: 1\n\n"
    with pytest.raises(HttpError) as caught:
        await anext(pieces)
    assert caught.value.kind == "timeout"
    early = await post(client, up, idle=0.5)
    early.close()  # mid-answer: aborted
    up.reply = answer(b"{}")
    assert (await post(client, up)).body == b"{}" and up.connections == 3
    await up.stop()


async def test_the_stall_timer_counts_each_wait_from_its_start(client: Http1Client) -> None:
    """One timer per stream, moved on when it fires during a wait that began later: pieces 0.15 s
    apart never stall a stream whose `idle` is 0.4 s, however long it runs; a pause does."""

    async def steady(writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(8):
            await asyncio.sleep(0.15)
            writer.write(b"9\r\ndata: 1\n\n\r\n")
            await writer.drain()
        await asyncio.sleep(2.0)

    up = await served(steady)
    got = await post(client, up, idle=0.4)
    pieces = got.chunks()
    for _ in range(8):
        assert await anext(pieces) == b"data: 1\n\n"
    started = asyncio.get_running_loop().time()
    with pytest.raises(HttpError) as caught:
        await anext(pieces)
    assert caught.value.kind == "timeout"
    assert 0.35 < asyncio.get_running_loop().time() - started < 1.5
    await up.stop()


@pytest.mark.parametrize("end_after", [0.05, None])
async def test_a_stream_closed_after_its_last_event_keeps_its_connection_if_the_end_follows(
    client: Http1Client, end_after: float | None
) -> None:
    """The reader stops at the last event; the chunked terminator comes later, or never."""

    async def events(writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n")
        await writer.drain()
        if end_after is None:
            await asyncio.sleep(DRAIN_SECONDS + 0.5)
            return
        await asyncio.sleep(end_after)
        writer.write(b"0\r\n\r\n")

    up = await served(events)
    got = await post(client, up, idle=5.0)
    assert await anext(got.chunks()) == b"data: 1\n\n"
    got.close(finished=True)
    await asyncio.sleep(DRAIN_SECONDS + 0.2 if end_after is None else end_after + 0.1)
    up.reply = answer(b"{}")
    assert (await post(client, up)).body == b"{}"
    assert up.connections == (1 if end_after is not None else 2)
    assert client.open_connections() == 1  # one that never ended was aborted when the wait ran out
    await up.stop()


async def test_an_unread_stream_pauses_the_socket_and_loses_nothing(client: Http1Client) -> None:
    piece = b"x" * 65536
    count = 4 * STREAM_BUFFER // len(piece)

    async def firehose(writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(piece) * count))
        for _ in range(count):
            writer.write(piece)
            await writer.drain()

    up = await served(firehose)
    got = await post(client, up, idle=2.0)
    await asyncio.sleep(0.2)  # the provider writes as fast as it can; nobody reads
    conn = got._conn
    assert conn is not None and conn._paused and conn._buffered <= STREAM_BUFFER + 2 * len(piece)
    total = sum([len(p) async for p in got.chunks()])
    assert total == len(piece) * count
    got.close()
    await up.stop()


@pytest.fixture
def tls_files(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    yield certificate(tmp_path)


async def test_tls_is_verified_against_the_trusted_roots(tls_files: tuple[Path, Path]) -> None:
    cert_file, key_file = tls_files
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)
    up = await served(answer(b'{"secure":true}'), tls=server_tls)
    untrusting = Http1Client(UA)  # the system's roots: a self-signed certificate is refused
    with pytest.raises(HttpError) as caught:
        await post(untrusting, up)
    assert caught.value.kind == "connect"
    trusting_tls = ssl.create_default_context(cafile=str(cert_file))
    trusting = Http1Client(UA, ssl_context=trusting_tls)
    assert (await post(trusting, up)).body == b'{"secure":true}'
    assert (await post(trusting, up)).body == b'{"secure":true}'
    assert up.connections == 1  # one kept-alive TLS connection (the refused one never got a handler)
    assert f"Host: localhost:{up.port}".encode() in up.requests[0]
    await untrusting.close()
    await trusting.close()
    await up.stop()
