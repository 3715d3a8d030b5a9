"""The front door's streams: our OpenAI chunks -> Anthropic's stream events, purely.

Anthropic's order: `message_start`, `ping`, then per content block `content_block_start`,
deltas, `content_block_stop` (one block at a time: text, thinking, and each tool call its own
block), then `message_delta` (stop reason and usage) and `message_stop`.

Usage: `message_start` carries the prompt's counts when the upstream told them before the
answer (Anthropic's own message_start, Gemini's first usageMetadata: the relay passes them on
as an SSE comment, `prompt()`), else zeros; `message_delta.usage` has the final counts with `cost`. Anthropic documents those counts as
cumulative and its SDK lets them replace `message_start`'s, so the final message is exact.
Chunk fields of the wrong type (a provider's chunks are untrusted input) are skipped: `choices`
or `tool_calls` that are not lists, a `delta` that is not an object, a tool call that names no
function when it opens, a finish reason that is not a string.
An error chunk (a top-level `error`, finish_reason "error") becomes an `error` event, which
ends the stream as Anthropic's does; the usage chunk before it (the relay sends the usage
first) becomes a `message_delta` with no stop reason, so the cost is seen before the error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nemorouter.frontdoors.anthropic_messages.reply import (
    anthropic_usage,
    matched_stop,
    stop_reason,
    thinking_blocks,
)
from nemorouter.frontdoors.event_stream import Event

__all__ = ["Event", "MessagesStream"]


class MessagesStream:
    """Feed each OpenAI chunk in order, then call `end()`; each call returns events to send."""

    def __init__(self, message_id: str, model: str, stop_sequences: Sequence[str] = ()) -> None:
        self.message_id = message_id
        self.model = model
        self.stop_sequences = tuple(stop_sequences)
        self.started = False
        self.ended = False
        self.blocks = 0  # blocks opened so far; the next one gets this index
        self.open: str | None = None  # kind of the open block: text | thinking | tool_use
        self.tools: dict[Any, int] = {}  # OpenAI tool-call index -> our block index
        self.finish: Any = None
        self.matched: Any = None
        self.usage: Any = None
        self.early: dict[str, int] | None = None  # the prompt's counts, if told before the start

    def prompt(self, usage: Any) -> None:
        """The prompt's counts (OpenAI conventions), told before the first chunk."""
        if not self.started:
            counts = anthropic_usage(usage)
            self.early = {k: v for k, v in counts.items() if k != "cost"}

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        if self.ended:
            return []
        events = self._start(chunk)
        error = chunk.get("error")
        if error is not None:
            self.ended = True
            if self.usage is not None:
                # The relay sends the usage (with cost) before the error chunk: it becomes a
                # message_delta with no stop reason, so a client sees what it paid before the
                # error event ends the stream (the SDK raises on it).
                self._close(events)
                delta = {"stop_reason": None, "stop_sequence": None}
                usage = anthropic_usage(self.usage)
                events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
            events.append(("error", _error(error)))
            return events
        if chunk.get("usage") is not None:
            self.usage = chunk["usage"]
        for choice in _list(chunk.get("choices")):
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice, events)
        return events

    def end(self) -> list[Event]:
        """The closing events (after `[DONE]`, or when the chunks simply stop)."""
        if self.ended:
            return []
        events = self._start({})
        self._close(events)
        reason, sequence = stop_reason(self.finish, self.matched, self.stop_sequences)
        delta = {"stop_reason": reason, "stop_sequence": sequence}
        usage = anthropic_usage(self.usage)
        events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        events.append(("message_stop", {"type": "message_stop"}))
        self.ended = True
        return events

    # -- steps ----------------------------------------------------------------------------

    def _start(self, chunk: dict[str, Any]) -> list[Event]:
        if self.started:
            return []
        self.started = True
        message_id, model = chunk.get("id"), chunk.get("model")
        message: dict[str, Any] = {
            "id": message_id if isinstance(message_id, str) and message_id else self.message_id,
            "type": "message",
            "role": "assistant",
            "model": model if isinstance(model, str) and model else self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": self.early
            or {
                "input_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 0,
            },
        }
        return [("message_start", {"type": "message_start", "message": message}), ("ping", {"type": "ping"})]

    def _choice(self, choice: dict[str, Any], events: list[Event]) -> None:
        delta = choice.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            self._delta("thinking", {"type": "thinking_delta", "thinking": reasoning}, events)
        if isinstance(delta.get("thinking_blocks"), list):
            for block in thinking_blocks({"thinking_blocks": delta["thinking_blocks"]}):
                self._whole_thinking(block, events)
        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                self._delta("text", {"type": "text_delta", "text": text}, events)
        for call in _list(delta.get("tool_calls")):
            if isinstance(call, dict):
                self._tool_call(call, events)
        if isinstance(choice.get("finish_reason"), str) and choice["finish_reason"]:
            self.finish = choice["finish_reason"]
            self.matched = matched_stop(choice)
            self._close(events)

    def _open(self, kind: str, block: dict[str, Any], events: list[Event]) -> int:
        self._close(events)
        index = self.blocks
        self.blocks += 1
        self.open = kind
        events.append(
            ("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})
        )
        return index

    def _close(self, events: list[Event]) -> None:
        if self.open is not None:
            events.append(("content_block_stop", {"type": "content_block_stop", "index": self.blocks - 1}))
            self.open = None

    def _delta(self, kind: str, delta: dict[str, Any], events: list[Event], index: int | None = None) -> None:
        if index is None:
            if self.open != kind:
                empty = {"text": {"type": "text", "text": ""}, "thinking": _EMPTY_THINKING}[kind]
                self._open(kind, dict(empty), events)
            index = self.blocks - 1
        events.append(
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        )

    def _whole_thinking(self, block: dict[str, Any], events: list[Event]) -> None:
        """A finished thinking block (Anthropic upstreams send its signature once it is done)."""
        if block["type"] == "redacted_thinking":
            self._open("redacted_thinking", block, events)
        elif self.open == "thinking":
            if block["signature"]:
                self._delta("thinking", {"type": "signature_delta", "signature": block["signature"]}, events)
        else:
            self._open("thinking", dict(_EMPTY_THINKING), events)
            if block["thinking"]:
                self._delta("thinking", {"type": "thinking_delta", "thinking": block["thinking"]}, events)
            if block["signature"]:
                self._delta("thinking", {"type": "signature_delta", "signature": block["signature"]}, events)
        self._close(events)

    def _tool_call(self, call: dict[str, Any], events: list[Event]) -> None:
        key = call.get("index", 0)
        key = key if isinstance(key, int) and not isinstance(key, bool) else 0  # chat's index is an int
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        if key not in self.tools:
            name = function.get("name")
            if not isinstance(name, str) or not name:
                return  # Anthropic's tool_use always names its tool: a call that names none is skipped
            block = {"type": "tool_use", "id": str(call.get("id") or ""), "name": name, "input": {}}
            self.tools[key] = self._open("tool_use", block, events)
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            # A fragment for an earlier call (interleaved parallel calls) still names that call's
            # block; Anthropic's SDK accumulates deltas by index.
            delta = {"type": "input_json_delta", "partial_json": arguments}
            self._delta("tool_use", delta, events, index=self.tools[key])


_EMPTY_THINKING = {"type": "thinking", "thinking": "", "signature": ""}


def _list(value: Any) -> list[Any]:
    """A chunk's list field, or none: a provider's chunk is untrusted, and what it got wrong is
    skipped, never a crash (the Responses converter's rule too)."""
    return value if isinstance(value, list) else []


def _error(error: Any) -> dict[str, Any]:
    """Anthropic's error event; our contract fields (`code`, our type as `nemo_type`) ride along."""
    found = error if isinstance(error, dict) else {}
    message = found.get("message")
    out: dict[str, Any] = {
        "type": "api_error",
        "message": message if isinstance(message, str) else str(error),
    }
    if found.get("code") is not None:
        out["code"] = found["code"]
    if isinstance(found.get("type"), str):
        out["nemo_type"] = found["type"]
    return {"type": "error", "error": out}
