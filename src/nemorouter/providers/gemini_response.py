"""Gemini `GenerateContentResponse` -> OpenAI chat shapes: one candidate mapping shared by the
whole response and by each stream event, plus usage normalization."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from nemorouter.money import Usage
from nemorouter.providers.counts import count, lenient
from nemorouter.providers.gemini_request import THOUGHT_MARK
from nemorouter.providers.openai_wire import usage_to_openai
from nemorouter.providers.types import Completion, Failure, FailureKind, SseEvent, StreamStep

# Google's FinishReason -> OpenAI's, as LiteLLM maps them; unknown values -> `stop`. A candidate
# that called functions says STOP, and we make it `tool_calls` (OpenAI clients run the calls only
# then); `length` and `content_filter` still win. MALFORMED_FUNCTION_CALL carries no call part, so
# it ends as `stop` with no tool_calls: the client sees an empty answer, not a broken call.
_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "CONTINUATION": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "LANGUAGE": "content_filter",
    "OTHER": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "MODEL_ARMOR": "content_filter",
}


def finish_reason(reason: Any, called: bool) -> str:
    mapped = _FINISH.get(reason, "stop") if isinstance(reason, str) else "stop"
    return "tool_calls" if called and mapped == "stop" else mapped


@lenient
def parse_usage(raw: dict[str, Any]) -> Usage:
    """usageMetadata -> Usage in OpenAI's conventions.

    promptTokenCount already includes cachedContentTokenCount; tool-use prompt tokens (e.g. search
    results) are input too. Google documents total = prompt + candidates + toolUse + thoughts, i.e.
    candidates exclude thinking, and thinking is billed as output; but when prompt + candidates +
    toolUse == total the thoughts are already inside candidates (LiteLLM's check) and are not added
    twice.
    """
    prompt_count = count(raw.get("promptTokenCount"))
    tool_use = count(raw.get("toolUsePromptTokenCount"))
    candidates = count(raw.get("candidatesTokenCount"))
    thoughts = count(raw.get("thoughtsTokenCount"))
    total = raw.get("totalTokenCount")
    inside = thoughts > 0 and isinstance(total, int) and prompt_count + candidates + tool_use == total
    completion = candidates if inside else candidates + thoughts
    prompt = prompt_count + tool_use
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=min(count(raw.get("cachedContentTokenCount")), prompt),
        reasoning_tokens=min(thoughts, completion),
    )


@dataclass(slots=True)
class Parts:
    """What one candidate (or one stream event of it) said, in OpenAI terms."""

    text: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    seen: int = 0  # content and call parts, for counting output when usage never comes


def read_parts(candidate: dict[str, Any], first_call: int) -> Parts:
    """Text parts joined (thought parts apart, as reasoning); each functionCall a whole tool call.

    Gemini usually gives calls no id, so ours is `call_<n>_<name>` with n counting the calls of
    the candidate: deterministic, and equal streamed or not. A thoughtSignature rides in the id.
    """
    out = Parts()
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, dict):
            continue
        call = part.get("functionCall")
        if isinstance(call, dict) and isinstance(call.get("name"), str):
            index = first_call + len(out.tool_calls)
            call_id = call.get("id") if isinstance(call.get("id"), str) else f"call_{index}_{call['name']}"
            if isinstance(part.get("thoughtSignature"), str):
                call_id += THOUGHT_MARK + part["thoughtSignature"]
            arguments = orjson.dumps(call.get("args") or {}).decode()
            function = {"name": call["name"], "arguments": arguments}
            out.tool_calls.append({"index": index, "id": call_id, "type": "function", "function": function})
            out.seen += 1
        elif isinstance(part.get("text"), str) and part["text"]:
            if part.get("thought") is True:
                out.reasoning += part["text"]
            else:
                out.text += part["text"]
            out.seen += 1
    return out


def _candidates(data: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    found = data.get("candidates")
    out = []
    for position, candidate in enumerate(found if isinstance(found, list) else []):
        if isinstance(candidate, dict):
            index = candidate.get("index")
            out.append((index if isinstance(index, int) else position, candidate))
    return out


def _blocked(data: dict[str, Any]) -> bool:
    """The prompt itself was refused: no candidates, promptFeedback.blockReason set."""
    feedback = data.get("promptFeedback")
    return not data.get("candidates") and isinstance(feedback, dict) and bool(feedback.get("blockReason"))


def chat_response(data: Any) -> Completion:
    if not isinstance(data, dict) or not (isinstance(data.get("candidates"), list) or _blocked(data)):
        raise ValueError("upstream answered 200 without candidates")
    raw = data.get("usageMetadata") if isinstance(data.get("usageMetadata"), dict) else None
    usage = parse_usage(raw) if raw is not None else None
    choices: list[dict[str, Any]] = []
    reasons: list[str] = []
    for index, candidate in sorted(_candidates(data), key=lambda pair: pair[0]):
        parts = read_parts(candidate, 0)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": parts.text if parts.text or not parts.tool_calls else None,
            "refusal": None,
        }
        if parts.tool_calls:
            message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in parts.tool_calls]
        if parts.reasoning:
            message["reasoning_content"] = parts.reasoning
        reason = finish_reason(candidate.get("finishReason"), bool(parts.tool_calls))
        reasons.append(reason)
        choices.append({"index": index, "message": message, "finish_reason": reason, "logprobs": None})
    if not choices:  # blocked prompt: one empty answer, filtered
        message = {"role": "assistant", "content": "", "refusal": None}
        choices.append({"index": 0, "message": message, "finish_reason": "content_filter", "logprobs": None})
        reasons.append("content_filter")
    body: dict[str, Any] = {
        "id": str(data.get("responseId") or ""),
        "object": "chat.completion",
        "created": 0,  # Gemini sends no creation time, and adapters read no clock
        "model": str(data.get("modelVersion") or ""),
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage_to_openai(usage)
    return Completion(body=body, usage=usage, finish_reason=reasons[0], raw_usage=raw)


# The input side of usageMetadata (promptTokenCount already includes the cached part).
_PROMPT_FIELDS = ("promptTokenCount", "cachedContentTokenCount", "toolUsePromptTokenCount")


class StreamDecoder:
    """Each event is a whole GenerateContentResponse holding the next parts. usageMetadata holds
    running totals, not deltas: the last one wins, and it is reported only once a candidate has
    finished (so an early end of the body is never taken for a complete stream)."""

    def __init__(self, error_from_body: Callable[[int, Any], Failure]) -> None:
        self._error_from_body = error_from_body
        self._started: set[int] = set()
        self._calls: dict[int, int] = {}
        self._raw: dict[str, Any] | None = None
        self._prompt_known = False
        self._finished = False

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
        if "error" in data:
            error = data["error"]
            code = error.get("code") if isinstance(error, dict) else None
            step.error = self._error_from_body(code if isinstance(code, int) and code >= 400 else 500, data)
            return step
        head = {
            "id": str(data.get("responseId") or ""),
            "object": "chat.completion.chunk",
            "created": 0,
            "model": str(data.get("modelVersion") or ""),
        }
        if isinstance(data.get("usageMetadata"), dict):
            self._raw = data["usageMetadata"]
            # Google sends running totals on every chunk: the prompt part is known from the
            # first one (and stays), and is what a client that leaves before the end still pays.
            if not self._prompt_known and "promptTokenCount" in self._raw:
                prompt = {k: self._raw[k] for k in _PROMPT_FIELDS if k in self._raw}
                step.prompt_usage, step.raw_prompt_usage = parse_usage(prompt), prompt
                self._prompt_known = True
        candidates = _candidates(data)
        if not candidates and _blocked(data):  # one empty choice, filtered (any filter reason will do)
            candidates = [(0, {"finishReason": "SAFETY"})]
        for index, candidate in candidates:
            self._candidate(step, head, index, candidate)
        if self._finished and self._raw is not None:
            step.usage, step.raw_usage = parse_usage(self._raw), self._raw
        return step

    def _candidate(
        self, step: StreamStep, head: dict[str, Any], index: int, candidate: dict[str, Any]
    ) -> None:
        parts = read_parts(candidate, self._calls.get(index, 0))
        delta: dict[str, Any] = {}
        if index not in self._started:
            self._started.add(index)
            delta["role"] = "assistant"
        if parts.text:
            delta["content"] = parts.text
        if parts.reasoning:
            delta["reasoning_content"] = parts.reasoning
        if parts.tool_calls:
            delta["tool_calls"] = parts.tool_calls
            self._calls[index] = self._calls.get(index, 0) + len(parts.tool_calls)
        step.output_tokens_seen += parts.seen
        if delta:
            choice = {"index": index, "delta": delta, "finish_reason": None, "logprobs": None}
            step.chunks.append({**head, "choices": [choice]})
        if candidate.get("finishReason"):
            reason = finish_reason(candidate["finishReason"], self._calls.get(index, 0) > 0)
            choice = {"index": index, "delta": {}, "finish_reason": reason, "logprobs": None}
            step.chunks.append({**head, "choices": [choice]})
            step.finish_reason = reason
            self._finished = True
