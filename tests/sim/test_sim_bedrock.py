"""The sim's Bedrock Converse wire against the official client: boto3's `bedrock-runtime`
`converse` and `converse_stream` parse every answer (text, tool use, usage, errors), and its
SigV4 check refuses a wrong secret or an unknown access key as AWS does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError

MODEL = "anthropic.claude-haiku-4-5-20251001-v1:0"
KEY_ID = "AKIASIMTESTKEY000001"
SECRET = "sk-sim-" + KEY_ID  # the sim's rule for AKIASIM... ids when no keys are configured
TOOLS = {
    "tools": [
        {
            "toolSpec": {
                "name": "get_weather",
                "description": "Weather for a city",
                "inputSchema": {
                    "json": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    }
                },
            }
        }
    ]
}


def _client(url: str, key_id: str = KEY_ID, secret: str = SECRET) -> Any:
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def bedrock(sim_url: str) -> Iterator[Any]:
    yield _client(sim_url)


def _ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"text": text}]}]


def test_converse_text_and_usage_in_bedrocks_conventions(bedrock: Any) -> None:
    got = bedrock.converse(
        modelId=MODEL,
        messages=_ask("Hello there [sim:tokens=5,cached=3,cache_write=2]"),
        system=[{"text": "Be brief."}],
        inferenceConfig={"maxTokens": 50, "temperature": 0.5},
    )
    assert got["stopReason"] == "end_turn"
    text = got["output"]["message"]["content"][0]["text"]
    assert len(text.split()) == 5
    usage = got["usage"]
    assert usage["outputTokens"] == 5
    assert (usage["cacheReadInputTokens"], usage["cacheWriteInputTokens"]) == (3, 2)
    # inputTokens leaves the cache out; totalTokens is all four.
    parts = usage["inputTokens"] + usage["cacheReadInputTokens"] + usage["cacheWriteInputTokens"]
    assert usage["totalTokens"] == parts + usage["outputTokens"]
    assert got["metrics"]["latencyMs"] >= 0
    assert "cacheDetails" in usage and usage["cacheDetails"] == [{"ttl": "5m", "inputTokens": 2}]
    split = bedrock.converse(modelId=MODEL, messages=_ask("Hi [sim:cache_write=2,cache_write_1h=3]"))["usage"]
    assert split["cacheWriteInputTokens"] == 5
    assert split["cacheDetails"] == [{"ttl": "1h", "inputTokens": 3}, {"ttl": "5m", "inputTokens": 2}]


def test_converse_max_tokens_cuts_and_says_so(bedrock: Any) -> None:
    got = bedrock.converse(
        modelId=MODEL, messages=_ask("Talk [sim:tokens=40]"), inferenceConfig={"maxTokens": 7}
    )
    assert got["stopReason"] == "max_tokens" and got["usage"]["outputTokens"] == 7


def test_converse_tool_use_and_the_answer_after_a_tool_result(bedrock: Any) -> None:
    got = bedrock.converse(
        modelId=MODEL,
        messages=_ask("Weather in Paris?"),
        toolConfig={**TOOLS, "toolChoice": {"any": {}}},
        inferenceConfig={"maxTokens": 200},
    )
    assert got["stopReason"] == "tool_use"
    use = got["output"]["message"]["content"][0]["toolUse"]
    assert use["name"] == "get_weather" and isinstance(use["input"]["city"], str)
    follow = bedrock.converse(
        modelId=MODEL,
        messages=[
            *_ask("Weather in Paris?"),
            {"role": "assistant", "content": [{"toolUse": use}]},
            {
                "role": "user",
                "content": [{"toolResult": {"toolUseId": use["toolUseId"], "content": [{"text": "sunny"}]}}],
            },
        ],
        toolConfig=TOOLS,
        inferenceConfig={"maxTokens": 200},
    )
    assert follow["stopReason"] == "end_turn" and follow["output"]["message"]["content"][0]["text"]


def test_converse_stream_text_tools_and_usage_match_the_whole_answer(bedrock: Any) -> None:
    ask = {
        "modelId": MODEL,
        "messages": _ask("Stream me [sim:tokens=6]"),
        "inferenceConfig": {"maxTokens": 50},
    }
    whole = bedrock.converse(**ask)
    events = list(bedrock.converse_stream(**ask)["stream"])
    names = [next(iter(e)) for e in events]
    assert names[0] == "messageStart" and names[-2:] == ["messageStop", "metadata"]
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == whole["output"]["message"]["content"][0]["text"]
    assert events[-1]["metadata"]["usage"] == whole["usage"]
    tools = list(
        bedrock.converse_stream(
            modelId=MODEL,
            messages=_ask("Weather?"),
            toolConfig={**TOOLS, "toolChoice": {"tool": {"name": "get_weather"}}},
            inferenceConfig={"maxTokens": 200},
        )["stream"]
    )
    start = next(e["contentBlockStart"]["start"]["toolUse"] for e in tools if "contentBlockStart" in e)
    assert start["name"] == "get_weather"
    args = "".join(
        e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in tools if "contentBlockDelta" in e
    )
    assert '"city"' in args and tools[-2]["messageStop"]["stopReason"] == "tool_use"


def test_a_throttle_is_bedrocks_throttling_exception_whole_and_in_a_stream(bedrock: Any) -> None:
    with pytest.raises(ClientError) as caught:
        bedrock.converse(modelId=MODEL, messages=_ask("[sim:status=429]"))
    assert caught.value.response["Error"]["Code"] == "ThrottlingException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    stream = bedrock.converse_stream(modelId=MODEL, messages=_ask("Go [sim:tokens=5,throttle_after=2]"))[
        "stream"
    ]
    with pytest.raises(EventStreamError) as streamed:
        list(stream)
    assert streamed.value.response["Error"]["Code"] == "throttlingException"


def test_a_wrong_secret_or_an_unknown_key_is_refused_as_aws_refuses_it(sim_url: str) -> None:
    with pytest.raises(ClientError) as wrong:
        _client(sim_url, secret=SECRET + "x").converse(modelId=MODEL, messages=_ask("hi"))
    assert wrong.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert wrong.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as unknown:
        _client(sim_url, key_id="AKIAUNKNOWNKEY000001").converse(modelId=MODEL, messages=_ask("hi"))
    assert unknown.value.response["Error"]["Code"] == "UnrecognizedClientException"
    unsigned = httpx.post(f"{sim_url}/model/{MODEL}/converse", json={"messages": _ask("hi")})
    assert unsigned.status_code == 403
    assert unsigned.headers["x-amzn-errortype"].startswith("MissingAuthenticationTokenException")


def test_a_signed_request_whose_body_was_changed_fails_the_signature(sim_url: str) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"{sim_url}/model/{MODEL.replace(':', '%3A')}/converse"
    signed = AWSRequest(
        method="POST", url=url, data=b'{"messages":[]}', headers={"Content-Type": "application/json"}
    )
    SigV4Auth(Credentials(KEY_ID, SECRET), "bedrock", "us-east-1").add_auth(signed)
    body = b'{"messages":[{"role":"user","content":[{"text":"tampered"}]}]}'
    got = httpx.post(url, content=body, headers=dict(signed.headers.items()))
    assert got.status_code == 403 and got.headers["x-amzn-errortype"].startswith("InvalidSignatureException")
    good = httpx.post(url, content=b'{"messages":[]}', headers=dict(signed.headers.items()))
    assert good.status_code == 400  # signed right; the empty conversation is Bedrock's ValidationException
    assert good.headers["x-amzn-errortype"].startswith("ValidationException")


def test_converse_refuses_tool_blocks_without_a_tool_config(bedrock: Any) -> None:
    with pytest.raises(ClientError) as caught:
        bedrock.converse(
            modelId=MODEL,
            messages=[
                *_ask("Weather?"),
                {
                    "role": "assistant",
                    "content": [{"toolUse": {"toolUseId": "t1", "name": "w", "input": {}}}],
                },
                {
                    "role": "user",
                    "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "x"}]}}],
                },
            ],
        )
    assert caught.value.response["Error"]["Code"] == "ValidationException"


# -- InvokeModel for Claude, as anthropic.AnthropicBedrock calls it ------------------------------


def _anthropic_bedrock(url: str, secret: str = SECRET) -> Any:
    from anthropic import AnthropicBedrock

    return AnthropicBedrock(
        aws_access_key=KEY_ID, aws_secret_key=secret, aws_region="us-east-1", base_url=url, max_retries=0
    )


def test_invoke_model_whole_and_streamed_through_the_anthropic_bedrock_client(sim_url: str) -> None:
    client = _anthropic_bedrock(sim_url)
    ask = {
        "model": MODEL,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Hi [sim:tokens=5,cached=2]"}],
    }
    message = client.messages.create(**ask)
    assert message.stop_reason == "end_turn" and len(message.content[0].text.split()) == 5
    assert (message.usage.output_tokens, message.usage.cache_read_input_tokens) == (5, 2)
    with client.messages.stream(**ask) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == message.content[0].text and final.usage.output_tokens == 5
    tools = [
        {
            "name": "get_weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    called = client.messages.create(**{**ask, "tools": tools, "tool_choice": {"type": "any"}})
    assert called.stop_reason == "tool_use" and called.content[0].name == "get_weather"


def test_invoke_model_refuses_a_wrong_secret_and_throttles_as_bedrock(sim_url: str) -> None:
    import anthropic

    with pytest.raises(anthropic.PermissionDeniedError) as wrong:
        _anthropic_bedrock(sim_url, SECRET + "x").messages.create(
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert "signature" in str(wrong.value)
    with pytest.raises(anthropic.RateLimitError):
        _anthropic_bedrock(sim_url).messages.create(
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi [sim:status=429]"}]
        )
