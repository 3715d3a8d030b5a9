"""The Bedrock adapter's pure parts, from hand-written bodies: the Converse request (every mapping
rule and every refusal), the SigV4 signature (checked with botocore's own signer), usage in
Bedrock's conventions, error classification by header and body, the stream decoder, the secret."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from nemorouter.money import Usage
from nemorouter.providers.bedrock import ADAPTER, chat_request
from nemorouter.providers.bedrock_signing import credentials
from nemorouter.providers.types import EVENT_STREAM, SSE, FailureKind, SseEvent, UnsupportedContent, Upstream

MODEL = "anthropic.claude-haiku-4-5-20251001-v1:0"
KEY = {
    "access_key_id": "AKIAEXAMPLE123456789",
    "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
}
UP = Upstream(
    MODEL, "https://bedrock-runtime.eu-west-1.amazonaws.com", json.dumps(KEY), 64000, {"region": "eu-west-1"}
)
HI = [{"role": "user", "content": "Hi"}]


def converse(openai: dict[str, Any]) -> dict[str, Any]:
    parsed: dict[str, Any] = orjson.loads(chat_request({"model": "bedrock/x", **openai}, UP).body)
    return parsed


def test_urls_framing_and_a_signature_botocore_agrees_with() -> None:
    plain = chat_request({"messages": HI}, UP)
    assert plain.url == f"{UP.base_url}/model/anthropic.claude-haiku-4-5-20251001-v1%3A0/converse"
    assert (plain.stream, plain.framing) == (False, SSE)
    streamed = chat_request({"messages": HI, "stream": True}, UP)
    assert streamed.url.endswith("/converse-stream") and (streamed.stream, streamed.framing) == (
        True,
        EVENT_STREAM,
    )
    auth = plain.headers["Authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={KEY['access_key_id']}/")
    assert "/eu-west-1/bedrock/aws4_request" in auth and KEY["secret_access_key"] not in str(plain.headers)
    # Recomputed independently with the request's own time: the same signature.
    check = AWSRequest(
        method="POST",
        url=plain.url,
        data=plain.body,
        headers={"Content-Type": "application/json", "X-Amz-Date": plain.headers["X-Amz-Date"]},
    )
    check.context["timestamp"] = plain.headers["X-Amz-Date"]
    signer = SigV4Auth(Credentials(KEY["access_key_id"], KEY["secret_access_key"]), "bedrock", "eu-west-1")
    expected = signer.signature(signer.string_to_sign(check, signer.canonical_request(check)), check)
    assert auth.endswith("Signature=" + expected)
    session = Upstream(
        MODEL, UP.base_url, json.dumps({**KEY, "session_token": "FwoGZXIvYXdzEBYaD"}), config=UP.config
    )
    assert chat_request({"messages": HI}, session).headers["X-Amz-Security-Token"] == "FwoGZXIvYXdzEBYaD"


def test_the_output_limit_is_always_sent_and_sampling_mapped() -> None:
    assert converse({"messages": HI})["inferenceConfig"] == {"maxTokens": 64000}  # the model's, unasked
    body = converse(
        {
            "messages": HI,
            "max_tokens": 300,
            "max_completion_tokens": 200,
            "temperature": 0.3,
            "top_p": 0.9,
            "stop": "END",
        }
    )
    assert body["inferenceConfig"] == {
        "maxTokens": 200,
        "temperature": 0.3,
        "topP": 0.9,
        "stopSequences": ["END"],
    }
    assert set(body) == {"messages", "inferenceConfig"}  # nothing else: Converse refuses unknown members


def test_messages_system_images_tool_calls_and_results() -> None:
    png = "data:image/png;base64,iVBORw0KGgo="
    body = converse(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Look", "cache_control": {"type": "ephemeral"}},
                        {"type": "image_url", "image_url": {"url": png}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "t1",
                            "type": "function",
                            "function": {"name": "w", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
            ],
            "tools": [
                {
                    "type": "function",
                    "function": {"name": "w", "description": "Weather", "parameters": {"type": "object"}},
                }
            ],
            "tool_choice": "required",
        }
    )
    assert body["system"] == [{"text": "Be brief."}]
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"text": "Look"},
                {"cachePoint": {"type": "default"}},
                {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}},
            ],
        },
        {
            "role": "assistant",
            "content": [{"toolUse": {"toolUseId": "t1", "name": "w", "input": {"city": "Paris"}}}],
        },
        {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "sunny"}]}}]},
    ]
    assert body["toolConfig"] == {
        "tools": [
            {"toolSpec": {"name": "w", "inputSchema": {"json": {"type": "object"}}, "description": "Weather"}}
        ],
        "toolChoice": {"any": {}},
    }
    named = converse(
        {
            "messages": HI,
            "tools": body and [{"type": "function", "function": {"name": "w"}}],
            "tool_choice": {"type": "function", "function": {"name": "w"}},
        }
    )
    assert named["toolConfig"]["toolChoice"] == {"tool": {"name": "w"}}
    assert "toolConfig" not in converse(
        {"messages": HI, "tools": [{"type": "function", "function": {"name": "w"}}], "tool_choice": "none"}
    )


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"n": 2}, "`n`"),
        ({"logprobs": True}, "`logprobs`"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"top_k": 5}, "`top_k`"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
                    }
                ]
            },
            "data URLs",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
            "Bedrock",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AA=="}}
                        ],
                    }
                ]
            },
            "PNG",
        ),
        (
            {
                "tools": [{"type": "function", "function": {"name": "w"}}],
                "tool_choice": "none",
                "messages": [
                    *HI,
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "a", "type": "function", "function": {"name": "w", "arguments": "{}"}}
                        ],
                    },
                    {"role": "tool", "tool_call_id": "a", "content": "x"},
                ],
            },
            "tool_choice: none",
        ),
        ({"tool_choice": "required"}, "`tools` is empty"),
        ({"temperature": "hot"}, "`temperature`"),
        ({"messages": [{"role": "system", "content": "only"}]}, "at least one"),
    ],
)
def test_what_converse_cannot_take_is_refused_never_dropped(extra: dict[str, Any], named: str) -> None:
    with pytest.raises(UnsupportedContent) as caught:
        converse({"messages": HI, **extra})
    assert named in str(caught.value) and "Anthropic" not in str(caught.value)


def test_a_provider_without_region_or_with_a_non_aws_secret_is_refused_without_echo() -> None:
    with pytest.raises(UnsupportedContent, match="region"):
        chat_request({"messages": HI}, Upstream(MODEL, UP.base_url, UP.secret, config={}))
    with pytest.raises(UnsupportedContent) as caught:
        chat_request({"messages": HI}, Upstream(MODEL, UP.base_url, "sk-plain-secret-123", config=UP.config))
    assert "sk-plain" not in str(caught.value)


# -- answers ----------------------------------------------------------------------------------


def test_the_whole_answer_text_tools_reasoning_and_usage() -> None:
    data = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig"}}},
                    {"text": "Here."},
                    {"toolUse": {"toolUseId": "tu1", "name": "w", "input": {"city": "Oslo"}}},
                ],
            }
        },
        "stopReason": "tool_use",
        "usage": {
            "inputTokens": 10,
            "outputTokens": 7,
            "totalTokens": 32,
            "cacheReadInputTokens": 12,
            "cacheWriteInputTokens": 3,
        },
        "metrics": {"latencyMs": 5},
    }
    got = ADAPTER.chat_response(data)
    message = got.body["choices"][0]["message"]
    assert message["content"] == "Here." and message["reasoning_content"] == "hmm"
    assert message["tool_calls"] == [
        {"id": "tu1", "type": "function", "function": {"name": "w", "arguments": '{"city": "Oslo"}'}}
    ]
    assert message["thinking_blocks"] == [{"type": "thinking", "thinking": "hmm", "signature": "sig"}]
    assert got.finish_reason == "tool_calls"
    # inputTokens leaves the cache out, as Anthropic's input_tokens: prompt = 10 + 12 + 3.
    assert got.usage == Usage(prompt_tokens=25, completion_tokens=7, cached_tokens=12, cache_write_tokens=3)
    for reason, finish in (
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("stop_sequence", "stop"),
        ("guardrail_intervened", "content_filter"),
    ):
        assert ADAPTER.chat_response({**data, "stopReason": reason}).finish_reason == finish


def test_cache_writes_split_by_ttl_and_a_one_hour_cache_point() -> None:
    raw = {
        "inputTokens": 5,
        "outputTokens": 1,
        "cacheWriteInputTokens": 9,
        "cacheDetails": [{"ttl": "1h", "inputTokens": 4}, {"ttl": "5m", "inputTokens": 5}],
    }
    data = {
        "output": {"message": {"role": "assistant", "content": [{"text": "x"}]}},
        "stopReason": "end_turn",
        "usage": raw,
    }
    assert ADAPTER.chat_response(data).usage == Usage(
        prompt_tokens=14, completion_tokens=1, cache_write_tokens=9, cache_write_1h_tokens=4
    )
    assert ADAPTER.chat_response({**data, "usage": {**raw, "cacheDetails": {"ttl": "1h"}}}).usage is None
    part = {"type": "text", "text": "Long context", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    sent = converse({"messages": [{"role": "user", "content": [part]}]})
    assert sent["messages"][0]["content"] == [
        {"text": "Long context"},
        {"cachePoint": {"type": "default", "ttl": "1h"}},
    ]


@pytest.mark.parametrize("lie", [-1, 1.5, "10", True])
def test_an_impossible_usage_is_not_believed(lie: Any) -> None:
    data = {
        "output": {"message": {"role": "assistant", "content": [{"text": "x"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 3, "outputTokens": lie},
    }
    assert ADAPTER.chat_response(data).usage is None  # the gateway bills its estimate, within the hold


@pytest.mark.parametrize("garbage", [{}, {"output": {}}, {"output": {"message": {"content": "x"}}}, [], None])
def test_an_answer_without_a_message_is_unreadable(garbage: Any) -> None:
    with pytest.raises(ValueError):
        ADAPTER.chat_response(garbage)


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name", "kind", "retryable"),
    [
        (429, "ThrottlingException", FailureKind.RATE_LIMITED, True),
        (429, "ModelNotReadyException", FailureKind.OVERLOADED, True),
        (503, "ServiceUnavailableException", FailureKind.OVERLOADED, True),
        (500, "InternalServerException", FailureKind.SERVER, True),
        (424, "ModelErrorException", FailureKind.SERVER, True),
        (408, "ModelTimeoutException", FailureKind.TIMEOUT, True),
        (400, "ValidationException", FailureKind.INVALID, False),
        (404, "ResourceNotFoundException", FailureKind.INVALID, False),
        (403, "AccessDeniedException", FailureKind.FORBIDDEN, False),
        (403, "UnrecognizedClientException", FailureKind.AUTH, True),
        (403, "InvalidSignatureException", FailureKind.AUTH, True),
        (403, "ExpiredTokenException", FailureKind.AUTH, True),
    ],
)
def test_errors_by_their_type_in_the_header_or_the_body(
    status: int, name: str, kind: FailureKind, retryable: bool
) -> None:
    body = orjson.dumps({"message": f"about {name}"})
    by_header = ADAPTER.error_of(
        status,
        body,
        None,
        {"x-amzn-errortype": f"{name}:http://internal.amazon.com/coral/com.amazon.coral.service/"},
    )
    by_body = ADAPTER.error_of(
        status, orjson.dumps({"__type": f"com.amazon.bedrock#{name}", "message": "m"}), None, {}
    )
    for failure in (by_header, by_body):
        assert (failure.kind, failure.retryable) == (kind, retryable)
    assert by_header.message == f"about {name}"
    assert by_header.key_rejected is (kind is FailureKind.AUTH)


def test_a_rejected_token_by_its_text_and_unknown_errors_by_status() -> None:
    text = orjson.dumps({"Message": "The security token included in the request is invalid."})
    assert ADAPTER.error_of(403, text, None, {}).kind is FailureKind.AUTH
    assert ADAPTER.error_of(403, b"{}", None, {}).kind is FailureKind.FORBIDDEN
    assert ADAPTER.error_of(502, b"<html>", None, {}).kind is FailureKind.SERVER
    throttled = ADAPTER.error_of(429, b"", 9, {"x-amzn-errortype": "ThrottlingException"})
    assert (throttled.status, throttled.retry_after) == (429, 9)


# -- the stream -------------------------------------------------------------------------------


def _run(events: list[tuple[str, Any]]) -> tuple[list[dict[str, Any]], list[Any]]:
    decode = ADAPTER.stream_decoder()
    chunks: list[dict[str, Any]] = []
    steps = []
    for name, payload in events:
        step = decode(SseEvent(name, payload if isinstance(payload, bytes) else orjson.dumps(payload)))
        chunks += step.chunks
        steps.append(step)
    return chunks, steps


def test_a_stream_of_text_a_tool_call_reasoning_and_usage() -> None:
    chunks, steps = _run(
        [
            ("messageStart", {"role": "assistant"}),
            ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "think"}}}),
            (
                "contentBlockDelta",
                {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "s1"}}},
            ),
            ("contentBlockStop", {"contentBlockIndex": 0}),
            ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "Hel"}}),
            ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "lo"}}),
            ("contentBlockStop", {"contentBlockIndex": 1}),
            (
                "contentBlockStart",
                {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tu", "name": "w"}}},
            ),
            ("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '{"ci'}}}),
            ("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": 'ty":"x"}'}}}),
            ("contentBlockStop", {"contentBlockIndex": 2}),
            ("messageStop", {"stopReason": "tool_use"}),
            (
                "metadata",
                {
                    "usage": {
                        "inputTokens": 4,
                        "outputTokens": 9,
                        "totalTokens": 15,
                        "cacheReadInputTokens": 2,
                    },
                    "metrics": {"latencyMs": 1},
                },
            ),
        ]
    )
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert "".join(d.get("content") or "" for d in deltas) == "Hello"
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == "think"
    assert {"thinking_blocks": [{"type": "thinking", "thinking": "think", "signature": "s1"}]} in deltas
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0]["id"] == "tu" and "".join(c["function"]["arguments"] for c in calls) == '{"city":"x"}'
    assert steps[-2].finish_reason == "tool_calls" and not steps[-2].done
    assert steps[-1].done and steps[-1].usage == Usage(prompt_tokens=6, completion_tokens=9, cached_tokens=2)


def test_exceptions_and_garbage_inside_a_stream() -> None:
    _, steps = _run([("throttlingException", {"message": "slow down"})])
    assert steps[0].error is not None and steps[0].error.kind is FailureKind.RATE_LIMITED
    _, steps = _run([("modelStreamErrorException", {"message": "boom", "originalStatusCode": 500})])
    assert (
        steps[0].error is not None and steps[0].error.kind is FailureKind.SERVER and steps[0].error.retryable
    )
    _, steps = _run([("validationException", {"message": "bad"})])
    assert steps[0].error is not None and steps[0].error.kind is FailureKind.INVALID
    _, steps = _run([("contentBlockDelta", b"{not json"), ("contentBlockDelta", b"[1]")])
    assert all(s.error is not None and s.error.kind is FailureKind.PROTOCOL for s in steps)
    chunks, steps = _run(
        [
            ("contentBlockDelta", {"delta": "text"}),
            ("somethingNew", {}),
            ("metadata", {"usage": {"outputTokens": -4}}),
        ]
    )
    assert chunks == [] and steps[-1].done and steps[-1].usage is None  # a lying count is not believed


# -- the secret -------------------------------------------------------------------------------


def test_the_secret_is_read_strictly_naming_the_field_never_its_value() -> None:
    assert credentials(json.dumps(KEY)).session_token is None
    for bad, named in (
        ("AKIA:secret", "JSON object"),
        ("[1]", "JSON object"),
        (json.dumps({"access_key_id": "AKIA1"}), "secret_access_key"),
        (json.dumps({**KEY, "access_key_id": ""}), "access_key_id"),
        (json.dumps({**KEY, "session_token": 5}), "session_token"),
        (json.dumps({**KEY, "secret_access_key": "has space"}), "secret_access_key"),
        (json.dumps({**KEY, "region": "us-east-1"}), "region"),
    ):
        with pytest.raises(ValueError) as caught:
            credentials(bad)
        assert named in str(caught.value) and KEY["secret_access_key"] not in str(caught.value)
        assert "has space" not in str(caught.value)


def test_loading_the_adapters_does_not_load_botocore() -> None:
    code = (
        "import sys, nemorouter.providers.registry, nemorouter.engine.http; print('botocore' in sys.modules)"
    )
    assert (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "False"
    )
