"""A reasoning item's `encrypted_content`: the thinking blocks an upstream asked to see again.

Anthropic's extended thinking must be echoed back, signature and all, in a tool loop; our chat
shape carries those blocks as `thinking_blocks` (LiteLLM's convention). The Responses API's way
to hand such state to a stateless client is the reasoning item's opaque `encrypted_content`,
which clients such as Codex send back unchanged with `store: false`. Ours is not encrypted (the
client may read its own model's thinking; Anthropic's signature guards it against edits): a
prefix, then the blocks as base64url JSON. Content we did not write (OpenAI's own) is not ours
to decode: its item rides on the canonical request as it came (`RESPONSES_REASONING`), for an
upstream that speaks the Responses API natively; every other upstream leaves it out.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

PREFIX = "nemo.thinking.v1:"


def encode_blocks(blocks: list[dict[str, Any]]) -> str:
    return PREFIX + base64.urlsafe_b64encode(orjson.dumps(blocks)).decode("ascii")


def decode_blocks(value: Any) -> list[dict[str, Any]]:
    """The thinking blocks inside `value`, or none when it is not ours (or is damaged)."""
    if not isinstance(value, str) or not value.startswith(PREFIX):
        return []
    try:
        blocks = orjson.loads(base64.urlsafe_b64decode(value[len(PREFIX) :].encode("ascii")))
    except (binascii.Error, ValueError):
        return []
    if not isinstance(blocks, list):
        return []
    return [b for b in blocks if isinstance(b, dict) and b.get("type") in ("thinking", "redacted_thinking")]
