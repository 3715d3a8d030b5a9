"""Upstream token counting, purely: the request to a provider's free count endpoint for an
OpenAI chat body, and the count read from its answer.

Anthropic (`POST /v1/messages/count_tokens`) and Gemini (`models/{m}:countTokens`) count a
prompt exactly as they will bill it; other formats have no such endpoint (None), and the
caller counts offline (providers/tokenizers.py) or takes the prompt bound.
"""

from __future__ import annotations

from typing import Any

import orjson

from nemorouter.providers import anthropic, gemini
from nemorouter.providers.types import Upstream, UpstreamRequest

__all__ = ["count_request", "read_count"]

# What Anthropic's count endpoint takes of a Messages body (it refuses the rest).
_ANTHROPIC_COUNTED = (
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "context_management",
    "output_config",
)


def count_request(kind: str, body: dict[str, Any], upstream: Upstream) -> UpstreamRequest | None:
    """The count request for `body` on an upstream of format `kind`, or None if it has none."""
    chat = {**body, "stream": False}
    if kind == "anthropic":
        made = anthropic.chat_request(chat, upstream)
        sent = orjson.loads(made.body)
        counted = {k: sent[k] for k in _ANTHROPIC_COUNTED if k in sent}
        url = made.url.removesuffix("/v1/messages") + "/v1/messages/count_tokens"
        return UpstreamRequest(url, made.headers, orjson.dumps(counted))
    if kind == "gemini":
        made = gemini.chat_request(chat, upstream)
        whole = orjson.loads(made.body)
        whole.pop("generationConfig", None)  # settings, not prompt; countTokens refuses some of them
        model = upstream.model if "/" in upstream.model else f"models/{upstream.model}"
        url = made.url.removesuffix(":generateContent") + ":countTokens"
        payload = {"generateContentRequest": {"model": model, **whole}}
        return UpstreamRequest(url, made.headers, orjson.dumps(payload))
    return None


def read_count(kind: str, body: bytes) -> int | None:
    """The count in a 200 answer of a count endpoint, or None if it has none."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    field = "input_tokens" if kind == "anthropic" else "totalTokens"
    value = data.get(field) if isinstance(data, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
