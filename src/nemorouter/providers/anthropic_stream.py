"""Anthropic stream events -> OpenAI `chat.completion.chunk` dicts, one stateful decoder per stream.

Anthropic's stream is typed (`event:` lines) and stateful: a block is opened, filled by
deltas and closed, and usage is split between `message_start` (input and cache counts) and
`message_delta` (cumulative output, possibly newer input counts). See providers.md section 2.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from nemorouter.providers.anthropic_request import JSON_TOOL
from nemorouter.providers.anthropic_response import (
    finish_reason,
    parse_usage,
    stream_failure,
    thinking_block,
    tool_call,
)
from nemorouter.providers.types import Failure, FailureKind, SseEvent, StreamStep

# The input side of Anthropic's usage: what message_start reports before any output.
_INPUT_FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "cache_creation")


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(slots=True)
class _Block:
    kind: str  # text | tool | json | thinking | other
    tool_index: int = 0
    thinking: str = ""
    signature: str = ""


class _Decoder:
    def __init__(self) -> None:
        self.id: Any = None
        self.model: Any = None
        self.usage: dict[str, Any] = {}
        self.final_output: int | None = None
        self.blocks: dict[Any, _Block] = {}
        self.tools = 0
        self.json_answer = False
        self.seen = 0

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
        match event.event or data.get("type"):
            case "message_start":
                self._start(data, step)
            case "content_block_start":
                self._block_start(data, step)
            case "content_block_delta":
                self._block_delta(data, step)
            case "content_block_stop":
                block = self.blocks.get(data.get("index"))
                if block is not None and block.kind == "thinking":
                    whole = {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
                    self._emit(step, {"thinking_blocks": [whole]}, counts=False)
            case "message_delta":
                self._message_delta(data, step)
            case "message_stop":
                step.done = True
                if self.usage:
                    step.usage, step.raw_usage = parse_usage(self.usage), dict(self.usage)
            case "error":
                self._error(data, step)
            case _:
                # `ping`, and event types added later: Anthropic's versioning policy asks
                # clients to ignore events they do not know.
                pass
        return step

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": 0,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }

    def _emit(self, step: StreamStep, delta: dict[str, Any], counts: bool = True) -> None:
        step.chunks.append(self._chunk(delta))
        if counts:
            step.output_tokens_seen += 1
            self.seen += 1

    def _start(self, data: dict[str, Any], step: StreamStep) -> None:
        message = _obj(data.get("message"))
        self.id, self.model = message.get("id"), message.get("model")
        usage = message.get("usage")
        if isinstance(usage, dict):
            self.usage.update({k: v for k, v in usage.items() if v is not None})
            self._prompt(step)
        step.chunks.append(self._chunk({"role": "assistant", "content": ""}))

    def _prompt(self, step: StreamStep) -> None:
        """The prompt as Anthropic counted it (cache reads and writes included), for a stream
        the client leaves before the end: Anthropic bills the prompt once it has answered."""
        raw = {k: self.usage[k] for k in _INPUT_FIELDS if k in self.usage}
        if "input_tokens" in raw:
            step.prompt_usage, step.raw_prompt_usage = parse_usage(raw), raw

    def _block_start(self, data: dict[str, Any], step: StreamStep) -> None:
        block = _obj(data.get("content_block"))
        index = data.get("index")
        match block.get("type"):
            case "text":
                self.blocks[index] = _Block("text")
                if block.get("text"):
                    self._emit(step, {"content": block["text"]})
            case "tool_use" if block.get("name") == JSON_TOOL:
                self.blocks[index] = _Block("json")
                self.json_answer = True
            case "tool_use":
                self.blocks[index] = _Block("tool", self.tools)
                # The input arrives as input_json_delta fragments; a start with a full input
                # (not Anthropic's habit, but valid) is sent as the first fragment.
                start = json.dumps(block["input"], ensure_ascii=False) if block.get("input") else ""
                call = {"index": self.tools, **tool_call(block.get("id"), block.get("name"), start)}
                self.tools += 1
                self._emit(step, {"tool_calls": [call]})
            case "thinking":
                self.blocks[index] = _Block("thinking", thinking=str(block.get("thinking") or ""))
                if block.get("thinking"):
                    self._emit(step, {"reasoning_content": block["thinking"]})
            case "redacted_thinking":
                self.blocks[index] = _Block("other")
                self._emit(step, {"thinking_blocks": [thinking_block(block)]}, counts=False)
            case _:
                self.blocks[index] = _Block("other")

    def _block_delta(self, data: dict[str, Any], step: StreamStep) -> None:
        block = self.blocks.get(data.get("index")) or _Block("other")
        delta = _obj(data.get("delta"))
        match delta.get("type"):
            case "text_delta" if delta.get("text"):
                self._emit(step, {"content": delta["text"]})
            case "input_json_delta" if delta.get("partial_json"):
                fragment = delta["partial_json"]
                if block.kind == "json":
                    self._emit(step, {"content": fragment})
                elif block.kind == "tool":
                    call = {"index": block.tool_index, "function": {"arguments": fragment}}
                    self._emit(step, {"tool_calls": [call]})
            case "thinking_delta" if delta.get("thinking"):
                block.thinking += delta["thinking"]
                self._emit(step, {"reasoning_content": delta["thinking"]})
            case "signature_delta":
                block.signature += str(delta.get("signature") or "")
            case _:
                pass  # empty fragments, citations_delta, delta types added later

    def _message_delta(self, data: dict[str, Any], step: StreamStep) -> None:
        delta = _obj(data.get("delta"))
        finish = finish_reason(delta.get("stop_reason"), self.json_answer)
        if finish is not None:
            step.finish_reason = finish
            chunk = self._chunk({}, finish)
            matched = delta.get("stop_sequence")
            if isinstance(matched, str):  # which sequence stopped it, as vLLM's `stop_reason`
                chunk["choices"][0]["stop_reason"] = matched
            step.chunks.append(chunk)
        usage = data.get("usage")
        if isinstance(usage, dict):
            # Cumulative counts: they replace what message_start said.
            self.usage.update({k: v for k, v in usage.items() if v is not None})
            self._prompt(step)
            if isinstance(usage.get("output_tokens"), int):
                self.final_output = usage["output_tokens"]

    def _error(self, data: dict[str, Any], step: StreamStep) -> None:
        step.error = stream_failure(data)
        if self.seen and self.usage:
            # Output reached the client before the failure: charge the known input and the
            # output so far (message_start's output count is only a placeholder).
            output = max(self.seen, self.final_output or 0)
            raw = {**self.usage, "output_tokens": output, "interrupted": True}
            step.usage, step.raw_usage = parse_usage(raw), raw


def stream_decoder() -> Callable[[SseEvent], StreamStep]:
    return _Decoder()
