"""The OpenAI Responses adapter's pure parts: when it is selected, the request it builds from the
canonical chat body, and how it reads answers, usage (untrusted) and stream events."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from nemorouter.money import Usage
from nemorouter.providers import openai_responses
from nemorouter.providers.canonical import RESPONSES_PASSTHROUGH, RESPONSES_REASONING
from nemorouter.providers.openai_responses_request import responses_body
from nemorouter.providers.openai_responses_stream import parse_usage, stream_decoder
from nemorouter.providers.registry import OPENAI
from nemorouter.providers.types import FailureKind, SseEvent, UnsupportedContent, Upstream

NATIVE = {
    RESPONSES_PASSTHROUGH: {"include": ["reasoning.encrypted_content"], "reasoning": {"summary": "auto"}}
}


def upstream(**config: Any) -> Upstream:
    return Upstream("gpt-5", "https://api.openai.com/v1", "sk-test", max_output=32000, config=config)


def body(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **NATIVE, **extra}


@pytest.mark.parametrize(
    ("config", "extra", "native"),
    [
        ({"responses_api": True}, {}, True),
        ({"vendor": "openai"}, {}, True),  # the vendor row: OpenAI's own API
        ({"vendor": "openai", "responses_api": False}, {}, False),  # the provider's setting wins
        ({}, {}, False),  # not flagged
        ({"vendor": "mistral"}, {}, False),
        ({"responses_api": True}, {"max_completion_tokens": 15}, False),  # under OpenAI's minimum
        ({"responses_api": True}, {"max_completion_tokens": 16}, True),
        ({"responses_api": True}, {"n": 2}, False),  # Responses has no `n`
    ],
)
def test_the_responses_wire_is_chosen_only_for_a_responses_client_on_a_flagged_upstream(
    config: dict[str, Any], extra: dict[str, Any], native: bool
) -> None:
    chosen = OPENAI.for_request(body(**extra), upstream(**config))
    assert (chosen is openai_responses.ADAPTER) is native
    chat_client = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert OPENAI.for_request(chat_client, upstream(**config)) is OPENAI


def test_the_request_carries_the_held_limit_store_false_and_only_responses_fields() -> None:
    chat = body(
        max_completion_tokens=500,
        max_tokens=700,
        temperature=0.2,
        stop=["x"],
        service_tier="priority",
        reasoning_effort="high",
        response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}},
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        tool_choice={"type": "function", "function": {"name": "f"}},
        stream=True,
    )
    out = responses_body(chat, upstream(responses_api=True))
    assert out["max_output_tokens"] == 500  # the smallest limit: the hold's
    assert out["store"] is False and out["stream"] is True and out["model"] == "gpt-5"
    assert out["reasoning"] == {"effort": "high", "summary": "auto"}
    assert out["include"] == ["reasoning.encrypted_content"]
    assert out["text"] == {"format": {"type": "json_schema", "name": "n", "schema": {"type": "object"}}}
    assert out["tools"] == [
        {"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": False}
    ]
    assert out["tool_choice"] == {"type": "function", "name": "f"}
    assert out["temperature"] == 0.2
    assert not {"stop", "service_tier", "max_tokens", "max_completion_tokens", "messages"} & set(out)
    assert RESPONSES_PASSTHROUGH not in orjson.dumps(out).decode()


def test_without_a_client_limit_the_catalog_limit_is_sent() -> None:
    assert responses_body(body(), upstream(responses_api=True))["max_output_tokens"] == 32000


def test_a_tool_loop_becomes_items_with_the_reasoning_where_it_stood() -> None:
    opaque = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"}
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Checking.",
            RESPONSES_REASONING: [opaque],
            "thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": "s"}],
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ]
    out = responses_body({**NATIVE, "messages": messages}, upstream(responses_api=True))
    assert out["input"] == [
        {"type": "message", "role": "system", "content": "Be brief."},
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "look"},
                {"type": "input_image", "image_url": "data:image/png;base64,AA", "detail": "auto"},
            ],
        },
        opaque,
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Checking.", "annotations": []}],
        },
        {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "42"},
    ]  # Anthropic's thinking blocks are not OpenAI's to read: not sent


@pytest.mark.parametrize(
    "message",
    [
        {
            "role": "user",
            "content": [{"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}],
        },
        {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}},
        {"role": "function", "name": "f", "content": "x"},
    ],
)
def test_what_the_responses_api_cannot_take_is_unsupported_not_dropped(message: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedContent):
        responses_body({**NATIVE, "messages": [message]}, upstream(responses_api=True))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 40, "cache_write_tokens": 10},
             "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 20}},
            Usage(prompt_tokens=100, completion_tokens=30, cached_tokens=40, cache_write_tokens=10, reasoning_tokens=20),
        ),
        (  # parts larger than their wholes are clamped to them
            {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 99, "cache_write_tokens": 5},
             "output_tokens": 3, "output_tokens_details": {"reasoning_tokens": 50}},
            Usage(prompt_tokens=10, completion_tokens=3, cached_tokens=10, reasoning_tokens=3),
        ),
        ({"input_tokens": 10**30, "output_tokens": 1}, Usage(prompt_tokens=10**30, completion_tokens=1)),
        ({"input_tokens": -1, "output_tokens": 1}, None),  # impossible: not believed
        ({"input_tokens": 10, "output_tokens": 1.5}, None),
        ({"input_tokens": "10", "output_tokens": 1}, None),
        ({"input_tokens": 10, "output_tokens": True}, None),
        ({"input_tokens": 10, "input_tokens_details": "x", "output_tokens": 1}, None),
    ],
)  # fmt: skip
def test_usage_is_read_with_every_adapters_rules(raw: dict[str, Any], expected: Usage | None) -> None:
    assert parse_usage(raw) == expected


def test_an_answer_becomes_a_chat_completion() -> None:
    reasoning = {
        "type": "reasoning",
        "id": "rs_9",
        "summary": [{"type": "summary_text", "text": "hm"}],
        "encrypted_content": "e",
    }
    data = {
        "object": "response",
        "id": "resp_1",
        "status": "completed",
        "output": [
            reasoning,
            {
                "type": "message",
                "content": [{"type": "output_text", "text": "Hi"}, {"type": "refusal", "refusal": "no"}],
            },
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        ],
        "usage": {"input_tokens": 5, "output_tokens": 7},
    }
    completion = openai_responses.chat_response(data)
    message = completion.body["choices"][0]["message"]
    assert message["content"] == "Hi" and message["refusal"] == "no" and message["reasoning_content"] == "hm"
    assert message[RESPONSES_REASONING] == [reasoning]
    assert message["tool_calls"] == [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    ]
    assert completion.finish_reason == "tool_calls" and completion.usage == Usage(
        prompt_tokens=5, completion_tokens=7
    )
    cut = {
        **data,
        "status": "incomplete",
        "incomplete_details": {"reason": "max_output_tokens"},
        "output": [],
    }
    assert openai_responses.chat_response(cut).finish_reason == "length"
    for broken in (
        {**data, "status": "failed"},
        {**data, "object": "chat.completion"},
        [],
        {"object": "response"},
    ):
        with pytest.raises(ValueError):
            openai_responses.chat_response(broken)


def _events(*datas: dict[str, Any] | bytes) -> list[Any]:
    decode = stream_decoder()
    return [decode(SseEvent(None, d if isinstance(d, bytes) else orjson.dumps(d))) for d in datas]


def test_stream_events_become_chat_chunks_with_usage_from_the_completed_event() -> None:
    usage = {"input_tokens": 9, "output_tokens": 4}
    steps = _events(
        {"type": "response.created", "response": {}},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"type": "function_call", "call_id": "a", "name": "f"},
        },
        {
            "type": "response.output_item.added",
            "output_index": 1,
            "item": {"type": "function_call", "call_id": "b", "name": "g"},
        },
        {"type": "response.function_call_arguments.delta", "output_index": 1, "delta": "{}"},
        {"type": "response.output_text.delta", "delta": "x"},
        {"type": "response.output_item.done", "item": {"type": "reasoning", "id": "rs", "summary": []}},
        {"type": "response.completed", "response": {"status": "completed", "usage": usage}},
    )
    assert (
        steps[0].chunks[0]["choices"][0]["delta"]["role"] == "assistant" and steps[0].output_tokens_seen == 0
    )
    assert steps[2].chunks[0]["choices"][0]["delta"]["tool_calls"][0]["index"] == 1
    assert steps[3].chunks[0]["choices"][0]["delta"]["tool_calls"] == [
        {"index": 1, "function": {"arguments": "{}"}}
    ]
    assert steps[5].chunks[0]["choices"][0]["delta"][RESPONSES_REASONING][0]["id"] == "rs"
    last = steps[-1]
    assert (
        last.done
        and last.finish_reason == "tool_calls"
        and last.usage == Usage(prompt_tokens=9, completion_tokens=4)
    )
    assert sum(s.output_tokens_seen for s in steps) == 4


def test_failures_inside_a_stream() -> None:
    failed, limited, broken = _events(
        {"type": "response.failed", "response": {"error": {"code": "server_error", "message": "boom"}, "usage": {"input_tokens": 3, "output_tokens": 2}}},
        {"type": "error", "code": "rate_limit_exceeded", "message": "slow down"},
        b'{"type": "response.output_text.delta", "delta": ',
    )  # fmt: skip
    assert (
        failed.error is not None
        and failed.error.kind is FailureKind.SERVER
        and failed.error.message == "boom"
    )
    assert failed.usage == Usage(prompt_tokens=3, completion_tokens=2)  # what was produced is charged
    assert limited.error is not None and limited.error.kind is FailureKind.RATE_LIMITED
    assert broken.error is not None and broken.error.kind is FailureKind.PROTOCOL
    cut = _events(
        {
            "type": "response.incomplete",
            "response": {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}},
        }
    )
    assert cut[0].finish_reason == "length" and cut[0].done and cut[0].usage is None
