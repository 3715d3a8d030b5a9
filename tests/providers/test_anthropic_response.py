"""Anthropic answers -> OpenAI chat bodies, normalized usage (priced exactly) and classified errors."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import orjson
import pytest

from nemorouter.money import Prices, Usage, cost_of, parse_per_million
from nemorouter.providers.anthropic import ADAPTER, parse_usage
from nemorouter.providers.types import Failure, FailureKind

USAGE = {"input_tokens": 12, "output_tokens": 6}


def message(*content: dict[str, Any], stop: str | None = "end_turn", usage: Any = USAGE) -> dict[str, Any]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": list(content),
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }


def test_text_blocks_join_into_content() -> None:
    done = ADAPTER.chat_response(
        message({"type": "text", "text": "Hello"}, {"type": "text", "text": ", world"})
    )
    assert done.body == {
        "id": "msg_01",
        "object": "chat.completion",
        "created": 0,
        "model": "claude-sonnet-4-5",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello, world", "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 6,
            "total_tokens": 18,
            "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }
    assert done.usage == Usage(prompt_tokens=12, completion_tokens=6)
    assert done.raw_usage == USAGE and done.finish_reason == "stop"


def test_tool_use_becomes_tool_calls() -> None:
    done = ADAPTER.chat_response(
        message(
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
            stop="tool_use",
        )
    )
    msg = done.body["choices"][0]["message"]
    assert msg["content"] == "Checking." and done.finish_reason == "tool_calls"
    assert msg["tool_calls"] == [
        {
            "id": "toolu_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {"id": "toolu_2", "type": "function", "function": {"name": "now", "arguments": "{}"}},
    ]
    only_call = ADAPTER.chat_response(
        message({"type": "tool_use", "id": "t", "name": "now", "input": {}}, stop="tool_use")
    )
    assert only_call.body["choices"][0]["message"]["content"] is None


def test_thinking_stays_out_of_content() -> None:
    done = ADAPTER.chat_response(
        message(
            {"type": "thinking", "thinking": "Let me think.", "signature": "c2ln"},
            {"type": "redacted_thinking", "data": "b3BhcXVl"},
            {"type": "text", "text": "42"},
        )
    )
    msg = done.body["choices"][0]["message"]
    assert msg["content"] == "42" and msg["reasoning_content"] == "Let me think."
    assert msg["thinking_blocks"] == [
        {"type": "thinking", "thinking": "Let me think.", "signature": "c2ln"},
        {"type": "redacted_thinking", "data": "b3BhcXVl"},
    ]


def test_forced_json_tool_becomes_the_content() -> None:
    done = ADAPTER.chat_response(
        message(
            {"type": "tool_use", "id": "t", "name": "json_output", "input": {"answer": "yes"}},
            stop="tool_use",
        )
    )
    msg = done.body["choices"][0]["message"]
    assert msg == {"role": "assistant", "content": '{"answer": "yes"}', "refusal": None}
    assert done.finish_reason == "stop"


def test_unknown_blocks_never_lose_the_charge() -> None:
    done = ADAPTER.chat_response(
        message({"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}})
    )
    assert done.body["choices"][0]["message"]["content"] == "" and done.usage == Usage(12, 6)


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "length"),
        ("model_context_window_exceeded", "length"),
        ("some_future_reason", "some_future_reason"),
        (None, None),
    ],
)
def test_stop_reasons(stop: str | None, finish: str | None) -> None:
    done = ADAPTER.chat_response(message({"type": "text", "text": "x"}, stop=stop))
    assert done.finish_reason == finish and done.body["choices"][0]["finish_reason"] == finish


def test_a_200_without_a_message_is_unreadable() -> None:
    for data in ({"type": "error"}, [], {"type": "message", "content": None}):
        with pytest.raises(ValueError):
            ADAPTER.chat_response(data)
    assert ADAPTER.chat_response(message({"type": "text", "text": "x"}, usage=None)).usage is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"input_tokens": 10, "output_tokens": 5}, Usage(10, 5)),
        (
            {"input_tokens": 10, "cache_read_input_tokens": 90, "output_tokens": 5},
            Usage(prompt_tokens=100, completion_tokens=5, cached_tokens=90),
        ),
        (  # no TTL breakdown: every write is a 5-minute write
            {"input_tokens": 10, "cache_creation_input_tokens": 40, "output_tokens": 5},
            Usage(prompt_tokens=50, completion_tokens=5, cache_write_tokens=40),
        ),
        (
            {
                "input_tokens": 10,
                "cache_creation_input_tokens": 40,
                "cache_creation": {"ephemeral_5m_input_tokens": 25, "ephemeral_1h_input_tokens": 15},
                "output_tokens": 5,
            },
            Usage(prompt_tokens=50, completion_tokens=5, cache_write_tokens=40, cache_write_1h_tokens=15),
        ),
        (  # a breakdown without the total still counts every write
            {
                "input_tokens": 1,
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 15},
            },
            Usage(prompt_tokens=16, cache_write_tokens=15, cache_write_1h_tokens=15),
        ),
        (
            {
                "input_tokens": 7,
                "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 30,
                "cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 20},
                "output_tokens": 50,
                "output_tokens_details": {"thinking_tokens": 20},
                "service_tier": "standard",
            },
            Usage(
                prompt_tokens=137,
                completion_tokens=50,
                cached_tokens=100,
                cache_write_tokens=30,
                cache_write_1h_tokens=20,
                reasoning_tokens=20,
            ),
        ),
        ({"input_tokens": 3, "cache_read_input_tokens": None, "cache_creation_input_tokens": None}, Usage(3)),
    ],
)
def test_every_usage_category_normalizes_exactly(raw: dict[str, Any], expected: Usage) -> None:
    assert parse_usage(raw) == expected


def test_normalized_usage_prices_as_anthropic_bills() -> None:
    """providers.md section 4: input x in + 5m writes x 1.25 in + 1h writes x 2 in + reads x 0.1 in + out."""
    sonnet = Prices(
        input=parse_per_million("3"),
        output=parse_per_million("15"),
        cache_read=parse_per_million("0.3"),
        cache_write=parse_per_million("3.75"),
        cache_write_1h=parse_per_million("6"),
    )
    raw = {
        "input_tokens": 1000,
        "cache_read_input_tokens": 20000,
        "cache_creation_input_tokens": 3000,
        "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
        "output_tokens": 500,
    }
    usd = (1000 * D("3") + 20000 * D("0.3") + 1000 * D("3.75") + 2000 * D("6") + 500 * D("15")) / 10**6
    assert cost_of(parse_usage(raw), sonnet).total == usd * 10**12


def _error(kind: str, message: str = "boom", **extra: Any) -> bytes:
    return orjson.dumps(
        {"type": "error", "error": {"type": kind, "message": message, **extra}, "request_id": "r"}
    )


@pytest.mark.parametrize(
    ("status", "kind", "expected"),
    [
        (400, "invalid_request_error", ("invalid", False)),
        (401, "authentication_error", ("auth", True)),
        (403, "permission_error", ("forbidden", False)),  # the request's refusal, not the key's
        (404, "not_found_error", ("invalid", False)),
        (413, "request_too_large", ("invalid", False)),
        (402, "billing_error", ("server", True)),
        (429, "rate_limit_error", ("rate_limited", True)),
        (500, "api_error", ("server", True)),
        (503, "api_error", ("server", True)),
        (504, "timeout_error", ("server", True)),
        (529, "overloaded_error", ("overloaded", True)),
        (422, "invalid_request_error", ("invalid", False)),
    ],
)
def test_errors_are_classified_by_status(status: int, kind: str, expected: tuple[str, bool]) -> None:
    failure = ADAPTER.error_from_response(status, _error(kind, "the message"), None)
    assert (failure.kind, failure.retryable) == expected
    assert failure.status == status and failure.message == "the message"
    assert failure.key_rejected is (expected[0] == "auth")


def test_retry_after_is_kept_and_spend_limits_are_final() -> None:
    limited = ADAPTER.error_from_response(429, _error("rate_limit_error"), 12)
    assert limited == Failure(FailureKind.RATE_LIMITED, 429, "boom", retryable=True, retry_after=12)
    assert ADAPTER.error_from_response(529, _error("overloaded_error"), 3).retry_after == 3
    spend = _error("rate_limit_error", details={"error_code": "enforced_spend_limit_reached"})
    assert ADAPTER.error_from_response(429, spend, 60).retryable is False


def test_unreadable_error_bodies_still_classify() -> None:
    failure = ADAPTER.error_from_response(502, b"<html>bad gateway</html>", None)
    assert (failure.kind, failure.retryable, failure.message) == ("server", True, "upstream error 502")
    assert ADAPTER.error_from_response(400, b"", None).kind == "invalid"
