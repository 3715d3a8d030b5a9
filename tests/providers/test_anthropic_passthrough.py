"""Messages fields that ride to an Anthropic upstream as sent (providers/anthropic_passthrough.py):
only the named ones, never the output limit, beta names only as plain tokens."""

from __future__ import annotations

from typing import Any

import orjson

from nemorouter.providers import anthropic, gemini, openai_wire
from nemorouter.providers.canonical import ANTHROPIC_PASSTHROUGH
from nemorouter.providers.types import Upstream


def body(**native: Any) -> dict[str, Any]:
    return {
        "model": "anthropic/claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 2000,
        "reasoning_effort": "medium",
        ANTHROPIC_PASSTHROUGH: native,
    }


def upstream() -> Upstream:
    return Upstream("claude-sonnet-4-5", "http://upstream.invalid", "sk-secret", 64000)


def sent(request_body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    made = anthropic.chat_request(request_body, upstream())
    out: dict[str, Any] = orjson.loads(made.body)
    return out, made.headers


def test_adaptive_thinking_replaces_the_derived_effort() -> None:
    out, headers = sent(body(thinking={"type": "adaptive"}, context_management={"edits": []}))
    assert out["thinking"] == {"type": "adaptive"} and out["context_management"] == {"edits": []}
    assert out["max_tokens"] == 2000 and ANTHROPIC_PASSTHROUGH not in out
    assert "anthropic-beta" not in headers


def test_without_passthrough_the_effort_maps_as_before() -> None:
    plain = body()
    del plain[ANTHROPIC_PASSTHROUGH]
    out, _ = sent(plain)
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 1999}


def test_the_output_limit_and_unknown_fields_never_ride() -> None:
    out, _ = sent(body(max_tokens=10**6, stream=True, mcp_servers=[{"url": "x"}]))
    assert out["max_tokens"] == 2000
    assert "mcp_servers" not in out and "stream" not in out


def test_beta_names_go_in_the_header_only_when_plain() -> None:
    _, headers = sent(body(betas=["a-2025-01-01", "bad\r\nx-injected: 1", "a-2025-01-01", "b.1"]))
    assert headers["anthropic-beta"] == "a-2025-01-01,b.1"
    _, none = sent(body(betas=["bad value"]))
    assert "anthropic-beta" not in none


def test_other_formats_never_see_the_passthrough() -> None:
    request = body(thinking={"type": "adaptive"}, betas=["a"])
    to_openai = orjson.loads(openai_wire.chat_request(request, upstream()).body)
    assert ANTHROPIC_PASSTHROUGH not in to_openai and "thinking" not in to_openai
    to_gemini = orjson.loads(gemini.chat_request(request, upstream()).body)
    assert ANTHROPIC_PASSTHROUGH not in to_gemini and "thinking" not in to_gemini
