"""A response's head and what follows it in its step leave in one write at the step's end
(cli/one_write.py), driven through uvicorn's own
RequestResponseCycle, the code that writes them in the server; the transport under it records
what reached it. Over real sockets every other test of the gateway reads these answers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from nemorouter.cli.one_write import HeadHeld


class Recorder:
    """A transport that keeps each system-call-sized write: one entry per write or writelines."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def writelines(self, pieces: Any) -> None:
        self.writes.append(b"".join(pieces))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1) if name in ("peername", "sockname") else default


def cycle_over(
    recorder: Recorder,
    *,
    expect_100: bool = False,
    held: bool = True,
    method: str = "POST",
    keep_alive: bool = True,
    default_headers: list[tuple[bytes, bytes]] | None = None,
    on_response: Callable[[], None] = lambda: None,
) -> RequestResponseCycle:
    """uvicorn's cycle of one request over `recorder`, written through HeadHeld (`held`) as in
    the server, or straight to it."""
    scope: Any = {"type": "http", "method": method, "http_version": "1.1", "path": "/", "headers": []}
    transport: Any = recorder
    cycle = RequestResponseCycle(
        scope=scope,
        transport=transport,
        flow=FlowControl(transport),
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test.access"),
        access_log=False,
        default_headers=default_headers or [],
        message_event=asyncio.Event(),
        expect_100_continue=expect_100,
        keep_alive=keep_alive,
        on_response=on_response,
    )
    if held:
        through: Any = HeadHeld(transport, cycle, asyncio.get_running_loop())
        cycle.transport = through
    return cycle


START = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}


async def test_head_and_body_leave_in_one_write_when_the_step_ends() -> None:
    recorder = Recorder()
    cycle = cycle_over(recorder)
    await cycle.send(START)
    assert recorder.writes == []  # held for the body
    await cycle.send({"type": "http.response.body", "body": b"ok"})
    assert recorder.writes == []  # and both for the end of the step
    assert cycle.response_complete
    await asyncio.sleep(0)  # the step ends
    assert recorder.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
    await asyncio.sleep(0)
    assert len(recorder.writes) == 1  # nothing more


async def test_the_answers_of_one_step_leave_together_at_its_end() -> None:
    """Answers completed one after another in a step are all written after it: a client asleep
    is woken once for them, not once each."""
    recorders = [Recorder() for _ in range(3)]
    cycles = [cycle_over(recorder) for recorder in recorders]
    for i, cycle in enumerate(cycles):
        await cycle.send(START)
        await cycle.send({"type": "http.response.body", "body": b"o%d" % i})
        assert all(recorder.writes == [] for recorder in recorders)
    await asyncio.sleep(0)
    assert [r.writes for r in recorders] == [
        [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\no%d" % i] for i in range(3)
    ]


async def test_what_follows_a_held_head_keeps_its_order() -> None:
    """A stream whose first events are written in its head's step: all in one write, in order;
    later events go straight through."""
    recorder = Recorder()
    cycle = cycle_over(recorder)
    await cycle.send({"type": "http.response.start", "status": 200, "headers": []})
    await cycle.send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
    await cycle.send({"type": "http.response.body", "body": b"data: 2\n\n", "more_body": True})
    await asyncio.sleep(0)
    assert recorder.writes == [
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n9\r\ndata: 2\n\n\r\n"
    ]
    await cycle.send({"type": "http.response.body", "body": b"", "more_body": False})
    assert recorder.writes[1:] == [b"0\r\n\r\n"]


async def test_a_head_waits_no_longer_than_its_step() -> None:
    """A stream that starts and then waits for its first event shows its head at once."""
    recorder = Recorder()
    cycle = cycle_over(recorder)
    chunked = {"type": "http.response.start", "status": 200, "headers": []}
    await cycle.send(chunked)
    await asyncio.sleep(0)
    assert recorder.writes == [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"]
    await cycle.send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
    await cycle.send({"type": "http.response.body", "body": b"", "more_body": False})
    assert recorder.writes[1:] == [b"9\r\ndata: 1\n\n\r\n", b"0\r\n\r\n"]


async def test_an_empty_body_still_sends_the_head() -> None:
    recorder = Recorder()
    cycle = cycle_over(recorder)
    await cycle.send({"type": "http.response.start", "status": 204, "headers": []})
    await cycle.send({"type": "http.response.body", "body": b""})
    assert cycle.response_complete
    await asyncio.sleep(0)
    assert recorder.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"]


async def test_100_continue_is_not_held() -> None:
    """Written before the response starts, while the client waits for it to send its body."""
    recorder = Recorder()
    cycle = cycle_over(recorder, expect_100=True)
    cycle.message_event.set()
    await cycle.receive()
    assert recorder.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    await cycle.send(START)
    await cycle.send({"type": "http.response.body", "body": b"ok"})
    await asyncio.sleep(0)
    assert recorder.writes[1:] == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]


async def test_closing_sends_a_held_head_first() -> None:
    recorder = Recorder()
    cycle = cycle_over(recorder)
    await cycle.send(START)
    await cycle.send({"type": "http.response.body", "body": b"ok"})
    cycle.transport.close()  # what uvicorn does at the end of an answer that closes its connection
    assert recorder.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
    assert recorder.closed
    await asyncio.sleep(0)
    assert len(recorder.writes) == 1  # the end-of-step flush finds nothing left


async def test_a_head_held_when_the_connection_is_gone_is_dropped() -> None:
    recorder = Recorder()
    cycle = cycle_over(recorder)
    await cycle.send(START)
    recorder.closed = True  # the client went away (the transport closing under the cycle)
    await asyncio.sleep(0)
    assert recorder.writes == []
