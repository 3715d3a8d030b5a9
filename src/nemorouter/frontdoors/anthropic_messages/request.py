"""The front door `POST /v1/messages`: an Anthropic Messages request -> an OpenAI chat body, purely.

The gateway serves every model through its one OpenAI-shaped flow (routing, holds, billing),
so an Anthropic request is translated in front of it and the answer translated back
(`reply`). Rules: shared/reference/providers.md section 2, read in reverse.
Whatever OpenAI's shape cannot carry raises `UnsupportedContent`; a body that is not a
well-formed Messages request raises `MalformedRequest`. Both are answered 400.

Choices where the two APIs differ:
- `max_tokens` (required) -> `max_tokens`; the adapters send it upstream as the request's one
  output limit, in the field each provider obeys (`providers.output_limit`).
- `thinking.budget_tokens` -> `reasoning_effort`: <= 2048 low, <= 8192 medium, above high
  (OpenAI's effort levels; the bands bracket Anthropic's common budgets 1024-2048, 4096-8192, 16k+).
- `top_k` is dropped: OpenAI has no equivalent, and Anthropic documents it as an advanced
  sampling hint ("you usually only need temperature"); refusing it would shut out clients that
  always send it, for a knob that never changes what is billed.
- `service_tier` ("auto" or "standard_only") is accepted and not forwarded: we never buy a
  priority tier, so both are already true.
- `cache_control` travels on the OpenAI part or tool it marks (LiteLLM's convention, which the
  Anthropic upstream adapter reads back); where OpenAI's shape has no place for it (on a
  tool_use or thinking block) it is dropped: a cache hint changes cost, never the answer.
- Thinking blocks echoed in assistant turns travel as the message's `thinking_blocks`
  (LiteLLM's convention, read by the Anthropic adapter); blocks without a signature were made
  by us from another vendor's reasoning text and mean nothing upstream, so they are left out.
- A base64 PDF `document` becomes an OpenAI `file` part; other document sources are refused.
"""

from __future__ import annotations

import json
from typing import Any

from nemorouter.frontdoors.anthropic_messages.params import (
    MalformedRequest,
    effort_for_budget,
    is_int,
    known,
    map_metadata,
    map_output_config,
    map_sampling,
    map_thinking,
    map_tools,
)
from nemorouter.providers.canonical import ANTHROPIC_PASSTHROUGH
from nemorouter.providers.types import UnsupportedContent

__all__ = ["MalformedRequest", "chat_body", "effort_for_budget"]

# Fields an Anthropic upstream gets as sent (providers/anthropic_passthrough.py); other upstreams
# get what they map to (`output_config`) or nothing (`context_management` edits a context they
# never keep; `cache_control` is a cache hint, which changes cost, never the answer).
PASSED = ("thinking", "output_config", "context_management", "cache_control")
OUTPUT_CONFIG = ("effort", "format")
# Fields of Anthropic's server-side tools (a code-execution container, remote MCP servers):
# refused like the server tools themselves (`params._tool`), since they run, and bill, work
# the answer's tokens do not show.
SERVER_SIDE = frozenset({"container", "mcp_servers"})
TOP_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "stream",
        "metadata",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        *PASSED,
    }
)
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
ERROR_MARK = "[tool error] "  # how `is_error` reads in the text of an OpenAI tool message


def chat_body(request: Any, ignored: list[str] | None = None) -> dict[str, Any]:
    """The OpenAI chat body for a Messages request; raises MalformedRequest or UnsupportedContent.

    A top-level field we do not know is left out and named in `ignored` (the door answers it in
    a header): newer clients send fields faster than any gateway learns them, and none can make
    an upstream write past `max_tokens` or bill what our usage does not show, since only the
    fields in TOP_FIELDS are ever sent on."""
    if not isinstance(request, dict):
        raise MalformedRequest("the request body must be a JSON object")
    unknown = sorted(k for k, v in request.items() if k not in TOP_FIELDS and v is not None)
    refused = [k for k in unknown if k in SERVER_SIDE]
    if refused:
        raise UnsupportedContent(
            f"unsupported field(s): {', '.join(refused)} (server-side tools are not run here)"
        )
    if unknown and ignored is not None:
        ignored.extend(unknown)
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise MalformedRequest("`model` is required and must be a non-empty string")
    max_tokens = request.get("max_tokens")
    if max_tokens is None:
        raise MalformedRequest("`max_tokens` is required")
    if not is_int(max_tokens) or max_tokens < 1:
        raise MalformedRequest("`max_tokens` must be a positive integer")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise MalformedRequest("`messages` must be a non-empty list")
    out: dict[str, Any] = {"model": model, "messages": _system(request.get("system"))}
    for i, message in enumerate(messages):
        out["messages"] += _message(message, f"messages[{i}]")
    out["max_tokens"] = max_tokens
    map_sampling(request, out)
    map_tools(request, out)
    thinking = request.get("thinking")
    map_thinking(thinking, out)
    off = isinstance(thinking, dict) and thinking.get("type") == "disabled"
    map_output_config(request.get("output_config"), off, out)
    map_metadata(request.get("metadata"), out)
    native = {name: request[name] for name in PASSED if request.get(name) is not None}
    if "output_config" in native:  # only what we read, so nothing unchecked rides along
        native["output_config"] = {k: v for k, v in native["output_config"].items() if k in OUTPUT_CONFIG}
    if native:
        out[ANTHROPIC_PASSTHROUGH] = native
    tier = request.get("service_tier")
    if tier is not None and tier not in ("auto", "standard_only"):
        raise MalformedRequest("`service_tier` must be auto or standard_only")
    stream = request.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise MalformedRequest("`stream` must be a boolean")
    if stream:
        out["stream"] = True
    return out


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """Content as a list of block objects (a string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
        raise MalformedRequest(f"{where}: content must be a string or a list of content blocks")
    return content


def _text_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    # `citations` on input text is only meaningful to Anthropic's citation feature: an empty
    # list (what the SDK echoes back) carries nothing.
    known(block, frozenset({"type", "text", "cache_control", "citations"}), where)
    if block.get("citations"):
        raise UnsupportedContent(f"{where}: text citations cannot be carried")
    text = block.get("text")
    if not isinstance(text, str):
        raise MalformedRequest(f"{where}: a text block needs a string `text`")
    part: dict[str, Any] = {"type": "text", "text": text}
    if block.get("cache_control"):
        part["cache_control"] = block["cache_control"]
    return part


def _collapse(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """One plain text part is sent as a string: the shape every OpenAI-wire vendor takes."""
    if len(parts) == 1 and parts[0]["type"] == "text" and "cache_control" not in parts[0]:
        return str(parts[0]["text"])
    return parts


def _system(system: Any) -> list[dict[str, Any]]:
    if system is None or system == "" or system == []:
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}]
    blocks = _blocks(system, "system")
    parts = []
    for j, block in enumerate(blocks):
        if block.get("type") != "text":
            raise MalformedRequest(f"system[{j}]: system blocks must be text")
        parts.append(_text_part(block, f"system[{j}]"))
    if all("cache_control" not in p for p in parts):
        return [{"role": "system", "content": "".join(p["text"] for p in parts)}]
    return [{"role": "system", "content": parts}]


def _message(message: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(message, dict):
        raise MalformedRequest(f"{where} must be an object")
    known(message, frozenset({"role", "content"}), where)
    role, content = message.get("role"), message.get("content")
    match role:
        case "user":
            return _user(content, where)
        case "assistant":
            return [_assistant(_blocks(content, where), where)]
        case "system":  # newer API versions allow system turns in the list
            return [{"role": "system", "content": _collapse(_texts(_blocks(content, where), where))}]
        case _:
            raise MalformedRequest(f"{where}.role must be user or assistant")


def _texts(blocks: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    parts = []
    for j, block in enumerate(blocks):
        if block.get("type") != "text":
            raise UnsupportedContent(f"{where}.content[{j}]: only text blocks are supported here")
        parts.append(_text_part(block, f"{where}.content[{j}]"))
    return parts


def _user(content: Any, where: str) -> list[dict[str, Any]]:
    """Tool results become `tool` messages, which OpenAI wants right after the assistant's calls
    (Anthropic puts tool_result blocks first in the user turn for the same reason)."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(_blocks(content, where)):
        at = f"{where}.content[{j}]"
        match block.get("type"):
            case "text":
                parts.append(_text_part(block, at))
            case "image":
                parts.append(_image(block, at))
            case "document":
                parts.append(_document(block, at))
            case "tool_result":
                results.append(_tool_result(block, at))
            case kind:
                raise UnsupportedContent(f"{at}: content block {kind!r} is not supported in a user turn")
    if parts or not results:
        results.append({"role": "user", "content": _collapse(parts) if parts else ""})
    return results


def _image(block: dict[str, Any], at: str) -> dict[str, Any]:
    known(block, frozenset({"type", "source", "cache_control"}), at)
    source = block.get("source")
    source = source if isinstance(source, dict) else {}
    url = source.get("url")
    match source.get("type"):
        case "base64":
            media, data = source.get("media_type"), source.get("data")
            if media not in IMAGE_TYPES or not isinstance(data, str):
                raise MalformedRequest(
                    f"{at}: a base64 image needs media_type (jpeg, png, gif, webp) and data"
                )
            url = f"data:{media};base64,{data}"
        case "url":
            if not isinstance(url, str) or not url:
                raise MalformedRequest(f"{at}: a url image needs a `url`")
        case kind:
            raise UnsupportedContent(f"{at}: image source {kind!r} is not supported (use base64 or url)")
    part: dict[str, Any] = {"type": "image_url", "image_url": {"url": url}}
    if block.get("cache_control"):
        part["cache_control"] = block["cache_control"]
    return part


def _document(block: dict[str, Any], at: str) -> dict[str, Any]:
    known(block, frozenset({"type", "source", "cache_control", "title"}), at)
    source = block.get("source")
    if not (
        isinstance(source, dict)
        and source.get("type") == "base64"
        and source.get("media_type") == "application/pdf"
        and isinstance(source.get("data"), str)
    ):
        raise UnsupportedContent(f"{at}: only base64 PDF documents can be carried")
    title = block.get("title")
    name = title if isinstance(title, str) and title else "document.pdf"
    part: dict[str, Any] = {
        "type": "file",
        "file": {"filename": name, "file_data": f"data:application/pdf;base64,{source['data']}"},
    }
    if block.get("cache_control"):
        part["cache_control"] = block["cache_control"]
    return part


def _tool_result(block: dict[str, Any], at: str) -> dict[str, Any]:
    known(block, frozenset({"type", "tool_use_id", "content", "is_error", "cache_control"}), at)
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise MalformedRequest(f"{at}: a tool_result needs `tool_use_id`")
    content = block.get("content")
    if content is None:
        parts: list[dict[str, Any]] = []
    else:
        blocks = _blocks(content, at)
        if any(b.get("type") != "text" for b in blocks):
            raise UnsupportedContent(f"{at}: OpenAI tool messages carry text only (no images or documents)")
        parts = [_text_part(b, f"{at}.content[{k}]") for k, b in enumerate(blocks)]
    if block.get("is_error"):
        parts = parts or [{"type": "text", "text": ""}]
        parts[0] = {**parts[0], "text": ERROR_MARK + str(parts[0]["text"])}
    if parts and block.get("cache_control"):
        parts[-1] = {**parts[-1], "cache_control": block["cache_control"]}
    body: str | list[dict[str, Any]] = "".join(p["text"] for p in parts)
    if any("cache_control" in p for p in parts):
        body = parts
    return {"role": "tool", "tool_call_id": call_id, "content": body}


def _assistant(blocks: list[dict[str, Any]], where: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        at = f"{where}.content[{j}]"
        match block.get("type"):
            case "text":
                part = _text_part(block, at)
                if part["text"] or "cache_control" in part:
                    parts.append(part)
            case "tool_use":
                calls.append(_tool_call(block, at))
            case "thinking":
                known(block, frozenset({"type", "thinking", "signature", "cache_control"}), at)
                if block.get("signature"):
                    thinking.append(
                        {
                            "type": "thinking",
                            "thinking": block.get("thinking") or "",
                            "signature": block["signature"],
                        }
                    )
            case "redacted_thinking":
                known(block, frozenset({"type", "data", "cache_control"}), at)
                thinking.append({"type": "redacted_thinking", "data": block.get("data") or ""})
            case kind:
                raise UnsupportedContent(
                    f"{at}: content block {kind!r} is not supported in an assistant turn"
                )
    message: dict[str, Any] = {"role": "assistant", "content": _collapse(parts) if parts else None}
    if calls:
        message["tool_calls"] = calls
    elif not parts:
        message["content"] = ""
    if thinking:
        message["thinking_blocks"] = thinking
    return message


def _tool_call(block: dict[str, Any], at: str) -> dict[str, Any]:
    known(block, frozenset({"type", "id", "name", "input", "cache_control"}), at)
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input")
    if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(arguments, dict):
        raise MalformedRequest(f"{at}: a tool_use block needs `id`, `name` and an object `input`")
    text = json.dumps(arguments, ensure_ascii=False)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": text}}
