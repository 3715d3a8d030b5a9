"""The Gemini adapter's answer side, from hand-written Gemini bodies and events: content, tool calls,
finish reasons, every usage category, blocked prompts, streams and each error class."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from nemorouter.money import Usage
from nemorouter.providers.gemini import error_from_response, stream_decoder
from nemorouter.providers.gemini_response import chat_response, parse_usage
from nemorouter.providers.types import SseEvent, StreamStep


def candidate(parts: list[dict[str, Any]], finish: str | None = "STOP", index: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": index}
    if finish:
        out["finishReason"] = finish
    return out


USAGE = {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15}


def test_text_thoughts_and_body_shape() -> None:
    data = {
        "candidates": [
            candidate([{"text": "Let me think", "thought": True}, {"text": "Hello"}, {"text": ", world"}])
        ],
        "usageMetadata": USAGE,
        "modelVersion": "gemini-2.5-flash",
        "responseId": "abc",
    }
    done = chat_response(data)
    assert done.finish_reason == "stop"
    assert done.body["object"] == "chat.completion" and done.body["id"] == "abc"
    message = done.body["choices"][0]["message"]
    assert message == {
        "role": "assistant",
        "content": "Hello, world",
        "refusal": None,
        "reasoning_content": "Let me think",
    }
    assert done.usage == Usage(prompt_tokens=10, completion_tokens=5)
    assert done.raw_usage == USAGE
    assert done.body["usage"]["total_tokens"] == 15


def test_function_calls_get_ids_and_tool_calls_finish_set_by_us() -> None:
    data = {
        "candidates": [
            candidate(
                [
                    {"text": "Checking."},
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                        "thoughtSignature": "c2ln",
                    },
                    {"functionCall": {"name": "now", "id": "g-1"}},
                ]
            )
        ],
        "usageMetadata": USAGE,
    }
    done = chat_response(data)
    choice = done.body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" == done.finish_reason  # Gemini said STOP
    assert choice["message"]["content"] == "Checking."
    assert choice["message"]["tool_calls"] == [
        {
            "id": "call_0_get_weather__thought__c2ln",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        },
        {"id": "g-1", "type": "function", "function": {"name": "now", "arguments": "{}"}},
    ]
    only_call = chat_response({"candidates": [candidate([{"functionCall": {"name": "f", "args": {}}}])]})
    assert only_call.body["choices"][0]["message"]["content"] is None
    assert only_call.usage is None


@pytest.mark.parametrize(
    ("gemini", "openai"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("CONTINUATION", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("FINISH_REASON_UNSPECIFIED", "stop"),
        ("SOMETHING_NEW", "stop"),
    ],
)
def test_finish_reasons(gemini: str, openai: str) -> None:
    assert chat_response({"candidates": [candidate([{"text": "x"}], gemini)]}).finish_reason == openai


@pytest.mark.parametrize(
    ("gemini", "openai"),
    [("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("UNEXPECTED_TOOL_CALL", "tool_calls")],
)
def test_a_call_is_tool_calls_unless_cut_or_filtered(gemini: str, openai: str) -> None:
    data = {"candidates": [candidate([{"functionCall": {"name": "f", "args": {}}}], gemini)]}
    assert chat_response(data).finish_reason == openai


def test_several_candidates_become_several_choices() -> None:
    data = {
        "candidates": [candidate([{"text": "b"}], "MAX_TOKENS", 1), candidate([{"text": "a"}], "STOP", 0)]
    }
    choices = chat_response(data).body["choices"]
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in choices] == [
        (0, "a", "stop"),
        (1, "b", "length"),
    ]


def test_blocked_prompt_is_content_filter_with_empty_content() -> None:
    data = {
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
    }
    done = chat_response(data)
    assert done.finish_reason == "content_filter"
    assert done.body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "", "refusal": None},
            "finish_reason": "content_filter",
            "logprobs": None,
        }
    ]
    assert done.usage == Usage(prompt_tokens=8)


def test_not_a_generate_content_response_is_a_protocol_error() -> None:
    with pytest.raises(ValueError):
        chat_response({"something": "else"})
    with pytest.raises(ValueError):
        chat_response([1, 2])


@pytest.mark.parametrize(
    ("raw", "usage"),
    [
        # plain
        ({"promptTokenCount": 100, "candidatesTokenCount": 20, "totalTokenCount": 120}, Usage(100, 20)),
        # cached tokens are inside promptTokenCount
        (
            {
                "promptTokenCount": 100,
                "cachedContentTokenCount": 60,
                "candidatesTokenCount": 20,
                "totalTokenCount": 120,
            },
            Usage(100, 20, cached_tokens=60),
        ),
        # documented convention: thoughts apart from candidates, total counts both -> added, billed as output
        (
            {
                "promptTokenCount": 100,
                "candidatesTokenCount": 20,
                "thoughtsTokenCount": 30,
                "totalTokenCount": 150,
            },
            Usage(100, 50, reasoning_tokens=30),
        ),
        # LiteLLM's check: prompt + candidates (+ toolUse) == total -> thoughts already inside candidates
        (
            {
                "promptTokenCount": 100,
                "candidatesTokenCount": 50,
                "thoughtsTokenCount": 30,
                "totalTokenCount": 150,
            },
            Usage(100, 50, reasoning_tokens=30),
        ),
        # no total: the documented convention
        (
            {"promptTokenCount": 10, "candidatesTokenCount": 2, "thoughtsTokenCount": 3},
            Usage(10, 5, reasoning_tokens=3),
        ),
        # tool-use prompt tokens are input
        (
            {
                "promptTokenCount": 100,
                "toolUsePromptTokenCount": 40,
                "candidatesTokenCount": 20,
                "totalTokenCount": 160,
            },
            Usage(140, 20),
        ),
        (
            {
                "promptTokenCount": 100,
                "toolUsePromptTokenCount": 40,
                "candidatesTokenCount": 25,
                "thoughtsTokenCount": 5,
                "totalTokenCount": 165,
            },
            Usage(140, 25, reasoning_tokens=5),
        ),
        # everything at once
        (
            {
                "promptTokenCount": 1000,
                "cachedContentTokenCount": 800,
                "toolUsePromptTokenCount": 10,
                "candidatesTokenCount": 40,
                "thoughtsTokenCount": 60,
                "totalTokenCount": 1110,
            },
            Usage(1010, 100, cached_tokens=800, reasoning_tokens=60),
        ),
        # a blocked prompt, or garbage values
        ({"promptTokenCount": 7}, Usage(7, 0)),
        ({"promptTokenCount": 7, "candidatesTokenCount": 0}, Usage(7, 0)),
    ],
)
def test_usage_categories(raw: dict[str, Any], usage: Usage) -> None:
    assert parse_usage(raw) == usage


@pytest.mark.parametrize(
    "raw",
    [
        {"promptTokenCount": -1, "candidatesTokenCount": 3},
        {"promptTokenCount": 7, "candidatesTokenCount": "x"},
        {"promptTokenCount": 7, "candidatesTokenCount": 2.5},
        {"promptTokenCount": True},
    ],
)
def test_impossible_counts_make_the_report_unreadable(raw: dict[str, Any]) -> None:
    """Not believed, and not read as zero: the gateway bills an estimate and logs a provider fault."""
    assert parse_usage(raw) is None


# -- streams ------------------------------------------------------------------------------------


def events(*payloads: Any) -> list[StreamStep]:
    decode = stream_decoder()
    return [decode(SseEvent(None, p if isinstance(p, bytes) else orjson.dumps(p))) for p in payloads]


def deltas(steps: list[StreamStep]) -> list[dict[str, Any]]:
    return [c["choices"][0] for s in steps for c in s.chunks]


def test_stream_text_keeps_last_usage_and_reports_it_with_the_finish() -> None:
    steps = events(
        {
            "candidates": [candidate([{"text": "Hel"}], None)],
            "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 1, "totalTokenCount": 10},
        },
        {
            "candidates": [candidate([{"text": "lo"}], None)],
            "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 2, "totalTokenCount": 11},
        },
        {
            "candidates": [candidate([{"text": ""}], "STOP")],
            "usageMetadata": {
                "promptTokenCount": 9,
                "candidatesTokenCount": 2,
                "thoughtsTokenCount": 4,
                "totalTokenCount": 15,
            },
        },
    )
    assert [c["delta"] for c in deltas(steps)] == [
        {"role": "assistant", "content": "Hel"},
        {"content": "lo"},
        {},
    ]
    assert deltas(steps)[-1]["finish_reason"] == "stop"
    assert all(c["object"] == "chat.completion.chunk" for s in steps for c in s.chunks)
    # running totals are not deltas and are not reported before the end
    assert [s.usage for s in steps[:2]] == [None, None]
    assert steps[2].usage == Usage(9, 6, reasoning_tokens=4)
    assert steps[2].finish_reason == "stop" and steps[2].done is False
    assert [s.output_tokens_seen for s in steps] == [1, 1, 0]


def test_stream_function_calls_are_whole_tool_call_deltas_and_finish_tool_calls() -> None:
    steps = events(
        {"candidates": [candidate([{"text": "Let me check"}], None)]},
        {
            "candidates": [
                candidate([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}], None)
            ]
        },
        {
            "candidates": [candidate([{"functionCall": {"name": "get_time", "args": {}}}], "STOP")],
            "usageMetadata": USAGE,
        },
    )
    chunks = deltas(steps)
    assert chunks[1]["delta"] == {
        "tool_calls": [
            {
                "index": 0,
                "id": "call_0_get_weather",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ]
    }
    assert chunks[2]["delta"]["tool_calls"][0]["index"] == 1
    assert chunks[2]["delta"]["tool_calls"][0]["id"] == "call_1_get_time"
    assert chunks[-1] == {"index": 0, "delta": {}, "finish_reason": "tool_calls", "logprobs": None}
    assert steps[-1].finish_reason == "tool_calls" and steps[-1].usage == Usage(10, 5)


def test_stream_usage_after_the_finish_event_is_reported_too() -> None:
    steps = events({"candidates": [candidate([{"text": "a"}], "STOP")]}, {"usageMetadata": USAGE})
    assert steps[0].usage is None and steps[0].finish_reason == "stop"
    assert steps[1].usage == Usage(10, 5) and steps[1].chunks == []


def test_stream_thoughts_go_to_reasoning_content() -> None:
    steps = events({"candidates": [candidate([{"text": "hmm", "thought": True}, {"text": "Yes"}], "STOP")]})
    assert deltas(steps)[0]["delta"] == {"role": "assistant", "content": "Yes", "reasoning_content": "hmm"}


def test_stream_blocked_prompt() -> None:
    steps = events(
        {
            "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
            "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5},
        }
    )
    assert [c["finish_reason"] for c in deltas(steps)] == [None, "content_filter"]
    assert steps[0].usage == Usage(5, 0)


def test_stream_error_event_and_malformed_event() -> None:
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    [step] = events(error)
    assert (
        step.error is not None
        and step.error.kind == "server"
        and step.error.status == 503
        and step.error.retryable
    )
    [bad] = events(b'{"candidates": [')
    assert bad.error is not None and bad.error.kind == "protocol"


# -- errors -------------------------------------------------------------------------------------


def google(code: int, status: str, details: list[dict[str, Any]] | None = None, message: str = "m") -> bytes:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        error["details"] = details
    return json.dumps({"error": error}).encode()


KEY_INVALID = [
    {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
    }
]

KEY_BLOCKED = [
    {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_SERVICE_BLOCKED",
        "domain": "googleapis.com",
    }
]


@pytest.mark.parametrize(
    ("status", "body", "header", "kind", "retryable", "retry_after"),
    [
        (400, google(400, "INVALID_ARGUMENT", KEY_INVALID), None, "auth", True, None),
        (401, google(401, "UNAUTHENTICATED"), None, "auth", True, None),
        (403, google(403, "PERMISSION_DENIED", KEY_BLOCKED), None, "auth", True, None),
        # A 403 without a key reason is this request's (a file it may not read), never the key's.
        (403, google(403, "PERMISSION_DENIED"), None, "forbidden", False, None),
        (400, google(400, "FAILED_PRECONDITION"), None, "forbidden", False, None),
        (
            429,
            google(
                429,
                "RESOURCE_EXHAUSTED",
                [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"}],
            ),
            3,
            "rate_limited",
            True,
            12,
        ),
        (
            429,
            google(
                429,
                "RESOURCE_EXHAUSTED",
                [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.2s"}],
            ),
            None,
            "rate_limited",
            True,
            2,
        ),
        (429, google(429, "RESOURCE_EXHAUSTED"), 7, "rate_limited", True, 7),
        (500, google(500, "INTERNAL"), None, "server", True, None),
        (503, google(503, "UNAVAILABLE"), 4, "server", True, 4),
        (504, google(504, "DEADLINE_EXCEEDED"), None, "server", True, None),
        (502, b"<html>bad gateway</html>", None, "server", True, None),
        (
            400,
            google(400, "INVALID_ARGUMENT", message="contents is not specified"),
            None,
            "invalid",
            False,
            None,
        ),
        (404, google(404, "NOT_FOUND"), None, "invalid", False, None),
    ],
)
def test_error_classes(
    status: int, body: bytes, header: int | None, kind: str, retryable: bool, retry_after: int | None
) -> None:
    failure = error_from_response(status, body, header)
    assert (failure.kind, failure.retryable, failure.retry_after) == (kind, retryable, retry_after)
    assert failure.key_rejected is (kind == "auth")


def test_error_message_is_kept_for_invalid_requests() -> None:
    failure = error_from_response(400, google(400, "INVALID_ARGUMENT", message='Unknown name "foo"'), None)
    assert failure.message == 'Unknown name "foo"' and failure.status == 400
