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
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

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

log = logging.getLogger("nemorouter.relay")


@dataclass(slots=True)
class _State:
    usage: Usage | None = None
    raw_usage: dict[str, Any] | None = None
    prompt_usage: Usage | None = None
    raw_prompt_usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    output_seen: int = 0
    error: Failure | None = None
    cancelled: bool = False
    done: bool = False

    def absorb(self, step: StreamStep) -> None:
        if step.usage is not None:
            self.usage, self.raw_usage = step.usage, step.raw_usage
        if step.prompt_usage is not None:
            self.prompt_usage, self.raw_prompt_usage = step.prompt_usage, step.raw_prompt_usage
        if step.finish_reason:
            self.finish_reason = step.finish_reason
        self.output_seen += step.output_tokens_seen
        self.error = step.error or self.error
        self.done = self.done or step.done


async def relay(
    settlement: Settlement,
    keepalive_seconds: float,
    call: Call,
    target: Target,
    handle: StreamHandle,
    first: StreamStep,
    decode: Callable[[SseEvent], StreamStep],
    body: dict[str, Any] | None = None,
) -> AsyncGenerator[bytes, None]:
    """`keepalive_seconds`: between SSE comments while the stream waits for its first token.
    `body` is the OpenAI-shaped request, read only if the prompt must be counted here."""
    state = _State()
    created = int(time.time())
    try:
        step = first
        while True:
            if step.prompt_usage is not None and state.prompt_usage is None:
                yield PROMPT_COMMENT + orjson.dumps(usage_to_openai(step.prompt_usage)) + b"\n\n"
            for chunk in step.chunks:
                chunk["id"] = call.id
                chunk["model"] = target.model.id
                chunk["created"] = created
                yield encode(orjson.dumps(chunk))
            state.absorb(step)
            if state.error is not None or state.done:
                break
            if state.output_seen == 0:
                # Before the first token a model may think for a long while: keep the client's
                # connection (and any proxy in between) from timing out with SSE comments.
                waiting = asyncio.ensure_future(handle.next_event())
                try:
                    while not (await asyncio.wait({waiting}, timeout=keepalive_seconds))[0]:
                        yield KEEPALIVE
                except BaseException:
                    waiting.cancel()
                    raise
                event = waiting.result()
            else:
                event = await handle.next_event()
            if event is None:
                if state.usage is None:
                    state.error = Failure(
                        FailureKind.PROTOCOL, 502, "the provider ended the stream early", retryable=False
                    )
                break
            step = decode(event)
    except TransportFailure as exc:
        state.error = exc.failure
    except BaseException:
        state.cancelled = True  # the client went away (cancellation or generator close)
        handle.close()
        await _finish(settlement, call, target, state, body)
        raise
    handle.close(finished=state.done and state.error is None)  # then its connection may be reused
    cost, usage = await _finish(settlement, call, target, state, body)
    base = {"id": call.id, "object": "chat.completion.chunk", "created": created, "model": target.model.id}
    yield encode(jsonx.dumps({**base, "choices": [], "usage": {**usage_to_openai(usage), "cost": Usd(cost)}}))
    if state.error is None:
        yield DONE
        return
    # CONTRACT: after a stream has started, an error is the final chunk; no [DONE] follows.
    error = {"code": state.error.status, "type": "upstream_error", "message": client_message(state.error)}
    yield encode(
        jsonx.dumps(
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "error"}], "error": error}
        )
    )


async def _finish(
    settlement: Settlement, call: Call, target: Target, state: _State, body: dict[str, Any] | None
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
    settlement: Settlement, call: Call, target: Target, state: _State, body: dict[str, Any] | None
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
