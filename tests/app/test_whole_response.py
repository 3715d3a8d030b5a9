"""A whole response written to uvicorn in one step (web/whole_response.py) is the answer uvicorn's own
`send` would have written, and leaves its cycle as `send` does; wherever uvicorn's path could act
otherwise, it declines and writes nothing. Driven through uvicorn's RequestResponseCycle and, over
real sockets, through a uvicorn server with the gateway's protocol (keep-alive, pipelining,
`Connection: close`, HTTP/1.0, HEAD)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from nemorouter.cli.guarded_http import guarded_protocol
from nemorouter.web.whole_response import write_whole

from .test_one_write import Recorder, cycle_over

BODY = b'{"ok":true}'
JSON = [(b"content-type", b"application/json"), (b"content-length", b"11")]


def make_cycle(
    *, method: str = "POST", keep_alive: bool = True, default_headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[RequestResponseCycle, Recorder, list[str]]:
    """A cycle writing straight to a recorder (the bytes, not when they leave: that is one_write's)."""
    recorder = Recorder()
    responded: list[str] = []
    cycle = cycle_over(
        recorder,
        held=False,
        method=method,
        keep_alive=keep_alive,
        default_headers=default_headers,
        on_response=lambda: responded.append("done"),
    )
    return cycle, recorder, responded


ANSWERS = {
    "json": (200, JSON, BODY),
    "refusal with headers": (
        429,
        [
            (b"content-type", b"application/json"),
            (b"content-length", b"2"),
            (b"retry-after", b"7"),
            (b"x-nemo-request-id", b"gen-18ef0cf5a2c778fe2083630000"),
            (b"x-content-type-options", b"nosniff"),
        ],
        b"{}",
    ),
    "mixed-case names": (201, [(b"Content-Type", b"text/plain"), (b"Content-Length", b"0")], b""),
    "a value with a tab": (200, [(b"content-length", b"2"), (b"x-note", b"a\tb")], b"ok"),
}


@pytest.mark.parametrize("keep_alive", [True, False], ids=["keep-alive", "closing"])
@pytest.mark.parametrize("name", list(ANSWERS))
async def test_the_bytes_and_the_cycle_are_uvicorns_own(name: str, keep_alive: bool) -> None:
    status, headers, body = ANSWERS[name]
    defaults = [(b"server", b"uvicorn"), (b"date", b"Mon, 07 Dec 2026 18:43:45 GMT")]
    plain, plain_out, plain_done = make_cycle(keep_alive=keep_alive, default_headers=defaults)
    await plain.send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await plain.send({"type": "http.response.body", "body": body})

    whole, whole_out, whole_done = make_cycle(keep_alive=keep_alive, default_headers=defaults)
    assert write_whole(whole.send, status, list(headers), body)

    assert b"".join(whole_out.writes) == b"".join(plain_out.writes)
    assert len(whole_out.writes) == 1  # one write where uvicorn made two
    for cycle, recorder, done in ((whole, whole_out, whole_done), (plain, plain_out, plain_done)):
        assert cycle.response_started and cycle.response_complete
        assert cycle.message_event.is_set()
        assert done == ["done"]
        assert recorder.closed is not keep_alive
    # What the app may do next behaves as after uvicorn's own send: reading says the client is done,
    # and a second response is refused.
    assert await whole.receive() == {"type": "http.disconnect"}
    with pytest.raises(RuntimeError, match="after response already completed"):
        await whole.send({"type": "http.response.body", "body": b""})


def _wrapped(cycle: RequestResponseCycle) -> Any:
    async def send(message: Any) -> None:
        await cycle.send(message)

    return send


DECLINED: dict[str, tuple[dict[str, Any], Any]] = {
    "a HEAD request": ({"method": "HEAD"}, None),
    "a send that is not a cycle's own": ({}, "wrap"),
    "a response already started": ({}, "started"),
    "a client gone": ({}, "disconnected"),
    "a transport paused for writing": ({}, "paused"),
    "the access log on": ({}, "access_log"),
}


@pytest.mark.parametrize("name", list(DECLINED))
async def test_it_declines_where_uvicorn_would_act_otherwise(name: str) -> None:
    options, change = DECLINED[name]
    cycle, recorder, done = make_cycle(**options)
    send: Any = cycle.send
    if change == "wrap":
        send = _wrapped(cycle)
    elif change == "started":
        cycle.response_started = True
    elif change == "disconnected":
        cycle.disconnected = True
    elif change == "paused":
        cycle.flow.write_paused = True
    elif change == "access_log":
        cycle.access_log = True
    started = cycle.response_started
    assert not write_whole(send, 200, list(JSON), BODY)
    assert recorder.writes == [] and done == []
    assert cycle.response_started is started and not cycle.response_complete


HEADERS_DECLINED = {
    "CR LF in a value (header injection)": [*JSON, (b"x-note", b"a\r\nset-cookie: x=1")],
    "a control byte in a value": [*JSON, (b"x-note", b"a\x00b")],
    "a space in a name": [*JSON, (b"x note", b"a")],
    "a colon in a name": [*JSON, (b"x:note", b"a")],
    "connection": [*JSON, (b"Connection", b"close")],
    "transfer-encoding": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
    "no content-length": [(b"content-type", b"application/json")],
    "a content-length not the body's": [(b"content-type", b"application/json"), (b"content-length", b"99")],
    "two content-lengths": [*JSON, (b"content-length", b"11")],
}


@pytest.mark.parametrize("name", list(HEADERS_DECLINED))
async def test_headers_uvicorn_refuses_or_frames_otherwise_are_declined(name: str) -> None:
    cycle, recorder, _ = make_cycle()
    assert not write_whole(cycle.send, 200, HEADERS_DECLINED[name], BODY)
    assert recorder.writes == [] and not cycle.response_started


async def test_an_unknown_status_is_declined() -> None:
    cycle, recorder, _ = make_cycle()
    assert not write_whole(cycle.send, 600, list(JSON), BODY)
    assert recorder.writes == []


# -- over real sockets, through uvicorn with the gateway's protocol ----------------------------------


async def _app(scope: Any, receive: Any, send: Any) -> None:
    """`/whole` answers through write_whole, anything else through ASGI; both the same answer."""
    assert scope["type"] == "http"
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    headers = [*JSON, (b"x-path", scope["path"].encode())]
    if scope["path"] == "/whole" and write_whole(send, 200, headers, BODY):
        return
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


@contextlib.asynccontextmanager
async def _server() -> AsyncIterator[int]:
    config = uvicorn.Config(
        _app,
        host="127.0.0.1",
        port=0,
        loop="none",
        http=guarded_protocol(10.0, 60.0, 64 * 1024),
        lifespan="off",
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


async def _read_response(reader: asyncio.StreamReader, *, head_only: bool = False) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = b"" if head_only else await reader.readexactly(length)
    return head, body


def _without_date(head: bytes) -> bytes:
    return b"\r\n".join(line for line in head.split(b"\r\n") if not line.startswith(b"date:"))


def _request(path: str, *, method: str = "POST", version: str = "1.1", extra: str = "") -> bytes:
    return f"{method} {path} HTTP/{version}\r\nhost: x\r\ncontent-length: 2\r\n{extra}\r\n{{}}".encode()


async def test_over_a_socket_keep_alive_and_pipelining_work_and_the_answers_match() -> None:
    async with _server() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(_request("/whole"))
            first = await _read_response(reader)
            writer.write(_request("/plain"))  # the same connection, kept alive
            plain = await _read_response(reader)
            writer.write(_request("/whole") + _request("/whole") + _request("/plain"))  # pipelined
            answers = [await _read_response(reader) for _ in range(3)]
        finally:
            writer.close()
    assert first[1] == plain[1] == BODY
    assert _without_date(first[0]).replace(b"/whole", b"/plain") == _without_date(plain[0])
    assert b"connection: close" not in first[0]
    assert [body for _, body in answers] == [BODY] * 3
    assert [b"x-path: /whole" in head for head, _ in answers] == [True, True, False]


@pytest.mark.parametrize(
    ("version", "extra"),
    [("1.1", "connection: close\r\n"), ("1.0", "")],
    ids=["connection-close", "http-1.0"],
)
async def test_over_a_socket_a_closing_request_is_answered_then_closed(version: str, extra: str) -> None:
    async with _server() as port:
        heads = []
        for path in ("/whole", "/plain"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_request(path, version=version, extra=extra))
            head, body = await _read_response(reader)
            assert body == BODY
            assert await reader.read() == b""  # the server closed the connection
            writer.close()
            heads.append(_without_date(head).replace(b"/whole", b"/plain"))
    assert heads[0] == heads[1]
    assert b"connection: close" in heads[0]


async def test_over_a_socket_head_takes_uvicorns_path() -> None:
    async with _server() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(_request("/whole", method="HEAD"))
            head, _ = await _read_response(reader, head_only=True)
            writer.write(_request("/whole"))  # the connection still serves: no body was written
            after = await _read_response(reader)
        finally:
            writer.close()
    assert b"x-path: /whole" in head and b"content-length: 11" in head
    assert after[1] == BODY
