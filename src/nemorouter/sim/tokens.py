"""Token counting for the simulator: a contract with the gateway.

The gateway bounds worst-case cost from byte sizes, so the counting rule is
deliberately simple and provable: a token is a run of word characters or one
punctuation character, hence every token is at least one UTF-8 byte and
``count_text_tokens(s) <= len(s.encode())`` always holds.
"""

from __future__ import annotations

import json
import re
from typing import Any

TOKEN_RE = re.compile(r"\w+|[^\w\s]")

PRIMING_TOKENS = 3
"""Tokens added once per chat request (OpenAI's reply priming)."""
MESSAGE_OVERHEAD_TOKENS = 3
"""Tokens added per chat message (role and separators)."""
IMAGE_PART_TOKENS = 85
"""Every ``image_url`` content part, whatever its size or detail."""
OTHER_PART_TOKENS = 200
"""Every non-text, non-image content part (``input_audio``, ``file``, unknown types)."""


def count_text_tokens(text: str) -> int:
    """Number of tokens in ``text``: runs of ``\\w`` plus single punctuation characters."""
    return len(TOKEN_RE.findall(text))


def _str_tokens(value: Any) -> int:
    return count_text_tokens(value) if isinstance(value, str) else 0


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return count_text_tokens(content)
    if not isinstance(content, list):
        return 0
    total = 0
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            total += _str_tokens(part.get("text"))
        elif kind == "refusal":
            total += _str_tokens(part.get("refusal"))
        elif kind == "image_url":
            total += IMAGE_PART_TOKENS
        else:
            total += OTHER_PART_TOKENS
    return total


def _function_tokens(function: Any) -> int:
    if not isinstance(function, dict):
        return 0
    return _str_tokens(function.get("name")) + _str_tokens(function.get("arguments"))


def count_message_tokens(message: Any) -> int:
    """Tokens of one chat message, its fixed overhead included."""
    if not isinstance(message, dict):
        return MESSAGE_OVERHEAD_TOKENS
    total = MESSAGE_OVERHEAD_TOKENS + _content_tokens(message.get("content"))
    total += _str_tokens(message.get("name")) + _str_tokens(message.get("tool_call_id"))
    tool_calls = message.get("tool_calls")
    if isinstance(tool_calls, list):
        for call in tool_calls:
            if isinstance(call, dict):
                total += _function_tokens(call.get("function"))
    total += _function_tokens(message.get("function_call"))
    return total


def count_tools_tokens(tools: Any) -> int:
    """Tokens of a non-empty ``tools`` list, as its JSON text."""
    if not isinstance(tools, list) or not tools:
        return 0
    return count_text_tokens(json.dumps(tools, ensure_ascii=False))


def count_chat_prompt_tokens(body: dict[str, Any]) -> int:
    """Prompt tokens of a Chat Completions request body."""
    messages = body.get("messages")
    total = PRIMING_TOKENS
    if isinstance(messages, list):
        total += sum(count_message_tokens(m) for m in messages)
    return total + count_tools_tokens(body.get("tools"))


def truncate_to_tokens(text: str, limit: int) -> str:
    """The prefix of ``text`` holding exactly its first ``limit`` tokens (all of it if fewer).

    Cutting right after a token's end keeps every earlier token intact, so
    ``count_text_tokens(result) == min(limit, count_text_tokens(text))``.
    """
    if limit <= 0:
        return ""
    for i, match in enumerate(TOKEN_RE.finditer(text), start=1):
        if i == limit:
            return text[: match.end()]
    return text


def token_pieces(text: str) -> list[str]:
    """Split ``text`` into stream pieces, one per token, each carrying its leading whitespace.

    ``"".join(token_pieces(t)) == t`` (trailing whitespace rides on the last piece), and
    for space-separated words the pieces are ``"w1", " w2", " w3"``: one piece per token.
    """
    pieces: list[str] = []
    start = 0
    for match in TOKEN_RE.finditer(text):
        pieces.append(text[start : match.end()])
        start = match.end()
    if start < len(text):
        if pieces:
            pieces[-1] += text[start:]
        else:
            pieces.append(text[start:])
    return pieces
