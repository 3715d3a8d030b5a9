"""Relaying a provider stream to the client, chunk by chunk, and settling whatever happens.

Every path ends in exactly one settle: the stream finished, the provider failed after the
first byte (the error goes into the stream), or the client left (the record says
`cancelled`). The final usage chunk carries the exact cost, then `[DONE]`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from nemorouter import jsonx
from nemorouter.engine.http import StreamHandle, TransportFailure
from nemorouter.engine.sse import DONE, encode
from nemorouter.money import Usage, Usd
from nemorouter.providers.openai_wire import usage_to_openai
from nemorouter.providers.types import Failure, SseEvent, StreamStep
from nemorouter.service.failures import client_message
from nemorouter.service.routing import Target
from nemorouter.store.records import Outcome

KEEPALIVE = b": keepalive\n\n"

if TYPE_CHECKING:
    from nemorouter.service.gateway import Call, Gateway


@dataclass(slots=True)
class _State:
    usage: Usage | None = None
    raw_usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    output_seen: int = 0
    error: Failure | None = None
    cancelled: bool = False
    done: bool = False

    def absorb(self, step: StreamStep) -> None:
        if step.usage is not None:
            self.usage, self.raw_usage = step.usage, step.raw_usage
        if step.finish_reason:
            self.finish_reason = step.finish_reason
        self.output_seen += step.output_tokens_seen
        self.error = step.error or self.error
        self.done = self.done or step.done


async def relay(
    gateway: Gateway,
    call: Call,
    target: Target,
    handle: StreamHandle,
    first: StreamStep,
    decode: Callable[[SseEvent], StreamStep],
) -> AsyncGenerator[bytes, None]:
    state = _State()
    created = int(time.time())
    try:
        step = first
        while True:
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
                    while not (await asyncio.wait({waiting}, timeout=gateway.keepalive_seconds))[0]:
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
                        "protocol", 502, "the provider ended the stream early", retryable=False
                    )
                break
            step = decode(event)
    except TransportFailure as exc:
        state.error = exc.failure
    except BaseException:
        state.cancelled = True  # the client went away (cancellation or generator close)
        handle.close()
        await _finish(gateway, call, target, state)
        raise
    handle.close(finished=state.done and state.error is None)  # then its connection may be reused
    cost, usage = await _finish(gateway, call, target, state)
    base = {"id": call.id, "object": "chat.completion.chunk", "created": created, "model": target.model.id}
    if state.error is not None:
        error = {"code": state.error.status, "type": "upstream_error", "message": client_message(state.error)}
        yield encode(
            jsonx.dumps(
                {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "error"}], "error": error}
            )
        )
    usage_json = {**usage_to_openai(usage), "cost": Usd(cost)} if usage else None
    yield encode(jsonx.dumps({**base, "choices": [], "usage": usage_json}))
    yield DONE


async def _finish(gateway: Gateway, call: Call, target: Target, state: _State) -> tuple[int, Usage | None]:
    """Settle the stream: reported usage when the provider sent it, else what was seen;
    nothing at all when no output was produced and the provider reported no usage."""
    usage = state.usage
    raw = state.raw_usage
    if usage is None:
        if state.output_seen == 0:
            await gateway.release(
                call, error=state.error.message if state.error else "cancelled before output"
            )
            return 0, None
        usage = gateway.estimate_usage(call, state.output_seen)
        raw = {"estimated": True}
    status = "cancelled" if state.cancelled else ("error" if state.error else "success")
    if status == "error":
        status = "partial"  # output was produced and is charged; "error" means no charge
    cost, usage = await gateway.settle(
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
