"""The front door's answers: an OpenAI chat.completion (ours, with usage and cost) -> an
Anthropic message, purely. The stream converter (`stream`) shares these
mappings, so a streamed answer ends as the same message.

Usage follows Anthropic's conventions (`input_tokens` excludes cache reads and writes) and adds
`cost`, the exact charge. The message `id` is our request id (the same as the
`x-nemo-request-id` header and `GET /v1/generation?id=`), not a `msg_` id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from nemorouter.money import Usd, parse_usd

__all__ = ["anthropic_usage", "message_from_completion", "stop_reason", "thinking_blocks", "tool_input"]

# OpenAI finish_reason -> Anthropic stop_reason (the reverse of providers.md's LiteLLM table).
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def cost_of(value: Any) -> Usd:
    """Our `cost` as exact money: a Usd already, or a Decimal/int/str parsed exactly (never a float)."""
    if isinstance(value, Usd):
        return value
    if value is None:
        return Usd(0)
    if isinstance(value, Decimal | int | str) and not isinstance(value, bool):
        return Usd(parse_usd(value))
    raise ValueError(f"cost must be an exact amount, not {type(value).__name__}")


def anthropic_usage(usage: Any) -> dict[str, Any]:
    """Our OpenAI-convention usage (with cost) in Anthropic's conventions, cost kept."""
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    prompt = _count(usage.get("prompt_tokens"))
    cached = min(_count(details.get("cached_tokens")), prompt)
    writes = min(_count(details.get("cache_write_tokens")), prompt - cached)
    return {
        "input_tokens": prompt - cached - writes,
        "cache_creation_input_tokens": writes,
        "cache_read_input_tokens": cached,
        "output_tokens": _count(usage.get("completion_tokens")),
        "cost": cost_of(usage.get("cost")),
    }


def stop_reason(finish: Any, matched: Any, stop_sequences: Sequence[str]) -> tuple[str, str | None]:
    """Anthropic's (stop_reason, stop_sequence) for an OpenAI finish reason.

    OpenAI does not say whether `stop` came from a stop sequence; vLLM (`stop_reason`) and
    SGLang (`matched_stop`) do, and when that names one of the request's sequences we answer
    `stop_sequence`. Otherwise `end_turn`: the one honest answer that needs no guess.
    """
    if finish == "stop" and isinstance(matched, str) and matched in stop_sequences:
        return "stop_sequence", matched
    if isinstance(finish, str):
        return STOP_REASONS.get(finish, "end_turn"), None
    return "end_turn", None


def matched_stop(choice: dict[str, Any]) -> Any:
    return choice.get("stop_reason", choice.get("matched_stop"))


def tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's JSON arguments as Anthropic's `input` object; arguments cut short by the
    output limit are not an object, and Anthropic's `input` must be one: `{}`."""
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments) if isinstance(arguments, str) and arguments.strip() else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def thinking_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    """Thinking as Anthropic blocks: the signed blocks an Anthropic upstream returned
    (`thinking_blocks`), else another vendor's reasoning text with an empty signature."""
    found = message.get("thinking_blocks")
    if isinstance(found, list) and found:
        blocks = []
        for block in found:
            if isinstance(block, dict) and block.get("type") == "redacted_thinking":
                blocks.append({"type": "redacted_thinking", "data": str(block.get("data") or "")})
            elif isinstance(block, dict):
                blocks.append(
                    {
                        "type": "thinking",
                        "thinking": str(block.get("thinking") or ""),
                        "signature": str(block.get("signature") or ""),
                    }
                )
        return blocks
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        return [{"type": "thinking", "thinking": reasoning, "signature": ""}]
    return []


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text") or "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def message_from_completion(body: dict[str, Any], stop_sequences: Sequence[str] = ()) -> dict[str, Any]:
    """The Anthropic message for our chat.completion `body` (its usage carries `cost`)."""
    choices = body.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    content = thinking_blocks(message)
    text = _text(message.get("content"))
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        text += refusal
    if text:
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str) and function["name"]:
            content.append(
                {
                    "type": "tool_use",
                    "id": str(call.get("id") or ""),
                    "name": str(function.get("name") or ""),
                    "input": tool_input(function.get("arguments")),
                }
            )
    reason, sequence = stop_reason(choice.get("finish_reason"), matched_stop(choice), stop_sequences)
    if reason == "end_turn" and isinstance(refusal, str) and refusal and not message.get("content"):
        reason = "refusal"
    return {
        "id": body.get("id"),
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": anthropic_usage(body.get("usage")),
    }
