"""The Responses front door's answers: our chat.completion -> a Response, validated by the openai
SDK's own `Response` type."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from openai.types.responses import Response

from nemorouter import jsonx
from nemorouter.frontdoors.responses.reasoning import decode_blocks
from nemorouter.frontdoors.responses.reply import response_from_completion, responses_usage
from nemorouter.frontdoors.responses.request import translate
from nemorouter.money import Usd

USAGE = {
    "prompt_tokens": 120,
    "completion_tokens": 30,
    "total_tokens": 150,
    "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 5},
    "completion_tokens_details": {"reasoning_tokens": 12},
    "cost": Decimal("0.000123456789"),
}


def completion(
    message: dict[str, Any], finish: str = "stop", usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "id": "gen-abc",
        "object": "chat.completion",
        "created": 1765000000,
        "model": "openai/gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
        "usage": usage or USAGE,
    }


def test_a_text_answer_is_one_message_item_with_responses_usage_and_cost() -> None:
    request = translate(
        {"model": "openai/gpt-4o-mini", "input": "hi", "temperature": 0.5, "metadata": {"a": "b"}}
    )
    body = response_from_completion(completion({"content": "Hello there"}), request, "gen-fallback")
    response = Response.model_validate(body)
    assert response.id == "gen-abc"
    assert response.status == "completed"
    assert response.output_text == "Hello there"
    assert response.temperature == 0.5 and response.metadata == {"a": "b"}
    assert response.created_at == 1765000000
    assert body["usage"] == {
        "input_tokens": 120,
        "input_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 5},
        "output_tokens": 30,
        "output_tokens_details": {"reasoning_tokens": 12},
        "total_tokens": 150,
        "cost": Usd(123_456_789),  # pico-USD, written as the exact number 0.000123456789
    }
    assert b'"cost":0.000123456789' in jsonx.dumps(body["usage"])
    assert response.usage is not None and response.usage.input_tokens_details.cached_tokens == 100


def test_tool_calls_become_function_call_items_with_their_namespace() -> None:
    tools = [
        {"type": "function", "name": "shell", "parameters": {"type": "object", "properties": {}}},
        {
            "type": "namespace",
            "name": "mcp__docs",
            "description": "Docs",
            "tools": [
                {"type": "function", "name": "search", "parameters": {"type": "object", "properties": {}}}
            ],
        },
    ]
    request = translate({"model": "m", "input": "go", "tools": tools})
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "shell", "arguments": '{"command":"ls"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "mcp__docs__search", "arguments": "{}"}},
    ]
    body = response_from_completion(
        completion({"content": None, "tool_calls": calls}, "tool_calls"), request, "x"
    )
    response = Response.model_validate(body)
    assert [item.type for item in response.output] == ["function_call", "function_call"]
    first, second = body["output"]
    assert first == {
        "type": "function_call",
        "id": "fc_call_1",
        "call_id": "call_1",
        "name": "shell",
        "arguments": '{"command":"ls"}',
        "status": "completed",
    }
    assert (second["namespace"], second["name"]) == ("mcp__docs", "search")
    assert len(response.tools) == 2


def test_reasoning_is_a_summary_and_its_blocks_come_back_encrypted_only_when_asked() -> None:
    blocks = [{"type": "thinking", "thinking": "Think.", "signature": "sig=="}]
    message = {"content": "42", "reasoning_content": "Think.", "thinking_blocks": blocks}
    asked = translate({"model": "m", "input": "q", "include": ["reasoning.encrypted_content"]})
    body = response_from_completion(completion(message), asked, "x")
    Response.model_validate(body)
    reasoning, answer = body["output"]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Think."}]
    assert decode_blocks(reasoning["encrypted_content"]) == blocks
    assert answer["content"][0]["text"] == "42"
    plain = response_from_completion(completion(message), translate({"model": "m", "input": "q"}), "x")
    assert "encrypted_content" not in plain["output"][0]


def test_an_answer_cut_by_the_limit_is_incomplete() -> None:
    request = translate({"model": "m", "input": "q", "max_output_tokens": 5})
    body = response_from_completion(completion({"content": "Once upon"}, "length"), request, "x")
    response = Response.model_validate(body)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.max_output_tokens == 5


def test_a_refusal_is_a_refusal_part() -> None:
    body = response_from_completion(
        completion({"content": None, "refusal": "No."}), translate({"model": "m", "input": "q"}), "x"
    )
    Response.model_validate(body)
    assert body["output"][0]["content"] == [{"type": "refusal", "refusal": "No."}]


def test_usage_without_details_counts_zero_and_never_more_than_the_totals() -> None:
    assert responses_usage({"prompt_tokens": 3, "completion_tokens": 2, "cost": "0"}) == {
        "input_tokens": 3,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 2,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 5,
        "cost": Usd(0),
    }
    odd = responses_usage(
        {"prompt_tokens": 3, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 9}}
    )
    assert odd is not None and odd["input_tokens_details"]["cached_tokens"] == 3
    assert responses_usage(None) is None
