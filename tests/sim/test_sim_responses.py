"""The sim's `POST /v1/responses`: OpenAI's Responses wire as the official SDK types it (a Response,
the `response.*` event sequence), refusing what OpenAI refuses, with the chat planner's replies,
counts and `[sim:...]` directives."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
TOOL = {
    "type": "function",
    "name": "lookup",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
}


def events_of(url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    answer = httpx.post(
        f"{url}/v1/responses",
        json={"model": "gpt-4o-mini", "stream": True, **body},
        headers={"Authorization": "Bearer sk-sim-test"},
        timeout=20,
    )
    assert answer.status_code == 200, answer.text
    frames = [json.loads(line[6:]) for line in answer.text.splitlines() if line.startswith("data: ")]
    names = [line[7:] for line in answer.text.splitlines() if line.startswith("event: ")]
    assert names == [f["type"] for f in frames]  # each frame's `event:` is its type
    for frame in frames:
        EVENT.validate_python(frame)
    assert [f["sequence_number"] for f in frames] == list(range(len(frames)))
    return frames


def test_a_plain_answer_is_a_response_with_responses_usage(client: OpenAI) -> None:
    answer = client.responses.create(model="gpt-4o-mini", input="hello [sim:tokens=7]", max_output_tokens=40)
    assert answer.status == "completed" and len(answer.output_text.split()) == 7
    assert answer.usage is not None and answer.usage.output_tokens == 7 and answer.usage.input_tokens > 0
    assert answer.usage.total_tokens == answer.usage.input_tokens + answer.usage.output_tokens
    again = client.responses.create(model="gpt-4o-mini", input="hello [sim:tokens=7]", max_output_tokens=40)
    assert again.output_text == answer.output_text  # deterministic, like the chat route


def test_the_limit_cuts_the_answer_and_marks_it_incomplete(client: OpenAI) -> None:
    answer = client.responses.create(model="gpt-4o-mini", input="hi [sim:tokens=50]", max_output_tokens=16)
    assert answer.status == "incomplete" and answer.incomplete_details is not None
    assert answer.incomplete_details.reason == "max_output_tokens"
    assert answer.usage is not None and answer.usage.output_tokens == 16


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"max_output_tokens": 15}, "Expected a value >= 16"),
        ({"max_completion_tokens": 20}, "Unknown parameter: 'max_completion_tokens'"),
        (
            {"store": False, "input": [{"type": "reasoning", "id": "rs_1", "summary": []}]},
            "Items are not persisted when `store` is set to false",
        ),
        (
            {"input": [{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "forged"}]},
            "could not be verified",
        ),
    ],
)
def test_what_openai_refuses_is_a_400(client: OpenAI, extra: dict[str, Any], needle: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="gpt-4o-mini", input="hi", extra_body=extra)
    assert needle in str(caught.value)


def test_the_stream_is_the_documented_sequence_ending_with_usage(sim_url: str) -> None:
    frames = events_of(
        sim_url, {"input": "story [sim:tokens=5,reasoning=3]", "include": ["reasoning.encrypted_content"]}
    )
    kinds = [f["type"] for f in frames]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed" and kinds.count("response.output_text.delta") == 5
    final = Response.model_validate(frames[-1]["response"])
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.usage is not None and final.usage.output_tokens == 8
    assert final.usage.output_tokens_details.reasoning_tokens == 3
    done = next(f for f in frames if f["type"] == "response.output_item.done")["item"]
    assert done["encrypted_content"].startswith("sim_enc_")


def test_a_streamed_function_call(sim_url: str) -> None:
    frames = events_of(sim_url, {"input": "find it", "tools": [TOOL]})
    deltas = "".join(f["delta"] for f in frames if f["type"] == "response.function_call_arguments.delta")
    assert json.loads(deltas)["q"]
    final = frames[-1]["response"]
    assert final["output"][0]["type"] == "function_call" and final["output"][0]["arguments"] == deltas


def test_directives_lie_about_usage_and_fail_mid_stream(sim_url: str, client: OpenAI) -> None:
    scaled = client.responses.create(
        model="gpt-4o-mini", input="x [sim:tokens=20,usage_scale=10]", max_output_tokens=20
    )
    assert (
        scaled.usage is not None
        and scaled.usage.output_tokens == 200
        and len(scaled.output_text.split()) == 20
    )
    frames = events_of(sim_url, {"input": "y [sim:tokens=20,error_after=4]"})
    assert [f["type"] for f in frames].count("response.output_text.delta") == 4
    assert frames[-1]["type"] == "response.failed" and frames[-1]["response"]["usage"] is None
    assert frames[-1]["response"]["error"]["code"] == "server_error"
    bare = events_of(sim_url, {"input": "z [sim:tokens=3,no_usage=1]"})
    assert bare[-1]["type"] == "response.completed" and bare[-1]["response"]["usage"] is None
