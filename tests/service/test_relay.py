"""The stream relay as a class (service/relay.py): its frames in order, events already received
in one batch, and exactly one settle whatever happens (end, early end, client gone, cancelled).

The relay reads through a fake StreamHandle (poll/arrival/next_event/close) and settles through
a fake Settlement that records each call; the provider's events are decoded by the real OpenAI
stream decoder. End to end (HTTP, SDKs, disconnects) the relay is covered by tests/e2e and
tests/adversarial; these pin down the class's own contract.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from types import SimpleNamespace
from typing import Any

import pytest

from nemorouter.money import Usage
from nemorouter.providers.openai_wire import stream_event
from nemorouter.providers.types import SseEvent
from nemorouter.service.relay import KEEPALIVE, Relay
from nemorouter.store.records import Outcome


def _event(delta: dict[str, Any] | None = None, finish: str | None = None, usage: bool = False) -> SseEvent:
    chunk: dict[str, Any] = {"id": "up-1", "object": "chat.completion.chunk", "created": 1, "model": "up"}
    if usage:
        chunk["choices"] = []
        chunk["usage"] = {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}
    else:
        chunk["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    return SseEvent(None, json.dumps(chunk).encode())


ROLE = _event({"role": "assistant", "content": ""})
TOKEN = _event({"content": " tok"})
FINISH = _event({}, "stop")
USAGE = _event(usage=True)
DONE = SseEvent(None, b"[DONE]")


class FakeHandle:
    """Events are `given` (received) or `later` (each arrives when the reader waits)."""

    def __init__(self, given: list[SseEvent], later: list[SseEvent | None] | None = None) -> None:
        self.ready: deque[SseEvent] = deque(given)
        self.later: deque[SseEvent | None] = deque(later or [])
        self.ended = False
        self.closed: list[bool] = []
        self.waits = 0

    def poll(self) -> SseEvent | None:
        if self.ready:
            return self.ready.popleft()
        return None

    def arrival(self) -> asyncio.Future[None]:
        self.waits += 1
        arrived: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.later:
            nxt = self.later.popleft()
            if nxt is None:
                self.ended = True
            else:
                self.ready.append(nxt)
            arrived.set_result(None)
        return arrived  # nothing more: never done (a stalled provider)

    async def next_event(self) -> SseEvent | None:
        while True:
            event = self.poll()
            if event is not None or self.ended:
                return event
            await self.arrival()

    def close(self, finished: bool = False) -> None:
        self.closed.append(finished)


class FakeSettlement:
    def __init__(self) -> None:
        self.settled: list[tuple[Usage, str, Outcome]] = []
        self.released: list[str | None] = []

    async def settle(
        self, call: Any, target: Any, usage: Usage, status: str, outcome: Outcome
    ) -> tuple[int, Usage]:
        self.settled.append((usage, status, outcome))
        return 1234, usage

    async def release(self, call: Any, error: str | None = None) -> None:
        self.released.append(error)

    async def counted_prompt(self, call: Any, target: Any, body: Any) -> int | None:
        return None


def _relay(handle: FakeHandle, settlement: FakeSettlement, keepalive: float = 10.0) -> Relay:
    call = SimpleNamespace(id="gen-1", input_bound=40, unit="", units=0)
    target = SimpleNamespace(model=SimpleNamespace(id="public/m"))
    first = stream_event(ROLE)
    return Relay(settlement, keepalive, call, target, handle, first, stream_event)  # type: ignore[arg-type]


def _frames(data: bytes) -> list[bytes]:
    return [f for f in data.split(b"\n\n") if f]


def test_frames_in_order_then_usage_and_done_settled_once() -> None:
    async def run() -> tuple[list[bytes], FakeSettlement, FakeHandle]:
        handle = FakeHandle([], [TOKEN, TOKEN, FINISH, USAGE, DONE])
        settlement = FakeSettlement()
        relay = _relay(handle, settlement)
        out = [frame async for frame in relay]
        await relay.aclose()  # after the end: nothing more to settle
        return out, settlement, handle

    out, settlement, handle = asyncio.run(run())
    frames = _frames(b"".join(out))
    chunks = [json.loads(f[6:]) for f in frames[:-1]]
    assert frames[-1] == b"data: [DONE]"
    assert [c["choices"][0]["delta"] for c in chunks[:4]] == [
        {"role": "assistant", "content": ""},
        {"content": " tok"},
        {"content": " tok"},
        {},
    ]
    assert all(c["id"] == "gen-1" and c["model"] == "public/m" for c in chunks)
    assert chunks[-1]["usage"]["prompt_tokens"] == 12 and chunks[-1]["usage"]["cost"] == 1234e-12
    assert [(u.completion_tokens, status) for u, status, _ in settlement.settled] == [(2, "success")]
    assert handle.closed == [True]  # finished: the connection may be kept


def test_events_already_received_go_out_in_one_batch() -> None:
    async def run() -> list[bytes]:
        handle = FakeHandle([TOKEN, TOKEN, TOKEN], [FINISH, USAGE, DONE])
        relay = _relay(handle, FakeSettlement())
        return [await relay.more(), await relay.more(), await relay.more()]

    role, tokens, finish = asyncio.run(run())
    assert len(_frames(role)) == 1
    assert len(_frames(tokens)) == 3  # the three already here, together
    assert len(_frames(finish)) == 1  # then one per wait, as each arrives


def test_a_stream_that_ends_without_usage_ends_in_the_error_chunk() -> None:
    async def run() -> tuple[list[bytes], FakeSettlement]:
        handle = FakeHandle([], [TOKEN, None])
        settlement = FakeSettlement()
        return [frame async for frame in _relay(handle, settlement)], settlement

    out, settlement = asyncio.run(run())
    frames = _frames(b"".join(out))
    last = json.loads(frames[-1][6:])
    assert last["error"]["code"] == 502 and b"[DONE]" not in frames
    assert "usage" in json.loads(frames[-2][6:])
    [(usage, status, outcome)] = settlement.settled
    assert status == "partial" and usage.completion_tokens == 1 and outcome.finish_reason == "error"


def test_aclose_before_any_read_settles_as_cancelled_once() -> None:
    async def run() -> tuple[FakeSettlement, FakeHandle]:
        handle = FakeHandle([TOKEN])
        settlement = FakeSettlement()
        relay = _relay(handle, settlement)
        await relay.aclose()
        await relay.aclose()
        assert await relay.more() == b""
        return settlement, handle

    settlement, handle = asyncio.run(run())
    [(_, status, outcome)] = settlement.settled
    assert status == "cancelled" and outcome.cancelled
    assert handle.closed == [False]  # aborted: the provider stops generating


def test_a_cancelled_read_settles_as_cancelled_and_raises() -> None:
    async def run() -> tuple[FakeSettlement, FakeHandle]:
        handle = FakeHandle([TOKEN])  # then nothing: the read waits for ever
        settlement = FakeSettlement()
        relay = _relay(handle, settlement)
        await relay.more()
        await relay.more()
        reading = asyncio.ensure_future(relay.more())
        await asyncio.sleep(0.01)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        await relay.aclose()  # already settled
        return settlement, handle

    settlement, handle = asyncio.run(run())
    [(usage, status, _)] = settlement.settled
    assert status == "cancelled" and usage.completion_tokens == 1
    assert handle.closed == [False]


def test_keepalive_comments_until_the_first_token() -> None:
    async def run() -> list[bytes]:
        handle = FakeHandle([])  # the provider thinks: nothing arrives
        relay = _relay(handle, FakeSettlement(), keepalive=0.01)
        out = [await relay.more(), await relay.more(), await relay.more()]
        await relay.aclose()
        return out

    _role, *waiting = asyncio.run(run())
    assert waiting == [KEEPALIVE, KEEPALIVE]
