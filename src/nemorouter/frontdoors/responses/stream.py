"""Our OpenAI chat chunks -> the Responses API's stream events, purely.

The order OpenAI documents: `response.created`, `response.in_progress`, then per output item
`response.output_item.added`, its parts and deltas, `response.output_item.done`; last
`response.completed` (or `response.incomplete` when the output limit cut it short) carrying the
whole Response with `usage` and `cost`. Every event has a `sequence_number`, from 0.

Reasoning text becomes a reasoning item's summary (`response.reasoning_summary_*`), text a
message item (`response.content_part.*`, `response.output_text.*`), each tool call a
function_call item (`response.function_call_arguments.*`). Text and reasoning items close when
another item opens; function calls stay open until the choice finishes, because chat may
interleave the argument fragments of parallel calls. An error chunk (the relay sends the usage
chunk first) becomes an `error` event and then `response.failed` with the usage, so a client
sees what it paid; nothing follows it.
"""

from __future__ import annotations

from typing import Any

from nemorouter.frontdoors.responses.reply import (
    function_call_item,
    message_item,
    native_id,
    native_reasoning,
    output_text_part,
    reasoning_item,
    response_object,
    responses_usage,
)
from nemorouter.frontdoors.responses.request import ResponsesRequest
from nemorouter.providers.canonical import RESPONSES_REASONING

Event = tuple[str, dict[str, Any]]  # (event name, data object)


def _list(value: Any) -> list[Any]:
    """A chunk's list field, or none: what an upstream got wrong is skipped, not a crash."""
    return value if isinstance(value, list) else []


class _Call:
    """A function call being streamed: its output index and what has arrived."""

    __slots__ = ("arguments", "call_id", "index", "name")

    def __init__(self, index: int, call_id: str, name: str) -> None:
        self.index, self.call_id, self.name, self.arguments = index, call_id, name, ""


class ResponsesStream:
    """Feed each chat chunk in order, then call `end()`; each call returns events to send."""

    def __init__(self, request: ResponsesRequest, response_id: str, created: int) -> None:
        self.request = request
        self.response_id = response_id
        self.created = created
        self.sequence = 0
        self.started = False
        self.ended = False
        self.output: list[dict[str, Any]] = []  # finished items, by output index
        self.open: str | None = None  # the open text-like item: "message" | "reasoning"
        self.text = ""  # what the open item has received
        self.blocks: list[dict[str, Any]] = []  # the open reasoning item's thinking blocks
        self.native: dict[str, Any] | None = None  # the upstream's own item for the open reasoning
        self.calls: dict[Any, _Call] = {}  # chat tool-call index -> the call
        self.finish: Any = None
        self.usage: Any = None

    # -- events ----------------------------------------------------------------------------

    def _emit(self, events: list[Event], kind: str, **data: Any) -> None:
        events.append((kind, {"type": kind, "sequence_number": self.sequence, **data}))
        self.sequence += 1

    def _snapshot(self, status: str, **extra: Any) -> dict[str, Any]:
        return response_object(
            self.request, self.response_id, self.created, list(self.output), status=status, **extra
        )

    def _start(self, events: list[Event]) -> None:
        if self.started:
            return
        self.started = True
        self._emit(events, "response.created", response=self._snapshot("in_progress"))
        self._emit(events, "response.in_progress", response=self._snapshot("in_progress"))

    # -- feeding ---------------------------------------------------------------------------

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        if self.ended:
            return events
        self._start(events)
        if chunk.get("error") is not None:
            self._fail(chunk["error"], events)
            return events
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in _list(chunk.get("choices")):
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice, events)
        return events

    def end(self) -> list[Event]:
        """The closing events (after `[DONE]`, or when the chunks simply stop)."""
        events: list[Event] = []
        if self.ended:
            return events
        self._start(events)
        self._close_all(events)
        self.ended = True
        snapshot = self._snapshot("completed", usage=responses_usage(self.usage), finish=self.finish)
        kind = "response.incomplete" if snapshot["status"] == "incomplete" else "response.completed"
        self._emit(events, kind, response=snapshot)
        return events

    def _choice(self, choice: dict[str, Any], events: list[Event]) -> None:
        delta = choice.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        for item in native_reasoning(delta.get(RESPONSES_REASONING)):
            self._native(item, events)
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            self._text_delta("reasoning", reasoning, events)
        blocks = delta.get("thinking_blocks")
        if isinstance(blocks, list) and blocks:
            if self.open != "reasoning":
                self._text_delta("reasoning", "", events)
            self.blocks += [b for b in blocks if isinstance(b, dict)]
        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                self._text_delta("message", text, events)
        for call in _list(delta.get("tool_calls")):
            if isinstance(call, dict):
                self._tool_call(call, events)
        if isinstance(choice.get("finish_reason"), str) and choice["finish_reason"]:
            self.finish = choice["finish_reason"]
            self._close_all(events)

    def _text_delta(self, kind: str, text: str, events: list[Event]) -> None:
        if self.open != kind:
            self._close_text(events)
            self._open_text(kind, events)
        if not text:
            return
        self.text += text
        where = {"item_id": self._item_id(kind), "output_index": len(self.output)}
        if kind == "message":
            self._emit(
                events, "response.output_text.delta", content_index=0, delta=text, logprobs=[], **where
            )
            return
        if self.text == text:  # the summary's one part opens with its first text
            part = {"type": "summary_text", "text": ""}
            self._emit(events, "response.reasoning_summary_part.added", summary_index=0, part=part, **where)
        self._emit(events, "response.reasoning_summary_text.delta", summary_index=0, delta=text, **where)

    def _native(self, item: dict[str, Any], events: list[Event]) -> None:
        """An upstream's own reasoning item (when it opens, and again whole when it is done):
        the open reasoning item takes its id, and its `encrypted_content` when it closes."""
        if self.open == "reasoning" and native_id(self.native) == native_id(item):
            self.native = item
            return
        self._close_text(events)
        self.native = item
        self._open_text("reasoning", events)

    def _item_id(self, kind: str) -> str:
        if kind == "reasoning" and native_id(self.native) is not None:
            return str(native_id(self.native))
        prefix = "msg" if kind == "message" else "rs"
        return f"{prefix}_{self.response_id}_{len(self.output)}"

    def _open_text(self, kind: str, events: list[Event]) -> None:
        self.open, self.text, self.blocks = kind, "", []
        if kind != "reasoning":
            self.native = None
        item_id, index = self._item_id(kind), len(self.output)
        if kind == "message":
            item = message_item(item_id, "", status="in_progress")
            self._emit(events, "response.output_item.added", output_index=index, item=item)
            part = output_text_part("")
            self._emit(
                events,
                "response.content_part.added",
                item_id=item_id,
                output_index=index,
                content_index=0,
                part=part,
            )
        else:
            item = reasoning_item(item_id, "", [], self.request, status="in_progress")
            self._emit(events, "response.output_item.added", output_index=index, item=item)

    def _close_text(self, events: list[Event]) -> None:
        kind, text = self.open, self.text
        if kind is None:
            return
        self.open = None
        item_id, index = self._item_id(kind), len(self.output)
        where = {"item_id": item_id, "output_index": index}
        if kind == "message":
            self._emit(events, "response.output_text.done", content_index=0, text=text, logprobs=[], **where)
            part = output_text_part(text)
            self._emit(events, "response.content_part.done", content_index=0, part=part, **where)
            item = message_item(item_id, text)
        else:
            if text:
                part = {"type": "summary_text", "text": text}
                self._emit(
                    events, "response.reasoning_summary_text.done", summary_index=0, text=text, **where
                )
                self._emit(
                    events, "response.reasoning_summary_part.done", summary_index=0, part=part, **where
                )
            item = reasoning_item(item_id, text, self.blocks, self.request, native=self.native)
        self.native = None
        self.output.append(item)
        self._emit(events, "response.output_item.done", output_index=index, item=item)

    def _tool_call(self, call: dict[str, Any], events: list[Event]) -> None:
        key = call.get("index", 0)
        key = key if isinstance(key, int) else 0  # chat's index is an int; anything else is the first
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        found = self.calls.get(key)
        if found is None:
            self._close_text(events)
            # The call's place in `output` is held now; items after it get the next indexes.
            found = _Call(len(self.output), str(call.get("id") or ""), str(function.get("name") or ""))
            self.calls[key] = found
            item = function_call_item(found.call_id, found.name, "", self.request, status="in_progress")
            self.output.append(item)
            self._emit(events, "response.output_item.added", output_index=found.index, item=item)
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            found.arguments += arguments
            self._emit(
                events,
                "response.function_call_arguments.delta",
                item_id=f"fc_{found.call_id}",
                output_index=found.index,
                delta=arguments,
            )

    def _close_all(self, events: list[Event]) -> None:
        self._close_text(events)
        for call in self.calls.values():
            item = function_call_item(call.call_id, call.name, call.arguments, self.request)
            self.output[call.index] = item
            self._emit(
                events,
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=call.index,
                arguments=call.arguments,
                name=item["name"],
            )
            self._emit(events, "response.output_item.done", output_index=call.index, item=item)
        self.calls = {}

    def _fail(self, error: Any, events: list[Event]) -> None:
        """The upstream failed mid-answer: `error`, then `response.failed` with what was charged."""
        self.ended = True
        found = error if isinstance(error, dict) else {}
        message = found.get("message") if isinstance(found.get("message"), str) else str(error)
        status = found.get("code")
        code = "rate_limit_exceeded" if status == 429 else "server_error"
        self._emit(events, "error", code=code, message=message, param=None)
        failure = {"code": code, "message": message}
        if isinstance(found.get("type"), str):
            failure["nemo_type"] = found["type"]
        snapshot = self._snapshot("failed", usage=responses_usage(self.usage), error=failure)
        self._emit(events, "response.failed", response=snapshot)
