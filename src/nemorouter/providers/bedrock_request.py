"""An OpenAI chat body -> a Bedrock Converse body (`POST /model/{modelId}/converse`), purely.

The turns are first made Anthropic-shaped by `anthropic_messages.conversation` (Converse has
the same rules: system apart, user and assistant alternating, tool results in user turns), then
each block is written as Converse's member (AWS API reference, "Message" / "ContentBlock"):
`text`, `image` (bytes only: Converse takes no http URL), `document` (PDF), `toolUse`,
`toolResult`, `reasoningContent`, and a `cachePoint` after a block the client marked with
`cache_control`. What Converse cannot take raises `UnsupportedContent` (a 400), never dropped.
"""

from __future__ import annotations

import json
import re
from typing import Any

from nemorouter.providers.anthropic_messages import conversation
from nemorouter.providers.openai_wire import GATEWAY_FIELDS
from nemorouter.providers.output_limit import OUTPUT_LIMIT_FIELDS, output_limit
from nemorouter.providers.types import UnsupportedContent

MAPPED = frozenset(
    {
        "model",
        "messages",
        *OUTPUT_LIMIT_FIELDS,
        "stop",
        "temperature",
        "top_p",
        "stream",
        "tools",
        "tool_choice",
    }
)
# Hints that change nothing written or billed, with no Converse field: not sent (Converse
# refuses unknown members). Usage is always reported, so `stream_options` has nothing to ask.
IGNORED = frozenset(
    {"stream_options", "store", "metadata", "seed", "prompt_cache_key", "user", "safety_identifier"}
)
# OpenAI features Converse cannot honour: refused unless left at their default.
DEFAULTS: dict[str, Any] = {
    "n": 1,
    "logprobs": False,
    "top_logprobs": 0,
    "frequency_penalty": 0,
    "presence_penalty": 0,
    "logit_bias": None,
    "audio": None,
    "modalities": ["text"],
    "prediction": None,
    "functions": None,
    "function_call": None,
    "web_search_options": None,
    "verbosity": None,
    "service_tier": "auto",
    "parallel_tool_calls": True,  # Converse has no switch for it
    "response_format": {"type": "text"},
    "reasoning_effort": None,  # model-specific on Bedrock (additionalModelRequestFields): not mapped
}
_SAME_AS_DEFAULT: dict[str, tuple[Any, ...]] = {
    "service_tier": ("auto", "default"),
    "reasoning_effort": ("none", "minimal"),
}
# Converse's ImageFormat and DocumentFormat enums (service-2.json); a data URL's media type -> it.
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}
_DOCUMENT_NAME = re.compile(r"[^A-Za-z0-9\s\-()\[\]]")  # DocumentBlock.name's allowed characters


def converse_body(body: dict[str, Any], default_max: int) -> dict[str, Any]:
    """The Converse request body for an OpenAI chat `body` (the model goes in the URL)."""
    _refuse_unsupported(body)
    try:
        system, turns = conversation(body.get("messages") or [])
    except UnsupportedContent as exc:  # the same rules as Anthropic's: named as Bedrock's
        raise UnsupportedContent(str(exc).replace("Anthropic", "Bedrock")) from None
    if not turns:
        raise UnsupportedContent("Bedrock needs at least one user or assistant message")
    out: dict[str, Any] = {"messages": [_turn(t, i) for i, t in enumerate(turns)]}
    if system:
        out["system"] = _blocks(system, "system")
    # The request's one limit (the hold's), always sent: Converse's inferenceConfig.maxTokens.
    config: dict[str, Any] = {"maxTokens": output_limit(body, default_max)}
    if body.get("temperature") is not None:
        config["temperature"] = _number(body["temperature"], "temperature")
    if body.get("top_p") is not None:
        config["topP"] = _number(body["top_p"], "top_p")
    stop = body.get("stop")
    if isinstance(stop, str) and stop:
        config["stopSequences"] = [stop]
    elif isinstance(stop, list) and stop:
        config["stopSequences"] = stop
    out["inferenceConfig"] = config
    tools = _tool_config(body, out["messages"])
    if tools is not None:
        out["toolConfig"] = tools
    return out


def _refuse_unsupported(body: dict[str, Any]) -> None:
    for name, value in body.items():
        if name in MAPPED or name in IGNORED or name in GATEWAY_FIELDS:
            continue
        if name not in DEFAULTS:
            raise UnsupportedContent(f"Bedrock Converse does not support `{name}`")
        if value is None or value == DEFAULTS[name] or value in ({}, []):
            continue
        if value in _SAME_AS_DEFAULT.get(name, ()):
            continue
        raise UnsupportedContent(f"Bedrock Converse does not support `{name}` = {json.dumps(value)[:60]}")


def _number(value: Any, name: str) -> int | float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise UnsupportedContent(f"`{name}` must be a number")
    return value


def _turn(turn: dict[str, Any], i: int) -> dict[str, Any]:
    return {"role": turn["role"], "content": _blocks(turn["content"], f"messages[{i}]")}


def _blocks(blocks: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        out.append(_block(block, f"{where}.content[{j}]", j))
        cache = block.get("cache_control")
        if cache:
            # Converse's prompt-caching checkpoint (CachePointBlock); `ttl` 1h as Anthropic's.
            point = {"type": "default"}
            if isinstance(cache, dict) and cache.get("ttl") == "1h":
                point["ttl"] = "1h"
            out.append({"cachePoint": point})
    return out


def _block(block: dict[str, Any], at: str, j: int) -> dict[str, Any]:
    kind = block.get("type")
    match kind:
        case "text":
            return {"text": block["text"]}
        case "image":
            source = block.get("source") or {}
            if source.get("type") != "base64":
                raise UnsupportedContent(f"{at}: Bedrock takes images as data URLs only (no http URL)")
            fmt = IMAGE_FORMATS.get(source.get("media_type", ""))
            if fmt is None:
                raise UnsupportedContent(f"{at}: Bedrock takes PNG, JPEG, GIF or WebP images")
            return {"image": {"format": fmt, "source": {"bytes": source["data"]}}}
        case "document":
            return {
                "document": {
                    "format": "pdf",
                    "name": f"document {j + 1}",
                    "source": {"bytes": block["source"]["data"]},
                }
            }
        case "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise UnsupportedContent(f"{at}: a tool call needs an id and a name")
            return {"toolUse": {"toolUseId": block["id"], "name": block["name"], "input": block["input"]}}
        case "tool_result":
            return {"toolResult": {"toolUseId": block["tool_use_id"], "content": _result_content(block)}}
        case "thinking":
            text = {"text": str(block.get("thinking") or "")}
            if block.get("signature"):
                text["signature"] = str(block["signature"])
            return {"reasoningContent": {"reasoningText": text}}
        case "redacted_thinking":
            return {"reasoningContent": {"redactedContent": str(block.get("data") or "")}}
        case _:
            raise UnsupportedContent(f"{at}: content of type {kind!r} is not supported on Bedrock")


def _result_content(block: dict[str, Any]) -> list[dict[str, Any]]:
    content = block.get("content")
    if isinstance(content, str):
        return [{"text": content}]
    if isinstance(content, list) and content:
        return [{"text": str(b.get("text") or "")} for b in content]
    return [{"text": ""}]


# ----------------------------------------------------------------------------- tools


def _tool_config(body: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    tools = [_tool(t, i) for i, t in enumerate(body.get("tools") or [])]
    choice = body.get("tool_choice")
    if choice == "none":
        # Converse has no "none": without tools the model calls none, but a conversation that
        # holds tool calls must still declare them (Converse's rule), so then it is refused.
        if any("toolUse" in b or "toolResult" in b for m in messages for b in m["content"]):
            raise UnsupportedContent(
                "Bedrock Converse has no `tool_choice: none` for a conversation with tool calls"
            )
        return None
    if not tools:
        if choice is not None:
            raise UnsupportedContent("`tool_choice` is set but `tools` is empty")
        return None
    config: dict[str, Any] = {"tools": tools}
    if choice is None or choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if not isinstance(name, str) or not name:
            raise UnsupportedContent("`tool_choice.function.name` is required")
        config["toolChoice"] = {"tool": {"name": name}}
    else:
        raise UnsupportedContent(f"`tool_choice` {json.dumps(choice)[:60]} is not supported on Bedrock")
    return config


def _tool(tool: Any, i: int) -> dict[str, Any]:
    fn = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(fn, dict) or tool.get("type", "function") != "function":
        raise UnsupportedContent(f"tools[{i}]: Bedrock takes only function tools")
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise UnsupportedContent(f"tools[{i}]: a function needs a name")
    spec: dict[str, Any] = {"name": name, "inputSchema": {"json": fn.get("parameters") or {"type": "object"}}}
    if fn.get("description"):
        spec["description"] = fn["description"]
    return {"toolSpec": spec}
