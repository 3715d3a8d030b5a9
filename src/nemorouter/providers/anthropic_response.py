"""Anthropic answers -> OpenAI's shapes: usage, finish reasons, the chat body, errors.

Shared by the non-stream mapping (here) and the stream decoder (`anthropic_stream`), so the
two cannot drift apart.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from nemorouter.money import Usage
from nemorouter.providers.anthropic_request import JSON_TOOL
from nemorouter.providers.counts import count, lenient
from nemorouter.providers.openai_wire import usage_to_openai
from nemorouter.providers.types import Completion, Failure, FailureKind

# stop_reason -> finish_reason (LiteLLM's _FINISH_REASON_MAP, providers.md section 2).
FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "pause_turn": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# error.type -> the HTTP status Anthropic sends it with (docs.claude.com/en/api/errors); an
# `error` event inside a 200 stream has only the type.
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def finish_reason(stop_reason: Any, json_answer: bool = False) -> str | None:
    """OpenAI's finish reason; a stop_reason unknown to us is passed on as it came."""
    if not isinstance(stop_reason, str):
        return None
    if json_answer and stop_reason == "tool_use":
        return "stop"  # the forced response_format tool: the answer is the content
    return FINISH.get(stop_reason, stop_reason)


@lenient
def parse_usage(raw: dict[str, Any]) -> Usage:
    """Anthropic usage -> normalized Usage.

    Anthropic's `input_tokens` excludes cache reads and writes, so they are added back into
    `prompt_tokens`; thinking is already inside `output_tokens`. Without the per-TTL
    breakdown every write is a 5-minute write (providers.md section 4).
    """
    read = count(raw.get("cache_read_input_tokens"))
    writes = count(raw.get("cache_creation_input_tokens"))
    one_hour = 0
    breakdown = raw.get("cache_creation")
    if isinstance(breakdown, dict):
        one_hour = count(breakdown.get("ephemeral_1h_input_tokens"))
        writes = max(writes, one_hour + count(breakdown.get("ephemeral_5m_input_tokens")))
    output = count(raw.get("output_tokens"))
    details = raw.get("output_tokens_details")
    thinking = count(details.get("thinking_tokens")) if isinstance(details, dict) else 0
    return Usage(
        prompt_tokens=count(raw.get("input_tokens")) + read + writes,
        completion_tokens=output,
        cached_tokens=read,
        cache_write_tokens=writes,
        cache_write_1h_tokens=min(one_hour, writes),
        reasoning_tokens=min(thinking, output),
    )


def tool_call(call_id: Any, name: Any, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def thinking_block(block: dict[str, Any]) -> dict[str, Any]:
    """A thinking block as it must be echoed back (LiteLLM's `thinking_blocks` convention)."""
    if block.get("type") == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.get("data", "")}
    return {
        "type": "thinking",
        "thinking": block.get("thinking", ""),
        "signature": block.get("signature", ""),
    }


def chat_response(data: Any) -> Completion:
    if (
        not isinstance(data, dict)
        or data.get("type") != "message"
        or not isinstance(data.get("content"), list)
    ):
        raise ValueError("upstream answered 200 without a message")
    texts: list[str] = []
    reasoning: list[str] = []
    thinking: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    json_answer = False
    for block in data["content"]:
        kind = block.get("type") if isinstance(block, dict) else None
        match kind:
            case "text":
                texts.append(str(block.get("text") or ""))
            case "thinking" | "redacted_thinking":
                reasoning.append(str(block.get("thinking") or ""))
                thinking.append(thinking_block(block))
            case "tool_use" if block.get("name") == JSON_TOOL:
                json_answer = True
                texts.append(json.dumps(block.get("input") or {}, ensure_ascii=False))
            case "tool_use":
                arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
                calls.append(tool_call(block.get("id"), block.get("name"), arguments))
            case _:
                # Blocks of features we never request (server tools, ...): nothing to show, and
                # refusing the answer would lose a charge the provider has already made.
                pass
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    if any(reasoning):
        message["reasoning_content"] = "".join(reasoning)
    if thinking:
        message["thinking_blocks"] = thinking
    finish = finish_reason(data.get("stop_reason"), json_answer)
    raw = data.get("usage")
    usage = parse_usage(raw) if isinstance(raw, dict) else None
    body: dict[str, Any] = {
        "id": data.get("id"),
        "object": "chat.completion",
        "created": 0,  # Anthropic sends no time and adapters read no clock; the gateway may set it
        "model": data.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
    }
    matched = data.get("stop_sequence")
    if isinstance(matched, str):  # which sequence stopped it: vLLM's `stop_reason` on the choice
        body["choices"][0]["stop_reason"] = matched
    if usage is not None:
        body["usage"] = usage_to_openai(usage)
    return Completion(
        body=body, usage=usage, finish_reason=finish, raw_usage=raw if isinstance(raw, dict) else None
    )


# ----------------------------------------------------------------------------- errors


def failure(status: int, body: Any, retry_after: int | None = None) -> Failure:
    """Classify Anthropic's `{"type":"error","error":{type,message}}` by its HTTP status."""
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    message = error.get("message")
    message = str(message)[:500] if isinstance(message, str) and message else f"upstream error {status}"
    if status == 429:
        details = error.get("details")
        code = details.get("error_code") if isinstance(details, dict) else None
        # A spend limit (enforced_/contract_/linked_organization_spend_limit_reached) does not
        # lift on retry; Anthropic's rule is not to retry it.
        if isinstance(code, str) and code.endswith("spend_limit_reached"):
            return Failure(FailureKind.RATE_LIMITED, status, message, retryable=False)
        return Failure(FailureKind.RATE_LIMITED, status, message, retryable=True, retry_after=retry_after)
    if status == 529:
        return Failure(FailureKind.OVERLOADED, status, message, retryable=True, retry_after=retry_after)
    if status == 401:
        # authentication_error: the key itself is bad.
        return Failure(FailureKind.AUTH, status, message, retryable=True)
    if status == 403:
        # permission_error: the key may not do what this request asks; the request's failure.
        return Failure(FailureKind.FORBIDDEN, status, message, retryable=False)
    if status == 402:
        # billing_error: our provider account is out of funds; another deployment may serve.
        return Failure(FailureKind.SERVER, status, message, retryable=True)
    if status == 408 or status >= 500:
        return Failure(FailureKind.SERVER, status, message, retryable=True, retry_after=retry_after)
    return Failure(FailureKind.INVALID, status, message, retryable=False)


def stream_failure(body: Any) -> Failure:
    """An `error` event inside a 200 stream: classified like the HTTP error of its type."""
    error = body.get("error") if isinstance(body, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    return failure(ERROR_STATUS.get(kind, 500) if isinstance(kind, str) else 500, body)


def error_from_response(status: int, body: bytes, retry_after: int | None) -> Failure:
    try:
        parsed: Any = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        parsed = None
    return failure(status, parsed, retry_after)
