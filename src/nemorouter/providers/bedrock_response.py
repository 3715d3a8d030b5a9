"""Bedrock Converse answers -> OpenAI's shapes: usage, finish reasons, the chat body.

Shared by the non-stream mapping (here) and the stream decoder (`bedrock_stream`), so the two
cannot drift apart. Shapes: AWS API reference, "Converse" response and "TokenUsage".
"""

from __future__ import annotations

import json
from typing import Any

from nemorouter.money import Usage
from nemorouter.providers.counts import UnreadableUsage, count, lenient
from nemorouter.providers.openai_wire import usage_to_openai
from nemorouter.providers.types import Completion

# Converse's StopReason enum (service-2.json) -> OpenAI's finish_reason.
FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}


def finish_reason(stop_reason: Any) -> str | None:
    """OpenAI's finish reason; a stop reason unknown to us is passed on as it came."""
    if not isinstance(stop_reason, str):
        return None
    return FINISH.get(stop_reason, stop_reason)


@lenient
def parse_usage(raw: dict[str, Any]) -> Usage:
    """Converse `usage` -> normalized Usage.

    Bedrock's `inputTokens` excludes cache reads and writes, as Anthropic's `input_tokens` does
    (AWS "Prompt caching for faster model inference": a cached request reports a small
    `inputTokens` beside `cacheReadInputTokens`, and `totalTokens` is the sum of all four), so
    they are added back into `prompt_tokens`, as the anthropic adapter does. Reasoning is
    inside `outputTokens` and not broken out. `cacheDetails` splits the writes by TTL (`1h`,
    `5m`: service-2.json's CacheDetail); without it every write is a 5-minute write.
    """
    read = count(raw.get("cacheReadInputTokens"))
    writes = count(raw.get("cacheWriteInputTokens"))
    one_hour = five_minutes = 0
    details = raw.get("cacheDetails")
    if details is not None:
        if not isinstance(details, list):
            raise UnreadableUsage("cacheDetails is not a list")
        for detail in details:
            tokens = count(detail.get("inputTokens")) if isinstance(detail, dict) else 0
            if isinstance(detail, dict) and detail.get("ttl") == "1h":
                one_hour += tokens
            else:
                five_minutes += tokens
        writes = max(writes, one_hour + five_minutes)
    return Usage(
        prompt_tokens=count(raw.get("inputTokens")) + read + writes,
        completion_tokens=count(raw.get("outputTokens")),
        cached_tokens=read,
        cache_write_tokens=writes,
        cache_write_1h_tokens=min(one_hour, writes),
    )


def tool_call(call_id: Any, name: Any, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _body(message: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        # Converse's body has no id, model or time (adapters read no clock); the gateway sets them.
        "id": "",
        "object": "chat.completion",
        "created": 0,
        "model": "",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
    }


def chat_response(data: Any) -> Completion:
    output = data.get("output") if isinstance(data, dict) else None
    message = output.get("message") if isinstance(output, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        raise ValueError("upstream answered 200 without a message")
    texts: list[str] = []
    reasoning: list[str] = []
    thinking: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for block in message["content"]:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            arguments = json.dumps(use.get("input") or {}, ensure_ascii=False)
            calls.append(tool_call(use.get("toolUseId"), use.get("name"), arguments))
        elif isinstance(block.get("reasoningContent"), dict):
            text, echo = reasoning_block(block["reasoningContent"])
            reasoning.append(text)
            thinking.append(echo)
        # Other blocks (citations, guard content, images we never ask for): nothing to show,
        # and refusing the answer would lose a charge the provider has already made.
    reply: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    if calls:
        reply["tool_calls"] = calls
    if any(reasoning):
        reply["reasoning_content"] = "".join(reasoning)
    if thinking:
        reply["thinking_blocks"] = thinking
    finish = finish_reason(data.get("stopReason"))
    raw = data.get("usage")
    usage = parse_usage(raw) if isinstance(raw, dict) else None
    body = _body(reply, finish)
    if usage is not None:
        body["usage"] = usage_to_openai(usage)
    return Completion(body, usage, finish, raw if isinstance(raw, dict) else None)


def reasoning_block(content: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A reasoningContent block's text, and the thinking block that echoes it back (LiteLLM's
    `thinking_blocks` convention; the request side turns it into reasoningContent again)."""
    if "redactedContent" in content:
        return "", {"type": "redacted_thinking", "data": str(content.get("redactedContent") or "")}
    text = content.get("reasoningText")
    text = text if isinstance(text, dict) else {}
    said = str(text.get("text") or "")
    return said, {"type": "thinking", "thinking": said, "signature": str(text.get("signature") or "")}
