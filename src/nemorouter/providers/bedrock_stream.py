"""Bedrock ConverseStream events -> OpenAI `chat.completion.chunk` dicts, one decoder per stream.

The engine decodes AWS's event-stream framing into `SseEvent(event=<:event-type>, data=<JSON>)`
(engine/eventstream.py). Order (AWS API reference, "ConverseStreamOutput"): `messageStart`,
then per content block `contentBlockStart` (tool calls only), `contentBlockDelta`s and
`contentBlockStop`, then `messageStop` (the stop reason) and last `metadata` (the usage). An
exception message (`throttlingException`, `modelStreamErrorException`, ...) arrives as an event
of that name and is classified as the same HTTP error would be (bedrock_errors.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from nemorouter.providers.bedrock_errors import stream_failure
from nemorouter.providers.bedrock_response import finish_reason, parse_usage, tool_call
from nemorouter.providers.types import Failure, FailureKind, SseEvent, StreamStep


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class _Decoder:
    def __init__(self) -> None:
        self.tools: dict[Any, int] = {}  # contentBlockIndex -> the OpenAI tool_calls index
        self.thinking: dict[Any, dict[str, str]] = {}  # contentBlockIndex -> the block so far

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
        match event.event:
            case "messageStart":
                step.chunks.append(_chunk({"role": "assistant", "content": ""}))
            case "contentBlockStart":
                self._start(data, step)
            case "contentBlockDelta":
                self._delta(data, step)
            case "contentBlockStop":
                block = self.thinking.pop(data.get("contentBlockIndex"), None)
                if block is not None:
                    self._emit(step, {"thinking_blocks": [{"type": "thinking", **block}]}, counts=False)
            case "messageStop":
                finish = finish_reason(data.get("stopReason"))
                step.finish_reason = finish
                step.chunks.append(_chunk({}, finish))
            case "metadata":
                # The last event: the whole usage (Converse sends none before it).
                step.done = True
                raw = data.get("usage")
                if isinstance(raw, dict):
                    step.usage, step.raw_usage = parse_usage(raw), raw
            case str() as name if name.endswith("Exception"):
                step.error = stream_failure(name, data)
            case _:
                pass  # event types added later: ignored, as AWS's SDKs ignore unknown members
        return step

    def _emit(self, step: StreamStep, delta: dict[str, Any], counts: bool = True) -> None:
        step.chunks.append(_chunk(delta))
        if counts:
            step.output_tokens_seen += 1

    def _start(self, data: dict[str, Any], step: StreamStep) -> None:
        use = _obj(_obj(data.get("start")).get("toolUse"))
        if not use:
            return
        index = self.tools[data.get("contentBlockIndex")] = len(self.tools)
        self._emit(
            step, {"tool_calls": [{"index": index, **tool_call(use.get("toolUseId"), use.get("name"), "")}]}
        )

    def _delta(self, data: dict[str, Any], step: StreamStep) -> None:
        at = data.get("contentBlockIndex")
        delta = _obj(data.get("delta"))
        if isinstance(delta.get("text"), str) and delta["text"]:
            self._emit(step, {"content": delta["text"]})
        elif isinstance(delta.get("toolUse"), dict):
            fragment = delta["toolUse"].get("input")
            if isinstance(fragment, str) and fragment and at in self.tools:
                self._emit(
                    step, {"tool_calls": [{"index": self.tools[at], "function": {"arguments": fragment}}]}
                )
        elif isinstance(delta.get("reasoningContent"), dict):
            self._reasoning(at, delta["reasoningContent"], step)

    def _reasoning(self, at: Any, content: dict[str, Any], step: StreamStep) -> None:
        if "redactedContent" in content:
            redacted = {"type": "redacted_thinking", "data": str(content.get("redactedContent") or "")}
            self._emit(step, {"thinking_blocks": [redacted]}, counts=False)
            return
        block = self.thinking.setdefault(at, {"thinking": "", "signature": ""})
        if isinstance(content.get("text"), str) and content["text"]:
            block["thinking"] += content["text"]
            self._emit(step, {"reasoning_content": content["text"]})
        if isinstance(content.get("signature"), str):
            block["signature"] += content["signature"]


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


def stream_decoder() -> Callable[[SseEvent], StreamStep]:
    return _Decoder()
