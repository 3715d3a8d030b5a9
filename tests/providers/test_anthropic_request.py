"""OpenAI chat bodies -> Anthropic Messages requests (anthropic-version 2023-06-01), rule by rule."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from nemorouter.providers.anthropic import ADAPTER, chat_request
from nemorouter.providers.registry import adapter_for
from nemorouter.providers.types import UnsupportedContent, Upstream

UPSTREAM = Upstream(
    model="claude-sonnet-4-5", base_url="https://api.anthropic.com/", secret="sk-ant-secret", max_output=64000
)
HI: list[Any] = [{"role": "user", "content": "hi"}]
PNG = "iVBORw0KGgoAAAANSUhEUg=="


def build(**body: Any) -> dict[str, Any]:
    body.setdefault("messages", HI)
    request = chat_request({"model": "anthropic/claude-sonnet-4-5", **body}, UPSTREAM)
    parsed: dict[str, Any] = orjson.loads(request.body)
    return parsed


def refused(**body: Any) -> str:
    with pytest.raises(UnsupportedContent) as exc:
        build(**body)
    return str(exc.value)


def text(value: str, **extra: Any) -> dict[str, Any]:
    return {"type": "text", "text": value, **extra}


def test_registry_serves_this_adapter() -> None:
    assert adapter_for("anthropic") is ADAPTER and ADAPTER.embeddings_request is None


def test_endpoint_headers_and_defaults() -> None:
    request = chat_request({"model": "x", "messages": HI}, UPSTREAM)
    assert request.url == "https://api.anthropic.com/v1/messages"
    assert request.headers == {
        "x-api-key": "sk-ant-secret",
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
    }
    assert request.stream is False
    assert orjson.loads(request.body) == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64000,  # required by Anthropic: the catalog's limit when the client sets none
        "messages": [{"role": "user", "content": [text("hi")]}],
    }
    streamed = chat_request({"model": "x", "messages": HI, "stream": True}, UPSTREAM)
    assert streamed.stream is True and orjson.loads(streamed.body)["stream"] is True


def test_max_tokens_from_either_field_completion_wins() -> None:
    assert build(max_tokens=100)["max_tokens"] == 100
    assert build(max_tokens=100, max_completion_tokens=50)["max_tokens"] == 50


def test_system_and_developer_become_system_blocks_with_cache_control() -> None:
    cache = {"type": "ephemeral", "ttl": "1h"}
    out = build(
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [text("Long rules", cache_control=cache)]},
            {"role": "user", "content": "one"},
            {"role": "system", "content": "Late rule."},
            {"role": "user", "content": [text("two", cache_control={"type": "ephemeral"})]},
        ]
    )
    assert out["system"] == [
        text("You are terse."),
        text("Long rules", cache_control=cache),
        text("Late rule."),
    ]
    # the two user turns around the moved system message merge into one
    assert out["messages"] == [
        {"role": "user", "content": [text("one"), text("two", cache_control={"type": "ephemeral"})]}
    ]


def test_only_system_messages_is_refused() -> None:
    assert "at least one user or assistant" in refused(messages=[{"role": "system", "content": "x"}])


def test_tool_calls_and_results_round_trip() -> None:
    call = {
        "id": "toolu_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    second = {"id": "toolu_2", "type": "function", "function": {"name": "get_time", "arguments": ""}}
    out = build(
        messages=[
            {"role": "user", "content": "Weather and time in Paris?"},
            {"role": "assistant", "content": "Let me look.", "tool_calls": [call, second]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": '{"temp_c": 21}'},
            {"role": "tool", "tool_call_id": "toolu_2", "content": [text("12:00")]},
            {"role": "user", "content": "Thanks"},
        ]
    )
    assert out["messages"][1] == {
        "role": "assistant",
        "content": [
            text("Let me look."),
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
        ],
    }
    assert out["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": '{"temp_c": 21}'},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": [text("12:00")]},
            text("Thanks"),
        ],
    }
    assert len(out["messages"]) == 3


@pytest.mark.parametrize(
    ("arguments", "message"), [("{not json", "not valid JSON"), ("[1, 2]", "JSON object")]
)
def test_bad_tool_call_arguments_are_refused(arguments: str, message: str) -> None:
    call = {"id": "t", "type": "function", "function": {"name": "f", "arguments": arguments}}
    assert message in refused(messages=[*HI, {"role": "assistant", "content": None, "tool_calls": [call]}])


def test_tool_message_needs_its_call_id() -> None:
    assert "tool_call_id" in refused(messages=[*HI, {"role": "tool", "content": "x"}])


def test_thinking_blocks_are_echoed_first_and_empty_text_is_skipped() -> None:
    thinking = {"type": "thinking", "thinking": "hmm", "signature": "c2ln"}
    call = {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    out = build(
        messages=[
            *HI,
            {"role": "assistant", "content": "", "thinking_blocks": [thinking], "tool_calls": [call]},
        ]
    )
    assert out["messages"][1]["content"] == [
        thinking,
        {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
    ]


def test_images_as_base64_or_url() -> None:
    parts = [
        text("What is this?"),
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    blocks = build(messages=[{"role": "user", "content": parts}])["messages"][0]["content"]
    assert blocks[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
    }
    assert blocks[2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("data:image/bmp;base64,Qk0=", "JPEG, PNG, GIF or WebP"),
        ("data:image/png,rawbytes", "base64 data URLs"),
        ("ftp://example.com/a.png", "data URL or an http(s) URL"),
    ],
)
def test_images_anthropic_cannot_take(url: str, message: str) -> None:
    part = {"type": "image_url", "image_url": {"url": url}}
    assert message in refused(messages=[{"role": "user", "content": [part]}])


def test_pdf_file_becomes_a_document() -> None:
    part = {
        "type": "file",
        "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="},
    }
    block = build(messages=[{"role": "user", "content": [part]}])["messages"][0]["content"][0]
    assert block == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
    }


@pytest.mark.parametrize(
    ("part", "message"),
    [
        ({"type": "file", "file": {"file_data": "data:text/csv;base64,YSxi"}}, "PDF files only"),
        ({"type": "file", "file": {"file_id": "file-abc"}}, "inline as a PDF data URL"),
        ({"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}, "audio"),
        ({"type": "video_url", "video_url": {"url": "https://x"}}, "'video_url'"),
    ],
)
def test_content_parts_anthropic_cannot_take(part: dict[str, Any], message: str) -> None:
    assert message in refused(messages=[{"role": "user", "content": [part]}])


def test_unknown_roles_and_assistant_parts_are_refused() -> None:
    assert "'function'" in refused(messages=[{"role": "function", "name": "f", "content": "x"}])
    image = {"type": "image_url", "image_url": {"url": "https://x/a.png"}}
    assert "'image_url'" in refused(messages=[*HI, {"role": "assistant", "content": [image]}])
    refusal = {"type": "refusal", "refusal": "I can't."}
    assert build(messages=[*HI, {"role": "assistant", "content": [refusal]}])["messages"][1]["content"] == [
        text("I can't.")
    ]


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
NOW = {"type": "function", "function": {"name": "now"}}


def test_tools_map_to_input_schema() -> None:
    out = build(tools=[WEATHER, NOW])
    assert out["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        {"name": "now", "input_schema": {"type": "object"}},
    ]
    assert "tool_choice" not in out


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        ({"type": "function", "function": {"name": "now"}}, None, {"type": "tool", "name": "now"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        ("auto", True, {"type": "auto"}),
    ],
)
def test_tool_choice_and_parallel_calls(choice: Any, parallel: bool | None, expected: dict[str, Any]) -> None:
    body: dict[str, Any] = {"tools": [WEATHER, NOW]}
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    assert build(**body)["tool_choice"] == expected


def test_tool_choice_without_tools() -> None:
    assert "tool_choice" not in build(tool_choice="auto") and "tools" not in build(tool_choice="none")
    assert "`tools` is empty" in refused(tool_choice="required")
    custom = {"type": "custom", "custom": {"name": "grammar"}}
    assert "only function tools" in refused(tools=[custom])
    assert "not supported" in refused(
        tools=[WEATHER], tool_choice={"type": "allowed_tools", "allowed_tools": {}}
    )


def test_sampling_fields() -> None:
    out = build(stop="END", temperature=1.7, top_p=0.9, user="user-42")
    assert out["stop_sequences"] == ["END"] and out["temperature"] == 1 and out["top_p"] == 0.9
    assert out["metadata"] == {"user_id": "user-42"}
    assert build(stop=["a", "b"], temperature=-0.5)["stop_sequences"] == ["a", "b"]
    assert build(temperature=-0.5)["temperature"] == 0 and build(temperature=0.3)["temperature"] == 0.3
    assert build(safety_identifier="sid")["metadata"] == {"user_id": "sid"}


@pytest.mark.parametrize(("effort", "budget"), [("low", 1024), ("medium", 4096), ("high", 16384)])
def test_reasoning_effort_becomes_a_thinking_budget(effort: str, budget: int) -> None:
    assert build(reasoning_effort=effort)["thinking"] == {"type": "enabled", "budget_tokens": budget}


def test_thinking_budget_stays_below_max_tokens_and_is_off_for_none_and_minimal() -> None:
    assert build(reasoning_effort="high", max_tokens=2000)["thinking"]["budget_tokens"] == 1999
    assert "thinking" not in build(reasoning_effort="none") and "thinking" not in build(
        reasoning_effort="minimal"
    )
    assert "above 1024" in refused(reasoning_effort="low", max_tokens=1024)
    assert "xhigh" in refused(reasoning_effort="xhigh")
    assert "temperature 1" in refused(reasoning_effort="low", temperature=0.5)
    assert build(reasoning_effort="low", temperature=1)["temperature"] == 1
    assert "top_p" in refused(reasoning_effort="low", top_p=0.5)
    assert "force a tool" in refused(reasoning_effort="low", tools=[NOW], tool_choice="required")


def test_response_format_json_schema_is_a_forced_tool() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    out = build(
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "a", "schema": schema, "strict": True},
        }
    )
    assert out["tools"] == [
        {
            "name": "json_output",
            "description": "Answer with JSON matching this schema.",
            "input_schema": schema,
        }
    ]
    assert out["tool_choice"] == {"type": "tool", "name": "json_output"}
    json_object = build(response_format={"type": "json_object"})
    assert json_object["tools"][0]["input_schema"] == {"type": "object"}
    assert "tools" not in build(response_format={"type": "text"})


def test_response_format_with_tools_is_structured_output() -> None:
    """With tools the schema cannot be a forced tool (the model could not call the others): it
    is Anthropic's `output_config.format`, and the client's tools stay as offered."""
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema, "strict": True}}
    out = build(response_format=fmt, tools=[NOW], tool_choice="auto")
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert [t["name"] for t in out["tools"]] == ["now"] and out["tool_choice"] == {"type": "auto"}
    assert "output_config" not in build(response_format=fmt)


def test_response_format_anthropic_cannot_take() -> None:
    fmt = {"type": "json_object"}
    assert "json_object response_format with tools" in refused(response_format=fmt, tools=[NOW])
    array = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "array"}}}
    assert "describe an object" in refused(response_format=array)
    assert "force a tool" in refused(response_format=fmt, reasoning_effort="low")
    reserved = {"type": "function", "function": {"name": "json_output"}}
    assert "reserved" in refused(tools=[reserved])


@pytest.mark.parametrize(
    "field",
    [
        {"n": 2},
        {"logprobs": True},
        {"top_logprobs": 3},
        {"presence_penalty": 0.5},
        {"frequency_penalty": -1},
        {"logit_bias": {"42": 10}},
        {"modalities": ["text", "audio"]},
        {"audio": {"voice": "alloy", "format": "wav"}},
        {"prediction": {"type": "content", "content": "x"}},
        {"functions": [{"name": "f"}]},
        {"service_tier": "flex"},
    ],
)
def test_openai_only_features_are_refused(field: dict[str, Any]) -> None:
    assert next(iter(field)) in refused(**field)


def test_defaults_ignored_fields_and_pass_through() -> None:
    out = build(
        n=1,
        logprobs=False,
        presence_penalty=0,
        modalities=["text"],
        service_tier="auto",
        stream_options={"include_usage": True},
        seed=7,
        store=True,
        metadata={"team": "a"},
        models=["anthropic/claude-opus-4-7"],
        top_k=5,
    )
    assert out == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64000,
        "messages": [{"role": "user", "content": [text("hi")]}],
        "top_k": 5,  # unknown to the mapping: Anthropic judges it
    }
