"""The prompt a client that hangs up still pays for: the providers' early counts (Anthropic's
message_start, Gemini's running usageMetadata) and the offline tokenizer of OpenAI's families."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from nemorouter.money import Usage
from nemorouter.providers.anthropic import ADAPTER as ANTHROPIC
from nemorouter.providers.gemini import stream_decoder as gemini_decoder
from nemorouter.providers.tokenizers import chat_texts, count_chat_prompt, encoding_for
from nemorouter.providers.types import SseEvent

HELLO = "Hello, world! This is a test of the tokenizer."  # 12 tokens in o200k_base


def user(content: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}]}


# -- the tokenizer --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "encoding"),
    [
        (["openai/gpt-4o-mini", "gpt-4o-mini"], "o200k_base"),
        (["azure/my-deployment", "my-deployment"], None),
        (["acme/chat", "gpt-4.1-2025-04-14"], "o200k_base"),
        (["openai/o3-mini"], "o200k_base"),
        (["openai/gpt-5"], "o200k_base"),
        (["openai/gpt-4-turbo"], "cl100k_base"),
        (["openai/gpt-3.5-turbo"], "cl100k_base"),
        (["anthropic/claude-sonnet-4-5", "claude-sonnet-4-5"], None),
        (["google/gemini-2.5-flash"], None),
        (["meta/llama-3.1-8b"], None),
    ],
)
def test_the_family_decides_the_encoding(names: list[str], encoding: str | None) -> None:
    assert encoding_for(names) == encoding


def test_a_chat_prompt_is_counted_the_cookbook_way() -> None:
    # 3 to prime the reply + 3 for the message + "user" (1) + the text (12): OpenAI's own count.
    assert count_chat_prompt(user(HELLO), ["gpt-4o"], 10_000) == 19
    # Text parts count as their text; a name adds itself and one token.
    parts = {"messages": [{"role": "user", "name": "bob", "content": [{"type": "text", "text": HELLO}]}]}
    assert count_chat_prompt(parts, ["gpt-4o"], 10_000) == 19 + 1 + 1
    # cl100k: "Hello, world!" is 4 tokens.
    assert count_chat_prompt(user("Hello, world!"), ["gpt-4"], 10_000) == 3 + 3 + 1 + 4


def test_tool_calls_tools_and_legacy_function_calls_are_counted() -> None:
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    body = {
        "messages": [
            {"role": "user", "content": HELLO},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "21C"},
            {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "x" * 400}},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
    }
    found = chat_texts(body)
    assert found is not None
    texts, overhead = found
    assert overhead == 3 + 4 * 3
    assert '{"city":"Paris"}' in texts and "x" * 400 in texts and "c1" in texts
    assert any("get_weather" in t and "parameters" in t for t in texts)
    counted = count_chat_prompt(body, ["gpt-4o"], 100_000)
    assert counted is not None and counted > count_chat_prompt(user(HELLO), ["gpt-4o"], 100_000) + 50


@pytest.mark.parametrize(
    "body",
    [
        user([{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]),
        user([{"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}}]),
        user([{"type": "file", "file": {"file_id": "f"}}]),
        user([{"type": "text", "text": 5}]),
        user(42),
        {"messages": "hi"},
        {"messages": ["hi"]},
        {"messages": [{"role": "assistant", "tool_calls": 7}]},
        {"messages": [{"role": "assistant", "tool_calls": ["x"]}]},
    ],
)
def test_what_a_text_tokenizer_cannot_count_is_none(body: dict[str, Any]) -> None:
    """The caller then charges the prompt bound: never an undercount, never a crash."""
    assert count_chat_prompt(body, ["gpt-4o"], 10_000) is None


def test_no_offline_tokenizer_for_other_families() -> None:
    assert count_chat_prompt(user(HELLO), ["anthropic/claude-sonnet-4-5"], 10_000) is None


def test_the_count_stops_at_the_bound() -> None:
    """Never more than the caller's bound (the hold's), and no tokenizing past it."""
    assert count_chat_prompt(user(HELLO), ["gpt-4o"], 10) == 10
    assert count_chat_prompt(user("word " * 100_000), ["gpt-4o"], 500) == 500


# -- the providers' early counts --------------------------------------------------------------


def test_anthropic_message_start_reports_the_prompt_with_its_cache() -> None:
    decode = ANTHROPIC.stream_decoder()
    usage = {
        "input_tokens": 20,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 7,
        "cache_creation": {"ephemeral_5m_input_tokens": 40, "ephemeral_1h_input_tokens": 60},
        "output_tokens": 1,  # a placeholder: not output
    }
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [],
        "usage": usage,
    }
    step = decode(SseEvent("message_start", orjson.dumps({"type": "message_start", "message": message})))
    assert step.usage is None  # not the final report
    assert step.prompt_usage == Usage(
        prompt_tokens=127, cached_tokens=7, cache_write_tokens=100, cache_write_1h_tokens=60
    )
    assert step.raw_prompt_usage is not None and "output_tokens" not in step.raw_prompt_usage


def test_anthropic_message_start_without_usage_reports_no_prompt() -> None:
    decode = ANTHROPIC.stream_decoder()
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": []}
    step = decode(SseEvent("message_start", orjson.dumps({"type": "message_start", "message": message})))
    assert step.prompt_usage is None


def test_gemini_running_usage_reports_the_prompt_from_the_first_chunk() -> None:
    decode = gemini_decoder()
    first = {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}],
        "usageMetadata": {
            "promptTokenCount": 90,
            "cachedContentTokenCount": 30,
            "candidatesTokenCount": 1,
            "totalTokenCount": 91,
        },
    }
    step = decode(SseEvent(None, orjson.dumps(first)))
    assert step.usage is None  # reported only once a candidate has finished
    assert step.prompt_usage == Usage(prompt_tokens=90, cached_tokens=30)
    bare = {"candidates": [{"content": {"role": "model", "parts": [{"text": "lo"}]}, "index": 0}]}
    assert decode(SseEvent(None, orjson.dumps(bare))).prompt_usage is None
