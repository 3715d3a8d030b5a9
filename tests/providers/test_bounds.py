"""The prompt bound counts every part a provider bills, never below what it can bill."""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
import pytest

from nemorouter.providers import anthropic, gemini
from nemorouter.providers.bounds import (
    ANTHROPIC_IMAGE_MAX,
    GEMINI_3_IMAGE_MAX,
    OPENAI_4O_MINI_IMAGE_MAX,
    OPENAI_IMAGE_MAX,
    PromptRules,
    chat_input_bound,
    prompt_rules,
)
from nemorouter.providers.types import Upstream

CEILING = 128_000
OPENAI = prompt_rules([("openai", "gpt-4o", CEILING)])
HI: dict[str, Any] = {"role": "user", "content": "Hi"}


def bound(*messages: dict[str, Any], rules: PromptRules = OPENAI, **extra: Any) -> int:
    return chat_input_bound({"messages": list(messages), **extra}, rules)


def test_legacy_function_call_arguments_are_counted() -> None:
    arguments = json.dumps({"blob": "x" * 800_000})
    legacy = {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": arguments}}
    rules = prompt_rules([("openai", "gpt-4o", 2_000_000)])
    assert bound(HI, legacy, rules=rules) >= len(arguments)


def test_every_text_part_is_counted() -> None:
    base = bound(HI)
    assert bound(HI, {"role": "assistant", "content": None, "refusal": "r" * 1000}) >= base + 1000
    assert (
        bound(HI, {"role": "assistant", "content": [{"type": "refusal", "refusal": "r" * 1000}]})
        >= base + 1000
    )
    assert bound({"role": "user", "name": "n" * 500, "content": "Hi"}) >= base + 500
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "a" * 700}}]
    assert bound(HI, {"role": "assistant", "content": None, "tool_calls": calls}) >= base + 700
    thinking = [{"type": "thinking", "thinking": "t" * 900, "signature": "s"}]
    assert bound(HI, {"role": "assistant", "content": "ok", "thinking_blocks": thinking}) >= base + 900


def test_tools_response_format_and_unknown_fields_count_with_framing() -> None:
    base = bound(HI)
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"description": "d" * 300}}}]
    assert bound(HI, tools=tools) >= base + len(orjson.dumps(tools)) + 346  # Anthropic's tool prompt
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"description": "d" * 300}}}
    assert bound(HI, response_format=fmt) >= base + len(orjson.dumps(fmt))
    # Fields we do not know pass through to Anthropic and vendors (e.g. a top-level `system`).
    assert bound(HI, system="s" * 5000) >= base + 5000
    assert bound(HI, temperature=0.5, stop=["x"]) == base


def test_reserialised_exponents_are_covered() -> None:
    # Anthropic parses tool arguments and sends them as JSON: 1e15 becomes 1000000000000000.0.
    arguments = json.dumps({"v": [1e15] * 1000}).replace("1000000000000000.0", "1e15")
    message = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    ]}  # fmt: skip
    body = {"messages": [HI, message]}
    up = Upstream(model="claude", base_url="http://sim", secret="k", max_output=100)
    upstream_bytes = len(anthropic.chat_request(body, up).body)
    assert chat_input_bound(body, prompt_rules([("anthropic", "claude", 10**6)])) >= upstream_bytes - 200
    gem = Upstream(model="gemini-3-flash", base_url="http://sim", secret="k", max_output=100)
    gemini_bytes = len(gemini.chat_request({**body, "tool_choice": None}, gem).body)
    assert chat_input_bound(body, prompt_rules([("gemini", "gemini-3-flash", 10**6)])) >= gemini_bytes - 200


def image(url: str = "https://example.com/a.png", detail: str = "high") -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url, "detail": detail}}]}


@pytest.mark.parametrize(
    ("kind", "model", "per_image"),
    [
        ("openai", "gpt-4o", OPENAI_IMAGE_MAX),
        ("azure-openai", "gpt-4.1", OPENAI_IMAGE_MAX),
        ("openai", "gpt-4o-mini", OPENAI_4O_MINI_IMAGE_MAX),
        ("anthropic", "claude-sonnet-4-5", ANTHROPIC_IMAGE_MAX),
        ("gemini", "gemini-3-flash-preview", GEMINI_3_IMAGE_MAX),
        ("bedrock", "anthropic.claude-haiku-4-5-20251001-v1:0", ANTHROPIC_IMAGE_MAX),
        ("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", ANTHROPIC_IMAGE_MAX),
    ],
)
def test_images_by_each_providers_worst_case(kind: str, model: str, per_image: int) -> None:
    rules = prompt_rules([(kind, model, 10**6)])
    assert rules.image == per_image
    assert bound(image(), image(), rules=rules) >= 2 * per_image
    # The rule's worst cases: gpt-4o-mini high detail, 8 tiles; Anthropic 2576 px squared / 750.
    assert OPENAI_4O_MINI_IMAGE_MAX == 48_169 and ANTHROPIC_IMAGE_MAX >= 1568 * 1568 // 750


def test_the_dearest_candidate_sets_the_image_rule() -> None:
    rules = prompt_rules([("anthropic", "claude", 200_000), ("openai", "gpt-4o-mini", 128_000)])
    assert rules == PromptRules(image=OPENAI_4O_MINI_IMAGE_MAX, ceiling=200_000)


def test_what_no_rule_bounds_counts_as_the_whole_context_window() -> None:
    tiny_pdf = "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.7 compressed").decode()
    pdf = {
        "role": "user",
        "content": [{"type": "file", "file": {"file_data": tiny_pdf, "filename": "a.pdf"}}],
    }
    assert bound(pdf) == CEILING  # a few bytes of Flate can hold any number of text tokens
    by_id = {"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}
    assert bound(by_id) == CEILING
    assert bound(image(detail="original")) == CEILING  # no published bound for `original`
    assert bound(image(), rules=prompt_rules([("gemini", "gemini-2.5-flash", CEILING)])) == CEILING
    assert bound(image(), rules=prompt_rules([("openai-compatible-x", "m", CEILING)])) == CEILING
    assert bound(image(), rules=prompt_rules([("bedrock", "amazon.nova-pro-v1:0", CEILING)])) == CEILING
    odd = {"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]}
    assert bound(odd) == CEILING  # media under a name we do not know
    replay = {"role": "assistant", "content": None, "audio": {"id": "audio_1"}}
    assert bound(HI, replay) == CEILING  # an earlier audio answer, billed as audio input


def test_inline_text_files_and_audio_by_decoded_size() -> None:
    text = base64.b64encode(b"t" * 30_000).decode()
    file = {
        "role": "user",
        "content": [{"type": "file", "file": {"file_data": f"data:text/plain;base64,{text}"}}],
    }
    assert 30_000 <= bound(file) < 31_000
    audio = base64.b64encode(b"\0" * 80_000).decode()
    clip = {
        "role": "user",
        "content": [{"type": "input_audio", "input_audio": {"data": audio, "format": "wav"}}],
    }
    # Gemini's 32 tokens a second at 256 bytes a second at the very least: 8 bytes a token.
    assert bound(clip) >= 80_000 // 8


def test_the_context_window_caps_the_bound() -> None:
    assert bound({"role": "user", "content": "x" * 500_000}) == CEILING
    unknown_part = {"role": "user", "content": [{"type": "mystery", "blob": "z" * 1000}]}
    assert bound(unknown_part) >= 1000
