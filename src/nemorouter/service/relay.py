"""Relaying a provider stream to the client, chunk by chunk, and settling whatever happens.

Every path ends in exactly one settle: the stream finished, the provider failed after the
first byte (the error goes into the stream), or the client left (the record says
`cancelled`). The relay starts only once the provider has answered (its first event), so a
client that leaves is charged at least the prompt (the provider bills it): the provider's own
count where it sent one, else the model family's tokenizer, else the hold's prompt bound.
A provider failure before any output costs nothing.

The stream ends with the usage chunk (exact cost), then `[DONE]`; after a failure, the usage
chunk, then the error chunk, and nothing more (an SDK raises on the error chunk, so the
usage must come first to be seen).

`Relay` is a class with an async `__anext__`, not an async generator, so that mypyc compiles
it: it runs once per event of every open stream (docs/architecture.md, "Speed").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import orjson

from nemorouter import jsonx
from nemorouter.engine.http import StreamHandle, TransportFailure
from nemorouter.engine.sse import DONE, encode
from nemorouter.money import Usage, Usd
from nemorouter.providers.openai_wire import usage_to_openai
from nemorouter.providers.types import Failure, FailureKind, SseEvent, StreamStep
from nemorouter.service.admission import Call
from nemorouter.service.failures import client_message
from nemorouter.service.routing import Target
from nemorouter.service.settlement import Settlement, estimate_usage
from nemorouter.store.records import Outcome

KEEPALIVE = b": keepalive\n\n"
# The prompt's count as soon as the provider tells it (Anthropic's message_start, Gemini's first
# usageMetadata), in an SSE comment: OpenAI clients skip it; a front door whose stream starts
# with the prompt count (Messages' message_start) reads it (frontdoors/event_stream.py).
PROMPT_COMMENT = b": prompt "


class Frames(Protocol):
    """A stream's SSE bytes for the client, as the response sends them: a Relay, or a front
    door's conversion of one (frontdoors/event_stream.py). `aclose()` settles one not finished."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    def __anext__(self) -> Awaitable[bytes]: ...

    def aclose(self) -> Awaitable[None]: ...


class Relay:
    """The client's stream of OpenAI SSE frames: an async iterator whose items are one or more
    whole frames (every event already received goes out together, none waits for another), and
    `aclose()`, which settles as `cancelled` a stream not yet settled (the client left).

    Settles exactly once: at the stream's end (then the usage and closing frames follow), or in
    `aclose()`, or when reading is interrupted (a cancellation: the disconnect watcher)."""

    def __init__(
        self,
        settlement: Settlement,
        keepalive_seconds: float,
        call: Call,
        target: Target,
        handle: StreamHandle,
        first: StreamStep,
        decode: Callable[[SseEvent], StreamStep],
        body: dict[str, Any] | None = None,
    ) -> None:
        """`keepalive_seconds`: between SSE comments while the stream waits for its first token.
        `body` is the OpenAI-shaped request, read only if the prompt must be counted here."""
        self._settlement = settlement
        self._keepalive = keepalive_seconds
        self._call = call
        self._target = target
        self._handle = handle
        self._decode = decode
        self._body = body
        self._created = int(time.time())
        self._frames: list[bytes] = []  # made, not yet handed out
        self._waiting: asyncio.Future[SseEvent | None] | None = None  # a read across keep-alives
        self._reading = True  # events may still come
        self._settled = False  # settling has begun (it happens once)
        self._over = False  # the closing frames are made
        # What the stream told so far.
        self.usage: Usage | None = None
        self.raw_usage: dict[str, Any] | None = None
        self.prompt_usage: Usage | None = None
        self.raw_prompt_usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.output_seen = 0
        self.error: Failure | None = None
        self.cancelled = False
        self.done = False
        self._first: StreamStep | None = first  # taken by the first read, where failures settle

    def __aiter__(self) -> Relay:
        return self

    async def __anext__(self) -> bytes:
        frames = await self.more()
        if not frames:
            raise StopAsyncIteration
        return frames

    async def aclose(self) -> None:
        """The client is gone (or the response is over): settle if that has not begun."""
        if not self._settled:
            await self._abandon()

    async def more(self) -> bytes:
        """The next frames (one or more whole ones), b"" once the stream is over."""
        frames = self._frames
        handle = self._handle
        while not frames:
            if self._over:
                return b""
            if not self._reading:
                await self._close()
                continue
            try:
                first = self._first
                if first is not None:
                    self._first = None
                    self._take(first)
                elif self.output_seen == 0:
                    await self._before_output()
                else:
                    event = handle.poll()
                    if event is None and not handle.ended:
                        await handle.arrival()  # the one wait per event
                        continue
                    self._relay(event)
            except TransportFailure as exc:
                self.error = exc.failure
                self._reading = False
            except BaseException as interrupted:
                await self._abandon()  # the client went away (the disconnect watcher cancels)
                # Named, not a bare `raise` after the await: with that, the compiled server
                # crashed (SIGSEGV) once a client had left a /v1/messages stream.
                raise interrupted
        out = frames[0] if len(frames) == 1 else b"".join(frames)
        frames.clear()
        return out

    async def _before_output(self) -> None:
        """The next event before the first token: a model may think for a long while, so the
        wait is cut into keep-alive comments that keep the client's connection (and any proxy
        in between) from timing out."""
        waiting = self._waiting
        if waiting is None:
            waiting = self._waiting = asyncio.ensure_future(self._handle.next_event())
        if not (await asyncio.wait({waiting}, timeout=self._keepalive))[0]:
            self._frames.append(KEEPALIVE)
            return
        self._waiting = None
        self._relay(waiting.result())

    def _relay(self, event: SseEvent | None) -> None:
        """`event` (None: the stream's end), then every event already received after it: none
        waits for another."""
        handle = self._handle
        while event is not None:
            self._take(self._decode(event))
            if not self._reading:
                return
            event = handle.poll()
            if event is None and not handle.ended:
                return
        if self.usage is None:
            self.error = Failure(
                FailureKind.PROTOCOL, 502, "the provider ended the stream early", retryable=False
            )
        self._reading = False

    def _take(self, step: StreamStep) -> None:
        """A decoded event: its frames (our id, model and time on the provider's chunks), and
        what it tells (usage, finish, output seen, an error, the end)."""
        frames = self._frames
        if step.prompt_usage is not None and self.prompt_usage is None:
            frames.append(PROMPT_COMMENT + orjson.dumps(usage_to_openai(step.prompt_usage)) + b"\n\n")
        if step.chunks:
            call_id, model_id, created = self._call.id, self._target.model.id, self._created
            for chunk in step.chunks:
                chunk["id"] = call_id
                chunk["model"] = model_id
                chunk["created"] = created
                frames.append(encode(orjson.dumps(chunk)))
        if step.usage is not None:
            self.usage, self.raw_usage = step.usage, step.raw_usage
        if step.prompt_usage is not None:
            self.prompt_usage, self.raw_prompt_usage = step.prompt_usage, step.raw_prompt_usage
        if step.finish_reason:
            self.finish_reason = step.finish_reason
        self.output_seen += step.output_tokens_seen
        if step.error is not None:
            self.error = step.error
        if step.done:
            self.done = True
        if self.error is not None or self.done:
            self._reading = False

    # -- settling -----------------------------------------------------------------------------

    async def _abandon(self) -> None:
        self._settled = True
        self.cancelled = True
        self._reading = False
        self._over = True
        self._frames.clear()
        if self._waiting is not None:
            self._waiting.cancel()
        self._handle.close()
        await _finish(self._settlement, self._call, self._target, self, self._body)

    async def _close(self) -> None:
        """The stream is over: settle, then the usage chunk and [DONE] or the error chunk."""
        self._settled = True
        self._handle.close(finished=self.done and self.error is None)  # then its connection may be reused
        cost, usage = await _finish(self._settlement, self._call, self._target, self, self._body)
        call_id, model_id = self._call.id, self._target.model.id
        base = {"id": call_id, "object": "chat.completion.chunk", "created": self._created, "model": model_id}
        frames = self._frames
        frames.append(
            encode(
                jsonx.dumps({**base, "choices": [], "usage": {**usage_to_openai(usage), "cost": Usd(cost)}})
            )
        )
        self._over = True
        if self.error is None:
            frames.append(DONE)
            return
        # CONTRACT: after a stream has started, an error is the final chunk; no [DONE] follows.
        error = {"code": self.error.status, "type": "upstream_error", "message": client_message(self.error)}
        choices = [{"index": 0, "delta": {}, "finish_reason": "error"}]
        frames.append(encode(jsonx.dumps({**base, "choices": choices, "error": error})))


async def _finish(
    settlement: Settlement, call: Call, target: Target, state: Relay, body: dict[str, Any] | None
) -> tuple[int, Usage]:
    """Settle the stream and return (cost, usage charged).

    Reported usage when the provider sent its final count. Otherwise the provider has answered
    (the relay starts at its first event) and bills the prompt: a client that left, or a
    stream that ended without usage, pays the prompt plus the output seen. Only a provider
    failure before any output is free (the hold is released)."""
    usage = state.usage
    raw = state.raw_usage
    if usage is None:
        if state.error is not None and state.output_seen == 0 and not state.cancelled:
            await settlement.release(call, error=state.error.message)
            return 0, Usage()
        usage, raw = await _unreported(settlement, call, target, state, body)
    status = "cancelled" if state.cancelled else ("error" if state.error else "success")
    if status == "error":
        status = "partial"  # output was produced and is charged; "error" means no charge
    cost, usage = await settlement.settle(
        call,
        target,
        usage,
        status,
        Outcome(
            cancelled=state.cancelled,
            finish_reason="error" if state.error else state.finish_reason,
            raw_usage=raw,
            error=state.error.message if state.error else None,
        ),
    )
    return cost, usage


async def _unreported(
    settlement: Settlement, call: Call, target: Target, state: Relay, body: dict[str, Any] | None
) -> tuple[Usage, dict[str, Any]]:
    """Usage of a stream that ended before the provider's final count: the provider's own early
    prompt count where it sent one, else a count (docs/money-trail.md, "A stream cut short")."""
    early = state.prompt_usage
    if early is not None:
        usage = Usage(
            prompt_tokens=early.prompt_tokens,
            completion_tokens=state.output_seen,
            cached_tokens=early.cached_tokens,
            cache_write_tokens=early.cache_write_tokens,
            cache_write_1h_tokens=early.cache_write_1h_tokens,
        )
        return usage, {**(state.raw_prompt_usage or {}), "output_estimated": state.output_seen}
    prompt = await settlement.counted_prompt(call, target, body)
    usage = estimate_usage(call, state.output_seen, prompt)
    return usage, {"estimated": True, "prompt": "bound" if prompt is None else "tokenizer"}
