"""An upstream's Responses event stream -> our chat chunks, purely (one decoder per stream).

The events OpenAI documents: text, refusal and reasoning-summary deltas become chat deltas;
each `function_call` item becomes one chat tool call (its index in the order the calls
opened), its argument deltas that call's fragments; a finished `reasoning` item rides on a
delta as `RESPONSES_REASONING` (its `encrypted_content` is what the client sends back). The
usage is the one `response.completed` (or `response.incomplete`) carries, and that event ends
the stream; `response.failed` and `error` end it as a failure (with the failed Response's usage
when it has one, so what was produced is charged).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from nemorouter.money import Usage
from nemorouter.providers.canonical import RESPONSES_REASONING
from nemorouter.providers.counts import count, lenient
from nemorouter.providers.types import Failure, FailureKind, SseEvent, StreamStep

_DELTAS = {
    "response.output_text.delta": "content",
    "response.refusal.delta": "refusal",
    "response.reasoning_summary_text.delta": "reasoning_content",
}
_ENDS = frozenset({"response.completed", "response.incomplete"})
# A Response's `incomplete_details.reason` -> chat's finish_reason.
INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


@lenient
def parse_usage(raw: dict[str, Any]) -> Usage:
    """Responses usage -> normalized Usage: cache reads and writes inside `input_tokens`,
    reasoning inside `output_tokens` (OpenAI's conventions, as in its chat usage)."""
    prompt = count(raw.get("input_tokens"))
    completion = count(raw.get("output_tokens"))
    idet = raw.get("input_tokens_details") or {}
    odet = raw.get("output_tokens_details") or {}
    cached = min(count(idet.get("cached_tokens")), prompt)
    writes = min(count(idet.get("cache_write_tokens")), prompt - cached)
    reasoning = min(count(odet.get("reasoning_tokens")), completion)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        cache_write_tokens=writes,
        reasoning_tokens=reasoning,
    )


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _failure(error: Any) -> Failure:
    found: dict[str, Any] = error if isinstance(error, dict) else {}
    text = found.get("message")
    message = text if isinstance(text, str) else "upstream failed mid-answer"
    if found.get("code") == "rate_limit_exceeded":
        return Failure(FailureKind.RATE_LIMITED, 429, message[:500], retryable=True)
    return Failure(FailureKind.SERVER, 502, message[:500], retryable=True)


class _Decoder:
    __slots__ = ("calls",)

    def __init__(self) -> None:
        self.calls: dict[Any, int] = {}  # the call's output_index -> its chat tool-call index

    def __call__(self, event: SseEvent) -> StreamStep:
        step = StreamStep()
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            step.error = Failure(
                FailureKind.PROTOCOL, 502, "upstream sent a malformed stream event", retryable=True
            )
            return step
        kind = data.get("type") or event.event
        if kind == "response.created":  # the answer has begun: chat's first chunk names its role
            step.chunks.append(_chunk({"role": "assistant", "content": ""}))
        elif kind in _DELTAS:
            delta = data.get("delta")
            if isinstance(delta, str) and delta:
                step.chunks.append(_chunk({_DELTAS[kind]: delta}))
                step.output_tokens_seen += 1
        elif kind == "response.output_item.added":
            self._opened(data, step)
        elif kind == "response.function_call_arguments.delta":
            index = self.calls.get(data.get("output_index"))
            delta = data.get("delta")
            if index is not None and isinstance(delta, str) and delta:
                step.chunks.append(
                    _chunk({"tool_calls": [{"index": index, "function": {"arguments": delta}}]})
                )
                step.output_tokens_seen += 1
        elif kind == "response.output_item.done":
            item = data.get("item")
            if isinstance(item, dict) and item.get("type") == "reasoning":
                step.chunks.append(_chunk({RESPONSES_REASONING: [item]}))
        elif kind in _ENDS:
            self._ended(data.get("response"), step)
        elif kind == "response.failed":
            response = data.get("response")
            response = response if isinstance(response, dict) else {}
            self._usage(response, step)
            step.error = _failure(response.get("error"))
        elif kind == "error":
            step.error = _failure(data)
        return step

    def _opened(self, data: dict[str, Any], step: StreamStep) -> None:
        item = data.get("item")
        if not isinstance(item, dict) or item.get("type") != "function_call":
            return
        index = len(self.calls)
        self.calls[data.get("output_index")] = index
        call = {
            "index": index,
            "id": str(item.get("call_id") or ""),
            "type": "function",
            "function": {"name": str(item.get("name") or ""), "arguments": ""},
        }
        step.chunks.append(_chunk({"tool_calls": [call]}))
        step.output_tokens_seen += 1

    @staticmethod
    def _usage(response: dict[str, Any], step: StreamStep) -> None:
        raw = response.get("usage")
        if isinstance(raw, dict):
            step.usage, step.raw_usage = parse_usage(raw), raw

    def _ended(self, response: Any, step: StreamStep) -> None:
        response = response if isinstance(response, dict) else {}
        self._usage(response, step)
        if response.get("status") == "incomplete":
            details = response.get("incomplete_details")
            reason = details.get("reason") if isinstance(details, dict) else None
            finish = INCOMPLETE.get(str(reason), "length")
        else:
            finish = "tool_calls" if self.calls else "stop"
        step.chunks.append(_chunk({}, finish))
        step.finish_reason = finish
        step.done = True


def stream_decoder() -> Callable[[SseEvent], StreamStep]:
    return _Decoder()
