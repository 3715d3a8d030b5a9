"""An OpenAI-kind upstream's native Responses API (`POST /responses`), for Responses clients.

A request a client sent to our `/v1/responses` carries `RESPONSES_PASSTHROUGH` in the canonical
chat body; on an upstream flagged as speaking the Responses API (`responses_enabled`: the
provider's `config.responses_api`, else its vendor row) the OpenAI adapter hands such a request
to this one (`select`), so what only that API has (OpenAI's encrypted reasoning items,
`reasoning.summary`, `include`) reaches it. Every other request, and every other upstream, keeps
Chat Completions. The request: `openai_responses_request`; the stream: `openai_responses_stream`;
errors share OpenAI's conventions (`openai_wire.error_from_response`).

Usage comes from the Responses `usage` (`input_tokens` with `input_tokens_details.cached_tokens`
and `cache_write_tokens` inside it, `output_tokens` with `output_tokens_details.reasoning_tokens` inside it), read with
the same rules as every adapter's: an impossible count makes the report unreadable (billed an
estimate within the hold), a part larger than its whole is clamped to it.
"""

from __future__ import annotations

from typing import Any

from nemorouter.providers import openai_wire
from nemorouter.providers.adapter import Adapter
from nemorouter.providers.canonical import RESPONSES_PASSTHROUGH, RESPONSES_REASONING
from nemorouter.providers.openai_responses_request import responses_request
from nemorouter.providers.openai_responses_stream import INCOMPLETE, parse_usage, stream_decoder
from nemorouter.providers.output_limit import output_limit
from nemorouter.providers.types import Completion, Upstream
from nemorouter.providers.vendors import VENDORS

__all__ = ["ADAPTER", "MIN_OUTPUT_LIMIT", "chat_response", "parse_usage", "responses_enabled", "select"]

# OpenAI refuses `max_output_tokens` below 16 (400 "integer below minimum value"); a smaller
# limit cannot be raised (the hold covers only it), so such a request keeps Chat Completions.
MIN_OUTPUT_LIMIT = 16


def responses_enabled(upstream: Upstream) -> bool:
    """Does this upstream speak the Responses API: its provider's `config.responses_api` when
    set, else its vendor row's `responses_api` (OpenAI's own API)."""
    flag = upstream.config.get("responses_api")
    if isinstance(flag, bool):
        return flag
    vendor = VENDORS.get(str(upstream.config.get("vendor") or ""))
    return vendor is not None and vendor.responses_api


def select(body: dict[str, Any], upstream: Upstream) -> Adapter | None:
    """This adapter for a Responses client's request on a Responses upstream; None otherwise."""
    if not isinstance(body.get(RESPONSES_PASSTHROUGH), dict) or not responses_enabled(upstream):
        return None
    if body.get("n") not in (None, 1) or output_limit(body, upstream.max_output) < MIN_OUTPUT_LIMIT:
        return None
    return ADAPTER


def _texts(parts: Any, kind: str, key: str) -> str:
    return "".join(
        str(p.get(key) or "") for p in parts or () if isinstance(p, dict) and p.get("type") == kind
    )


def message_of(output: list[Any]) -> dict[str, Any]:
    """The chat assistant message for a Response's `output` items."""
    message: dict[str, Any] = {"role": "assistant", "content": None}
    text, refusal, summary = "", "", ""
    reasoning: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for item in output:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "message":
            text += _texts(item.get("content"), "output_text", "text")
            refusal += _texts(item.get("content"), "refusal", "refusal")
        elif kind == "reasoning":
            summary += _texts(item.get("summary"), "summary_text", "text")
            reasoning.append(item)
        elif kind == "function_call":
            arguments = item.get("arguments")
            calls.append(
                {
                    "id": str(item.get("call_id") or ""),
                    "type": "function",
                    "function": {
                        "name": str(item.get("name") or ""),
                        "arguments": arguments if isinstance(arguments, str) else "",
                    },
                }
            )
    if text:
        message["content"] = text
    if refusal:
        message["refusal"] = refusal
    if summary:
        message["reasoning_content"] = summary
    if reasoning:
        message[RESPONSES_REASONING] = reasoning
    if calls:
        message["tool_calls"] = calls
    return message


def finish_of(response: dict[str, Any], message: dict[str, Any]) -> str:
    details = response.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    if response.get("status") == "incomplete":
        return INCOMPLETE.get(str(reason), "length")
    return "tool_calls" if message.get("tool_calls") else "stop"


def chat_response(data: Any) -> Completion:
    """A Response (status completed or incomplete) -> our chat.completion."""
    if (
        not isinstance(data, dict)
        or data.get("object") != "response"
        or not isinstance(data.get("output"), list)
        or data.get("status") not in ("completed", "incomplete")
    ):
        raise ValueError("upstream answered 200 without a finished Response")
    message = message_of(data["output"])
    finish = finish_of(data, message)
    raw = data.get("usage")
    usage = parse_usage(raw) if isinstance(raw, dict) else None
    body = {
        "id": data.get("id"),
        "object": "chat.completion",
        "created": data.get("created_at"),
        "model": data.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
    }
    return Completion(
        body=body, usage=usage, finish_reason=finish, raw_usage=raw if isinstance(raw, dict) else None
    )


ADAPTER = Adapter(
    chat_request=responses_request,
    chat_response=chat_response,
    stream_decoder=stream_decoder,
    error_from_response=openai_wire.error_from_response,
)
