"""Reading and validating an OpenAI Responses request (`POST /v1/responses`) for the sim.

The request is checked the way OpenAI's API checks it (unknown parameters, `max_output_tokens`
at least 16, a reasoning item sent back with `store: false` must carry the `encrypted_content`
this sim wrote), then read as the equivalent chat request, so the one chat planner
(`openai_plan.plan_chat`) generates the same deterministic reply, token counts and directives
(`faults.py`) on both APIs.
"""

from __future__ import annotations

from typing import Any

from nemorouter.sim.openai_plan import BadRequest

# OpenAI's minimum for `max_output_tokens` (its 400: "integer below minimum value").
MIN_OUTPUT_TOKENS = 16
ENCRYPTED_PREFIX = "sim_enc_"  # the sim's stand-in for OpenAI's encrypted reasoning
KNOWN = frozenset(
    {
        "model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "tools",
        "tool_choice", "parallel_tool_calls", "text", "reasoning", "include", "store", "stream",
        "stream_options", "metadata", "prompt_cache_key", "prompt_cache_retention",
        "safety_identifier", "user", "service_tier", "truncation", "previous_response_id",
        "background", "max_tool_calls", "top_logprobs", "conversation", "prompt",
    }
)  # fmt: skip


def _parts(content: Any, where: str) -> Any:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRequest(f"Invalid '{where}.content': expected a string or an array.", f"{where}.content")
    parts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text") and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "input_image":
            parts.append({"type": "image_url", "image_url": {"url": part.get("image_url")}})
        elif kind in ("input_file", "refusal"):
            parts.append({"type": "text", "text": str(part.get("refusal") or part.get("filename") or "")})
        else:
            raise BadRequest(f"Invalid '{where}.content': unknown part type {kind!r}.", f"{where}.content")
    return parts


def _reasoning_item(item: dict[str, Any], body: dict[str, Any], where: str) -> None:
    encrypted = item.get("encrypted_content")
    if body.get("store") is False and not isinstance(encrypted, str):
        raise BadRequest(
            f"Item with id '{item.get('id')}' not found. Items are not persisted when `store` is set "
            "to false. Try again with `store` set to true, or remove this item from your input.",
            where,
        )
    if isinstance(encrypted, str) and not encrypted.startswith(ENCRYPTED_PREFIX):
        raise BadRequest(f"The encrypted content for item {item.get('id')} could not be verified.", where)


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    value = body.get("input")
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str):
        messages.append({"role": "system", "content": body["instructions"]})
    if isinstance(value, str):
        return [*messages, {"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise BadRequest("Invalid 'input': expected a string or a non-empty array.", "input")
    for i, item in enumerate(value):
        where = f"input[{i}]"
        kind = item.get("type", "message") if isinstance(item, dict) else None
        if kind == "message" and isinstance(item, dict):
            messages.append({"role": item.get("role"), "content": _parts(item.get("content"), where)})
        elif kind == "function_call" and isinstance(item, dict):
            function = {"name": item.get("name"), "arguments": item.get("arguments")}
            call = {"id": item.get("call_id"), "type": "function", "function": function}
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output" and isinstance(item, dict):
            messages.append(
                {"role": "tool", "tool_call_id": item.get("call_id"), "content": item.get("output")}
            )
        elif kind == "reasoning" and isinstance(item, dict):
            _reasoning_item(item, body, where)
        else:
            raise BadRequest(f"Invalid '{where}.type': {kind!r} is not supported by the sim.", where)
    return messages


def _tool_choice(value: Any) -> Any:
    if isinstance(value, dict) and value.get("type") == "function":
        return {"type": "function", "function": {"name": value.get("name")}}
    if isinstance(value, dict) and value.get("type") == "allowed_tools":
        tools = [{"type": "function", "function": {"name": t.get("name")}} for t in value.get("tools") or ()]
        return {"type": "allowed_tools", "allowed_tools": {"mode": value.get("mode"), "tools": tools}}
    return value


def chat_body(body: dict[str, Any]) -> dict[str, Any]:
    """The chat request equivalent to a Responses `body`; raises `BadRequest` as OpenAI would."""
    unknown = sorted(set(body) - KNOWN)
    if unknown:
        raise BadRequest(f"Unknown parameter: '{unknown[0]}'.", unknown[0])
    limit = body.get("max_output_tokens")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise BadRequest("Invalid 'max_output_tokens': expected an integer.", "max_output_tokens")
        if limit < MIN_OUTPUT_TOKENS:
            raise BadRequest(
                "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= "
                f"{MIN_OUTPUT_TOKENS}, but got {limit} instead.",
                "max_output_tokens",
            )
    chat: dict[str, Any] = {"model": body.get("model"), "messages": _messages(body)}
    if limit is not None:
        chat["max_completion_tokens"] = limit
    tools = []
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and tool.get("type") == "function":
            function = {k: tool[k] for k in ("name", "description", "parameters") if k in tool}
            tools.append({"type": "function", "function": function})
    if tools:
        chat["tools"] = tools
        if body.get("tool_choice") is not None:
            chat["tool_choice"] = _tool_choice(body["tool_choice"])
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        spec = {"name": fmt.get("name"), "schema": fmt.get("schema")}
        chat["response_format"] = {"type": "json_schema", "json_schema": spec}
    return chat


def responses_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """The planner's chat usage in the Responses conventions (counts as reported, faults kept)."""
    details = usage["prompt_tokens_details"]
    return {
        "input_tokens": usage["prompt_tokens"],
        "input_tokens_details": {
            "cached_tokens": details["cached_tokens"],
            "cache_write_tokens": details.get("cache_write_tokens", 0),
        },
        "output_tokens": usage["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": usage["completion_tokens_details"]["reasoning_tokens"]},
        "total_tokens": usage["total_tokens"],
    }
