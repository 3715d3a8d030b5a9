"""The /v1/messages front door's requests, purely: Anthropic request -> OpenAI chat body (replies
and streams: test_messages_door_reply.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nemorouter.errors import InvalidRequest
from nemorouter.frontdoors.anthropic_messages.request import MalformedRequest, chat_body, effort_for_budget
from nemorouter.frontdoors.anthropic_messages.serve import chat_request, ignored_header
from nemorouter.providers.canonical import ANTHROPIC_PASSTHROUGH
from nemorouter.providers.types import UnsupportedContent

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def req(**fields: Any) -> dict[str, Any]:
    return {"model": "openai/gpt-4o-mini", "max_tokens": 100, **fields}


def hi(**fields: Any) -> dict[str, Any]:
    return req(messages=[{"role": "user", "content": "hi"}], **fields)


# ----------------------------------------------------------------------------- request


def test_minimal_request_and_system_string() -> None:
    body = chat_body(hi(system="Be brief.", stream=True))
    assert body == {
        "model": "openai/gpt-4o-mini",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "max_tokens": 100,
        "stream": True,
    }


def test_system_blocks_join_or_keep_cache_control() -> None:
    plain = chat_body(hi(system=[{"type": "text", "text": "A. "}, {"type": "text", "text": "B."}]))
    assert plain["messages"][0] == {"role": "system", "content": "A. B."}
    cache = {"type": "ephemeral"}
    marked = chat_body(hi(system=[{"type": "text", "text": "Long.", "cache_control": cache}]))
    assert marked["messages"][0] == {
        "role": "system",
        "content": [{"type": "text", "text": "Long.", "cache_control": cache}],
    }


def test_multi_turn_text_blocks_and_images() -> None:
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "Hi! "}, {"type": "text", "text": "What?"}],
        },
        {
            "role": "user",
            "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
                {"type": "text", "text": "Describe these."},
            ],
        },
    ]
    out = chat_body(req(messages=messages))["messages"]
    assert out[0] == {"role": "user", "content": "Hello"}
    assert out[1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "Hi! "}, {"type": "text", "text": "What?"}],
    }
    assert out[2] == {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
            {"type": "text", "text": "Describe these."},
        ],
    }


def test_pdf_document_becomes_a_file_part_and_other_documents_are_refused() -> None:
    pdf = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
    }
    out = chat_body(req(messages=[{"role": "user", "content": [pdf]}]))["messages"][0]
    assert out["content"] == [
        {
            "type": "file",
            "file": {"filename": "document.pdf", "file_data": "data:application/pdf;base64,JVBERi0="},
        }
    ]
    text_doc = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}
    with pytest.raises(UnsupportedContent, match="PDF"):
        chat_body(req(messages=[{"role": "user", "content": [text_doc]}]))


def test_tool_use_and_tool_results_round_trip() -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "21C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [{"type": "text", "text": "no "}, {"type": "text", "text": "data"}],
                    "is_error": True,
                },
                {"type": "text", "text": "Thanks"},
            ],
        },
    ]
    out = chat_body(req(messages=messages, tools=[WEATHER]))["messages"]
    assert out[1] == {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {
                "id": "toolu_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {
                "id": "toolu_2",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
            },
        ],
    }
    # Tool messages first (OpenAI wants them right after the calls), then the user's text.
    assert out[2:] == [
        {"role": "tool", "tool_call_id": "toolu_1", "content": "21C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "[tool error] no data"},
        {"role": "user", "content": "Thanks"},
    ]


def test_assistant_turn_of_only_tool_use_has_null_content() -> None:
    messages = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]},
    ]
    out = chat_body(req(messages=messages))["messages"]
    assert out[1]["content"] is None and out[1]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert out[2:] == [{"role": "tool", "tool_call_id": "t", "content": ""}]


def test_image_inside_a_tool_result_is_refused() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    result = {"type": "tool_result", "tool_use_id": "t", "content": [image]}
    with pytest.raises(UnsupportedContent, match="text only"):
        chat_body(req(messages=[{"role": "user", "content": [result]}]))


def test_tools_and_tool_choice() -> None:
    body = chat_body(hi(tools=[{**WEATHER, "cache_control": {"type": "ephemeral"}}]))
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER["input_schema"],
                "description": "Weather for a city",
            },
            "cache_control": {"type": "ephemeral"},
        }
    ]
    assert "tool_choice" not in body
    choices = {
        "auto": "auto",
        "any": "required",
        "none": "none",
        "tool": {"type": "function", "function": {"name": "get_weather"}},
    }
    for kind, expected in choices.items():
        choice = {"type": kind, **({"name": "get_weather"} if kind == "tool" else {})}
        body = chat_body(hi(tools=[WEATHER], tool_choice=choice))
        assert body["tool_choice"] == expected and "parallel_tool_calls" not in body
    serial = chat_body(hi(tools=[WEATHER], tool_choice={"type": "any", "disable_parallel_tool_use": True}))
    assert serial["parallel_tool_calls"] is False
    assert "tool_choice" not in chat_body(hi(tool_choice={"type": "auto"}))
    with pytest.raises(MalformedRequest, match="needs `tools`"):
        chat_body(hi(tool_choice={"type": "any"}))
    with pytest.raises(UnsupportedContent, match="server tool"):
        chat_body(hi(tools=[{"type": "web_search_20250305", "name": "web_search"}]))


@pytest.mark.parametrize(
    ("budget", "effort"), [(1024, "low"), (2048, "low"), (2049, "medium"), (8192, "medium"), (8193, "high")]
)
def test_thinking_budget_bands(budget: int, effort: str) -> None:
    assert effort_for_budget(budget) == effort
    body = chat_body(hi(thinking={"type": "enabled", "budget_tokens": budget}))
    assert body["reasoning_effort"] == effort


def test_sampling_metadata_and_dropped_top_k() -> None:
    body = chat_body(
        hi(stop_sequences=["END", "STOP"], temperature=0.5, top_p=0.9, top_k=40, metadata={"user_id": "u-1"})
    )
    assert body["stop"] == ["END", "STOP"] and body["temperature"] == 0.5 and body["top_p"] == 0.9
    assert body["user"] == "u-1"
    assert (
        "top_k" not in body
    )  # no OpenAI equivalent; a sampling hint (see frontdoors/anthropic_messages/request.py)
    assert "stop" not in chat_body(hi(stop_sequences=[]))
    assert "reasoning_effort" not in chat_body(
        hi(thinking={"type": "disabled"}, service_tier="standard_only")
    )


def test_thinking_blocks_echoed_in_assistant_turns() -> None:
    messages = [
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "thinking", "thinking": "from another vendor", "signature": ""},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "Done."},
            ],
        },
        {"role": "user", "content": "go on"},
    ]
    out = chat_body(req(messages=messages))["messages"][1]
    assert out == {
        "role": "assistant",
        "content": "Done.",
        "thinking_blocks": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "redacted_thinking", "data": "opaque"},
        ],
    }


@pytest.mark.parametrize(
    ("request_body", "error", "text"),
    [
        ([], MalformedRequest, "JSON object"),
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, MalformedRequest, "`model`"),
        (req(messages=[{"role": "user", "content": "x"}], max_tokens=None), MalformedRequest, "required"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, MalformedRequest, "required"),
        (req(messages=[{"role": "user", "content": "x"}], max_tokens=0), MalformedRequest, "positive"),
        (req(messages=[{"role": "user", "content": "x"}], max_tokens=True), MalformedRequest, "positive"),
        (req(messages=[{"role": "user", "content": "x"}], max_tokens="5"), MalformedRequest, "positive"),
        (req(messages=[]), MalformedRequest, "non-empty"),
        (req(messages=[{"role": "tool", "content": "x"}]), MalformedRequest, "role"),
        (req(messages=[{"role": "user", "content": 5}]), MalformedRequest, "content"),
        (hi(temperature="hot"), MalformedRequest, "temperature"),
        (hi(stream="yes"), MalformedRequest, "stream"),
        (hi(stop_sequences="END"), MalformedRequest, "stop_sequences"),
        (hi(metadata={"user_id": "u", "team": "t"}), UnsupportedContent, "team"),
        (hi(thinking={"type": "sometimes"}), UnsupportedContent, "sometimes"),
        (hi(mcp_servers=[{"type": "url", "url": "https://x"}]), UnsupportedContent, "mcp_servers"),
        (hi(output_config={"effort": "extreme"}), MalformedRequest, "effort"),
        (hi(output_config={"format": {"type": "json_object"}}), MalformedRequest, "json_schema"),
        (hi(thinking={"type": "enabled"}), MalformedRequest, "budget_tokens"),
        (
            req(messages=[{"role": "user", "content": [{"type": "search_result", "source": "x"}]}]),
            UnsupportedContent,
            "search_result",
        ),
        (
            req(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                    }
                ]
            ),
            UnsupportedContent,
            "file",
        ),
    ],
)
def test_bad_requests(request_body: Any, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        chat_body(request_body)


# ----------------------------------------------------------------------------- the canonical request


def test_the_canonical_request_of_a_messages_body() -> None:
    """The door builds the gateway's request itself (no second parse): one model, its
    `max_tokens` as the output limit, its stream flag and its stop sequences."""
    raw = json.dumps(hi(stream=True, stop_sequences=["END"], temperature=0.5)).encode()
    request = chat_request(raw)
    assert request.body == chat_body(json.loads(raw))
    assert (request.model_ids, request.stream, request.n) == (["openai/gpt-4o-mini"], True, 1)
    assert (request.max_output, request.prefs, request.stop) == (100, None, ("END",))
    plain = chat_request(json.dumps(hi()).encode())
    assert (plain.stream, plain.stop) == (False, ())


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty"),
        (b"{", "not valid JSON"),
        (b"[1]", "must be a JSON object"),
        (json.dumps(hi(max_tokens=0)).encode(), "`max_tokens` must be a positive integer"),
    ],
)
def test_a_bad_messages_body_is_a_400(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        chat_request(raw)


# ----------------------------------------------------------------------------- what Claude Code sends


def test_unknown_fields_are_left_out_and_named() -> None:
    """A field we do not know never reaches an upstream; the door names it instead of refusing."""
    ignored: list[str] = []
    body = chat_body(hi(frequency_penalty=1, provider={"sort": "price"}, speed=None), ignored)
    assert ignored == ["frequency_penalty", "provider"]
    assert "frequency_penalty" not in body and "provider" not in body
    assert chat_body(hi()) == chat_body(hi(), [])


def test_claude_code_fields_ride_for_anthropic_and_map_for_others() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    fields = {
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "max", "format": {"type": "json_schema", "schema": schema}, "x": 1},
        "context_management": {"edits": []},
        "cache_control": {"type": "ephemeral"},
    }
    body = chat_body(hi(**fields))
    # Anthropic's own fields, as sent (output_config only with the keys we read).
    assert body[ANTHROPIC_PASSTHROUGH] == {
        **fields,
        "output_config": {"effort": "max", "format": {"type": "json_schema", "schema": schema}},
    }
    # What every other upstream gets: OpenAI's effort (max is its high) and a JSON schema format.
    assert body["reasoning_effort"] == "high"
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }
    assert not set(fields) & set(body)


def test_effort_gives_no_reasoning_when_thinking_is_disabled() -> None:
    body = chat_body(hi(thinking={"type": "disabled"}, output_config={"effort": "low"}))
    assert "reasoning_effort" not in body
    budget = chat_body(hi(max_tokens=9000, thinking={"type": "enabled", "budget_tokens": 8000}))
    assert budget["reasoning_effort"] == "medium"  # the budget's band wins over no effort


def test_no_passthrough_for_a_plain_request() -> None:
    assert ANTHROPIC_PASSTHROUGH not in chat_body(hi())


def test_beta_headers_ride_in_the_passthrough() -> None:
    raw = json.dumps(hi()).encode()
    ignored: list[str] = []
    request = chat_request(raw, ignored, b"effort-2025-11-24, context-1m-2025-08-07,effort-2025-11-24")
    assert request.body[ANTHROPIC_PASSTHROUGH] == {"betas": ["effort-2025-11-24"]}
    assert ignored == ["anthropic-beta:context-1m-2025-08-07"]
    assert ignored_header(ignored) == "anthropic-beta:context-1m-2025-08-07"
    none = chat_request(raw, [], b"fast-mode-2026-02-01")
    assert ANTHROPIC_PASSTHROUGH not in none.body


def test_the_ignored_fields_header_names_only_plain_tokens() -> None:
    """A client's field names may hold anything; a header value may not (CR/LF, non-latin-1)."""
    assert ignored_header(["speed", "a.b-c_1"]) == "speed,a.b-c_1"
    assert ignored_header(["ok", "bad\r\nx-injected: 1", "\u00e9t\u00e9"]) == "ok,..."
    assert ignored_header(["\n"]) == "..."
    assert ignored_header([f"f{i}" for i in range(30)]).count(",") == 20  # 20 names, then ...
