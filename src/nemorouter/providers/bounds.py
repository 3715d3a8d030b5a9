"""Safe upper bounds of the prompt tokens of an OpenAI-shaped request, for hold sizing.

For byte-level tokenizers every token covers at least one UTF-8 byte, so the bytes of all
prompt text plus a per-message allowance never undercount. Images and files get a
per-item maximum.
"""

from __future__ import annotations

from typing import Any

import orjson

MESSAGE_ALLOWANCE = 8
REQUEST_ALLOWANCE = 16
IMAGE_TOKENS_MAX = 2_000
FILE_TOKENS_MAX = 50_000
AUDIO_TOKENS_MAX = 50_000


def _text_bytes(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode())
    return 0


def _content_bound(content: Any, image_max: int) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return len(content.encode())
    total = 0
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind == "text" or kind == "refusal":
                total += _text_bytes(part.get("text") or part.get("refusal"))
            elif kind == "image_url":
                total += image_max
            elif kind == "input_audio":
                total += AUDIO_TOKENS_MAX
            elif kind == "file":
                total += FILE_TOKENS_MAX
            else:
                total += len(orjson.dumps(part))
    return total


def chat_input_bound(body: dict[str, Any], image_max: int = IMAGE_TOKENS_MAX) -> int:
    """Upper bound of prompt tokens for a chat request."""
    total = REQUEST_ALLOWANCE
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        total += MESSAGE_ALLOWANCE + _content_bound(message.get("content"), image_max)
        total += _text_bytes(message.get("name")) + _text_bytes(message.get("tool_call_id"))
        for call in message.get("tool_calls") or ():
            if isinstance(call, dict):
                fn = call.get("function") or {}
                total += MESSAGE_ALLOWANCE + _text_bytes(fn.get("name")) + _text_bytes(fn.get("arguments"))
    for field in ("tools", "functions", "response_format"):
        if body.get(field):
            total += len(orjson.dumps(body[field]))
    return total


def embeddings_input_bound(value: Any) -> int:
    """Upper bound of tokens for an embeddings `input` (strings, or token-id arrays)."""
    if isinstance(value, str):
        return len(value.encode()) + MESSAGE_ALLOWANCE
    total = 0
    if isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                total += len(item.encode()) + MESSAGE_ALLOWANCE
            elif isinstance(item, int):
                total += 1
            elif isinstance(item, list):
                total += len(item)
    return total
