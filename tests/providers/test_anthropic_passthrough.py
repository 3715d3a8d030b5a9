"""Messages fields that ride to an Anthropic upstream as sent (providers/anthropic_passthrough.py):
only the named ones, never the output limit, beta names only when known to be price-neutral."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from nemorouter.providers import anthropic, anthropic_passthrough, gemini, openai_wire
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
    plain = ["interleaved-thinking-2025-05-14", "bad\r\nx-injected: 1", "interleaved-thinking-2025-05-14"]
    _, headers = sent(body(betas=[*plain, "effort-2025-11-24"]))
    assert headers["anthropic-beta"] == "interleaved-thinking-2025-05-14,effort-2025-11-24"
    _, none = sent(body(betas=["bad value", "interleaved-thinking-2025-05-14 x"]))
    assert "anthropic-beta" not in none


@pytest.mark.parametrize(
    "beta",
    [
        "context-1m-2025-08-07",  # long prompts at the long-context rates
        "fast-mode-2026-02-01",  # six times the list price
        "advisor-tool-2026-03-01",  # another model's tokens
        "code-execution-2025-08-25",  # billed by the container hour
        "web-fetch-2025-09-10",
        "files-api-2025-04-14",  # a file's tokens are not in the hold's prompt bound
        "oauth-2025-04-20",
        "a-2025-01-01",  # unknown: not known to be neutral
        "effort-2025-11-24-2025-01-01",  # a neutral family's name inside another one
        "interleaved-thinking",  # a family without its date
        "EFFORT-2025-11-24",
    ],
)
def test_betas_that_may_change_the_price_never_reach_anthropic(beta: str) -> None:
    assert not anthropic_passthrough.allowed_beta(beta)
    _, headers = sent(body(betas=[beta, "fine-grained-tool-streaming-2025-05-14"]))
    assert headers["anthropic-beta"] == "fine-grained-tool-streaming-2025-05-14"


def test_claude_codes_own_betas_are_price_neutral_but_advanced_tool_use() -> None:
    """What Claude Code 2.1.328 sends with an API key (captured at the simulator), and what other
    current clients send: all pass but advanced-tool-use (tool search, programmatic tool calling,
    which runs billed code execution)."""
    sent_by_claude_code = [
        "claude-code-20250219",
        "interleaved-thinking-2025-05-14",
        "context-management-2025-06-27",
        "thinking-token-count-2026-05-13",
    ]
    others = [
        "prompt-caching-scope-2026-01-05",
        "effort-2025-11-24",
        "extended-cache-ttl-2025-04-11",
        "fine-grained-tool-streaming-2025-05-14",
        "structured-outputs-2025-11-13",
        "token-efficient-tools-2025-02-19",
    ]
    assert all(anthropic_passthrough.allowed_beta(b) for b in sent_by_claude_code + others)
    assert not anthropic_passthrough.allowed_beta("advanced-tool-use-2025-11-20")


def test_other_formats_never_see_the_passthrough() -> None:
    request = body(thinking={"type": "adaptive"}, betas=["effort-2025-11-24"])
    to_openai = orjson.loads(openai_wire.chat_request(request, upstream()).body)
    assert ANTHROPIC_PASSTHROUGH not in to_openai and "thinking" not in to_openai
    to_gemini = orjson.loads(gemini.chat_request(request, upstream()).body)
    assert ANTHROPIC_PASSTHROUGH not in to_gemini and "thinking" not in to_gemini
