"""The Gemini adapter's request side, from hand-written OpenAI bodies: URL, auth, and every mapping rule."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nemorouter.providers.gemini import ADAPTER, chat_request
from nemorouter.providers.gemini_schema import gemini_schema
from nemorouter.providers.types import UnsupportedContent, Upstream

UP = Upstream(
    model="gemini-2.5-flash", base_url="https://generativelanguage.googleapis.com/", secret="AIza-secret"
)
HI = [{"role": "user", "content": "Hi"}]


def body_of(openai: dict[str, Any]) -> dict[str, Any]:
    request = chat_request({"model": "google/gemini-2.5-flash", **openai}, UP)
    parsed: dict[str, Any] = json.loads(request.body)
    return parsed


def test_urls_and_key_header_never_the_query() -> None:
    plain = chat_request({"messages": HI}, UP)
    assert (
        plain.url
        == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    )
    assert plain.stream is False
    streamed = chat_request({"messages": HI, "stream": True}, UP)
    assert streamed.url.endswith("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
    assert streamed.stream is True
    for request in (plain, streamed):
        assert request.headers["x-goog-api-key"] == "AIza-secret"
        assert "key=" not in request.url and "Authorization" not in request.headers
    tuned = chat_request(
        {"messages": HI}, Upstream(model="tunedModels/mine", base_url="http://sim", secret="k")
    )
    assert tuned.url == "http://sim/v1beta/tunedModels/mine:generateContent"
    assert ADAPTER is not None and ADAPTER.embeddings_request is None


def test_minimal_body_still_sends_the_model_max_as_the_output_limit() -> None:
    # Omitted, Gemini would allow the model's own maximum, which the hold never covered.
    assert body_of(
        {"messages": HI, "stream": True, "user": "u1", "stream_options": {"include_usage": True}}
    ) == {
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
        "generationConfig": {"maxOutputTokens": UP.max_output},
    }


def test_system_roles_merging_and_model_role() -> None:
    body = body_of(
        {
            "messages": [
                {"role": "system", "content": "Be terse."},
                {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
                {"role": "user", "content": "One"},
                {"role": "user", "content": [{"type": "text", "text": "Two"}]},
                {"role": "assistant", "content": "Un deux"},
                {
                    "role": "assistant",
                    "content": [{"type": "text", "text": "!"}, {"type": "refusal", "refusal": "no"}],
                },
                {"role": "user", "content": "Three"},
            ]
        }
    )
    assert body["systemInstruction"] == {"parts": [{"text": "Be terse."}, {"text": "Answer in French."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "One"}, {"text": "Two"}]},
        {"role": "model", "parts": [{"text": "Un deux"}, {"text": "!"}, {"text": "no"}]},
        {"role": "user", "parts": [{"text": "Three"}]},
    ]


def test_tool_calls_and_results_round_trip() -> None:
    body = body_of(
        {
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        },
                        {
                            "id": "call_b__thought__U0lH",
                            "type": "function",
                            "function": {"name": "get_time", "arguments": ""},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "call_b__thought__U0lH", "content": "12:00"},
                {
                    "role": "tool",
                    "tool_call_id": "call_a",
                    "content": [{"type": "text", "text": '{"temp": 21}'}],
                },
                {"role": "user", "content": "Thanks"},
            ]
        }
    )
    assert body["contents"][1] == {
        "role": "model",
        "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            # the signature Gemini gave the call rides back from the id
            {"functionCall": {"name": "get_time", "args": {}}, "thoughtSignature": "U0lH"},
        ],
    }
    assert body["contents"][2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "get_time", "response": {"content": "12:00"}}},
            {"functionResponse": {"name": "get_weather", "response": {"content": '{"temp": 21}'}}},
            {"text": "Thanks"},
        ],
    }


@pytest.mark.parametrize(
    ("messages", "needle"),
    [
        (
            [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "x", "type": "function", "function": {"name": "f", "arguments": "{not json"}}
                    ],
                }
            ],
            "not valid JSON",
        ),
        (
            [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "x", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
                    ],
                }
            ],
            "JSON object",
        ),
        (
            [{"role": "user", "content": "q"}, {"role": "tool", "tool_call_id": "nope", "content": "r"}],
            "matches no earlier tool call",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x.test/pic"}}],
                }
            ],
            "media type",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}],
                }
            ],
            "base64",
        ),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/a.png"}}]}],
            "http(s)",
        ),
        ([{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}], "file ids"),
        ([{"role": "user", "content": [{"type": "video", "video": {}}]}], "'video'"),
        (
            [
                {
                    "role": "system",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}],
                }
            ],
            "'image_url'",
        ),
        ([{"role": "system", "content": "only system"}], "at least one user"),
        ([{"role": "critic", "content": "x"}], "role 'critic'"),
    ],
)
def test_unsupported_content_is_refused_clearly(messages: list[Any], needle: str) -> None:
    with pytest.raises(UnsupportedContent, match=None) as caught:
        body_of({"messages": messages})
    assert needle in str(caught.value)


def test_media_parts() -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a/cat.JPG?size=2#x"}},
        {"type": "image_url", "image_url": {"url": "gs://bucket/doc.pdf"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
        {"type": "file", "file": {"file_data": "SGVsbG8=", "filename": "notes.txt"}},
    ]
    parts = body_of({"messages": [{"role": "user", "content": content}]})["contents"][0]["parts"]
    assert parts == [
        {"text": "What is this?"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0K"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/a/cat.JPG?size=2#x"}},
        {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://bucket/doc.pdf"}},
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
        {"inlineData": {"mimeType": "text/plain", "data": "SGVsbG8="}},
    ]


def test_generation_config_mapping() -> None:
    body = body_of(
        {
            "messages": HI,
            "max_tokens": 99,
            "max_completion_tokens": 50,
            "temperature": 0.2,
            "top_p": 0.9,
            "stop": "END",
            "n": 2,
            "seed": 7,
            "presence_penalty": 0.5,
            "frequency_penalty": 0.25,
            "response_format": {"type": "json_object"},
            "reasoning_effort": "low",
            "logprobs": False,
            "modalities": ["text"],
            "parallel_tool_calls": False,
        }
    )
    assert body["generationConfig"] == {
        "maxOutputTokens": 50,
        "temperature": 0.2,
        "topP": 0.9,
        "candidateCount": 2,
        "seed": 7,
        "presencePenalty": 0.5,
        "frequencyPenalty": 0.25,
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
        "thinkingConfig": {"thinkingBudget": 50},  # low's 1024, never above the limit
    }
    assert body_of({"messages": HI, "max_tokens": 12, "stop": ["a", "b"]})["generationConfig"] == {
        "maxOutputTokens": 12,
        "stopSequences": ["a", "b"],
    }


@pytest.mark.parametrize(
    ("effort", "budget"), [("none", 0), ("minimal", 0), ("low", 1024), ("medium", 8192), ("high", 24576)]
)
def test_reasoning_effort_budgets(effort: str, budget: int) -> None:
    config = body_of({"messages": HI, "reasoning_effort": effort, "max_tokens": 30_000})["generationConfig"]
    assert config == {"maxOutputTokens": 30_000, "thinkingConfig": {"thinkingBudget": budget}}


def test_json_schema_response_format_keeps_json_schema() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": schema}}
    config = body_of({"messages": HI, "response_format": fmt})["generationConfig"]
    assert config == {
        "maxOutputTokens": UP.max_output,
        "responseMimeType": "application/json",
        "responseJsonSchema": schema,
    }


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"logprobs": True}, "`logprobs`"),
        ({"top_logprobs": 3}, "`top_logprobs`"),
        ({"logit_bias": {"1": 5}}, "`logit_bias`"),
        ({"modalities": ["text", "audio"]}, "`modalities`"),
        ({"functions": [{"name": "f"}]}, "`functions`"),
        ({"reasoning_effort": "ultra"}, "ultra"),
        ({"response_format": {"type": "grammar"}}, "grammar"),
        ({"tools": [{"type": "web_search"}]}, "only function tools"),
    ],
)
def test_unsupported_fields(extra: dict[str, Any], needle: str) -> None:
    with pytest.raises(UnsupportedContent) as caught:
        body_of({"messages": HI, **extra})
    assert needle in str(caught.value)


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "strict": True,
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City", "default": "Paris", "format": "email"},
                "unit": {"enum": ["c", "f"]},
                "when": {"type": "string", "format": "date-time"},
                "days": {"type": ["integer", "null"], "minimum": 1, "exclusiveMaximum": 15},
                "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            },
            "required": ["city", "ghost"],
            "additionalProperties": False,
        },
    },
}
NOW = {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}


def test_tools_strip_what_gemini_schema_refuses() -> None:
    body = body_of({"messages": HI, "tools": [WEATHER, NOW]})
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {
                            "city": {"type": "STRING", "description": "City"},
                            "unit": {"type": "STRING", "enum": ["c", "f"]},
                            "when": {"type": "STRING", "format": "date-time"},
                            "days": {"type": "INTEGER", "minimum": 1, "nullable": True},
                            "tags": {"type": "ARRAY", "items": {"type": "STRING"}},
                        },
                        "required": ["city"],
                    },
                },
                {"name": "now"},  # Gemini refuses an OBJECT without properties: no parameters at all
            ]
        }
    ]
    assert "toolConfig" not in body


def test_schema_refs_unions_and_refusals() -> None:
    schema = {
        "type": "object",
        "$defs": {"Pet": {"type": "object", "properties": {"name": {"const": "rex"}}}},
        "properties": {
            "pet": {"$ref": "#/$defs/Pet"},
            "maybe": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            "merged": {"allOf": [{"type": "number"}], "description": "d"},
            "code": {"type": "integer", "enum": [1, 2]},
        },
    }
    assert gemini_schema(schema, "p") == {
        "type": "OBJECT",
        "properties": {
            "pet": {"type": "OBJECT", "properties": {"name": {"type": "STRING", "enum": ["rex"]}}},
            "maybe": {"type": "STRING", "nullable": True},
            "either": {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]},
            "merged": {"type": "NUMBER", "description": "d"},
            "code": {"type": "INTEGER"},  # Gemini's enums are strings only: the constraint is dropped
        },
    }
    # allOf members that do not conflict are one schema (Claude Code's tools have such).
    both = {"allOf": [{"type": "string"}, {"minLength": 2}], "description": "d"}
    assert gemini_schema(both, "p") == {"type": "STRING", "minLength": 2, "description": "d"}
    objects = {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"b": {"type": "integer"}}, "required": ["b"]},
        ]
    }
    patterns = {"allOf": [{"type": "string", "pattern": "^a"}, {"pattern": "b$"}]}
    assert gemini_schema(patterns, "p") == {"type": "STRING"}  # two checks, not expressible as one
    merged = gemini_schema(objects, "p")
    assert merged["required"] == ["a", "b"] and set(merged["properties"]) == {"a", "b"}
    recursive = {
        "$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}},
        "$ref": "#/$defs/N",
    }
    for bad, needle in (
        (recursive, "recursive"),
        ({"$ref": "https://x/schema.json"}, "not a local definition"),
        ({"allOf": [{"type": "string"}, {"type": "integer"}]}, "allOf"),
        ({"allOf": [{"properties": {"a": {"type": "string"}}}, {"properties": {"a": {}}}]}, "twice"),
        ({"not": {"type": "string"}}, "'not'"),
        ({"type": ["string", "integer"]}, "union"),
    ):
        with pytest.raises(UnsupportedContent, match=None) as caught:
            gemini_schema(bad, "p")
        assert needle in str(caught.value)


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        ("none", {"mode": "NONE"}),
        ({"type": "function", "function": {"name": "now"}}, {"mode": "ANY", "allowedFunctionNames": ["now"]}),
    ],
)
def test_tool_choice(choice: Any, config: dict[str, Any]) -> None:
    body = body_of({"messages": HI, "tools": [WEATHER, NOW], "tool_choice": choice})
    assert body["toolConfig"] == {"functionCallingConfig": config}


def test_allowed_tools_narrow_the_declarations() -> None:
    choice = {
        "type": "allowed_tools",
        "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "now"}}]},
    }
    body = body_of({"messages": HI, "tools": [WEATHER, NOW], "tool_choice": choice})
    assert body["tools"] == [{"functionDeclarations": [{"name": "now"}]}]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    with pytest.raises(UnsupportedContent, match="not among the tools"):
        body_of(
            {
                "messages": HI,
                "tools": [NOW],
                "tool_choice": {"type": "function", "function": {"name": "other"}},
            }
        )
