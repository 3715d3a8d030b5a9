"""OpenAI chat messages -> Anthropic's `system` blocks and alternating turns, purely.

Rules: shared/reference/providers.md, "Mapping OpenAI -> Anthropic requests". Content this API
cannot take raises `UnsupportedContent`. Not sent: empty text (Anthropic refuses it), a
message's `name` and an image's `detail` (hints with no Anthropic counterpart).
"""

from __future__ import annotations

import json
import re
from typing import Any

from nemorouter.providers.types import UnsupportedContent

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)((?:;[^,;]*)*),(.*)", re.DOTALL)


def conversation(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System blocks (every system/developer message, wherever it stands) and the turns,
    consecutive same-role turns merged (Anthropic alternates user and assistant)."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role, content, where = message.get("role"), message.get("content"), f"messages[{i}]"
        match role:
            case "system" | "developer":
                system.extend(_text_blocks(content, where, ("text",)))
            case "user":
                _append(turns, "user", _user_blocks(content, where))
            case "assistant":
                _append(turns, "assistant", _assistant_blocks(message, where))
            case "tool":
                _append(turns, "user", [_tool_result(message, where)])
            case _:
                raise UnsupportedContent(f"{where}: role {role!r} is not supported on Anthropic")
    return system, turns


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _text(text: Any, part: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    # Anthropic refuses empty text blocks; an empty string carries nothing to keep.
    if not isinstance(text, str) or not text:
        return []
    block: dict[str, Any] = {"type": "text", "text": text}
    if part is not None and part.get("cache_control"):
        block["cache_control"] = part["cache_control"]
    return [block]


def _text_blocks(content: Any, where: str, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return _text(content)
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in kinds:
            raise UnsupportedContent(f"{where}.content[{j}]: part type {kind!r} is not supported here")
        blocks += _text(part.get("text") if kind == "text" else part.get("refusal"), part)
    return blocks


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return _text(content)
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        at = f"{where}.content[{j}]"
        match kind:
            case "text":
                blocks += _text(part.get("text"), part)
            case "image_url":
                blocks.append(_image(part, at))
            case "file":
                blocks.append(_document(part, at))
            case "input_audio":
                raise UnsupportedContent(f"{at}: Anthropic does not take audio input")
            case _:
                raise UnsupportedContent(f"{at}: part type {kind!r} is not supported on Anthropic")
    return blocks


def _data_url(url: str, at: str) -> tuple[str, str]:
    match = _DATA_URL.fullmatch(url)
    if match is None or "base64" not in match.group(2).split(";"):
        raise UnsupportedContent(f"{at}: only base64 data URLs are supported")
    return match.group(1).lower(), match.group(3)


def _image(part: dict[str, Any], at: str) -> dict[str, Any]:
    spec = part.get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str):
        raise UnsupportedContent(f"{at}: image_url.url is required")
    if url.startswith("data:"):
        mime, data = _data_url(url, at)
        if mime not in IMAGE_TYPES:
            raise UnsupportedContent(f"{at}: Anthropic takes JPEG, PNG, GIF or WebP images, not {mime}")
        source: dict[str, Any] = {"type": "base64", "media_type": mime, "data": data}
    elif url.startswith(("https://", "http://")):
        source = {"type": "url", "url": url}
    else:
        raise UnsupportedContent(f"{at}: an image must be a data URL or an http(s) URL")
    block: dict[str, Any] = {"type": "image", "source": source}
    if part.get("cache_control"):
        block["cache_control"] = part["cache_control"]
    return block


def _document(part: dict[str, Any], at: str) -> dict[str, Any]:
    spec = part.get("file")
    data = spec.get("file_data") if isinstance(spec, dict) else None
    if not isinstance(data, str) or not data.startswith("data:"):
        raise UnsupportedContent(f"{at}: Anthropic needs the file inline as a PDF data URL (file_data)")
    mime, payload = _data_url(data, at)
    if mime != "application/pdf":
        raise UnsupportedContent(f"{at}: Anthropic takes PDF files only, not {mime}")
    block: dict[str, Any] = {
        "type": "document",
        "source": {"type": "base64", "media_type": mime, "data": payload},
    }
    if part.get("cache_control"):
        block["cache_control"] = part["cache_control"]
    return block


def _assistant_blocks(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    # Thinking blocks come back first, unchanged, as Anthropic requires in tool loops
    # (LiteLLM's `thinking_blocks` convention carries them through OpenAI clients).
    blocks: list[dict[str, Any]] = []
    for block in message.get("thinking_blocks") or []:
        if not isinstance(block, dict) or block.get("type") not in ("thinking", "redacted_thinking"):
            raise UnsupportedContent(f"{where}.thinking_blocks: only thinking and redacted_thinking blocks")
        blocks.append(dict(block))
    blocks += _text_blocks(message.get("content"), where, ("text", "refusal"))
    for k, call in enumerate(message.get("tool_calls") or []):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or call.get("type", "function") != "function":
            raise UnsupportedContent(f"{where}.tool_calls[{k}]: only function calls are supported")
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": fn.get("name"),
                "input": _arguments(fn, where, k),
            }
        )
    return blocks


def _arguments(fn: dict[str, Any], where: str, k: int) -> dict[str, Any]:
    raw = fn.get("arguments")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}  # a call without parameters; Anthropic wants an (empty) object
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        raise UnsupportedContent(f"{where}.tool_calls[{k}]: arguments are not valid JSON") from None
    if not isinstance(value, dict):
        raise UnsupportedContent(f"{where}.tool_calls[{k}]: arguments must be a JSON object on Anthropic")
    return value


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise UnsupportedContent(f"{where}: a tool message needs tool_call_id")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif content is not None:
        block["content"] = _text_blocks(content, where, ("text",))
    return block
