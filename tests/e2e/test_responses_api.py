"""The official `openai` SDK's `client.responses` -> the gateway's `POST /v1/responses` -> the sim
speaking each upstream format (OpenAI, Anthropic, Gemini): plain, streamed (every event validated by
the SDK's own types), a function-call round trip and `text.format` json_schema, each charged exactly
(the response's `usage.cost` is the generation's charge and the account's spend) and the ledger
verified; stateful requests refused with the stateless alternative; built-in tools left out and
named in `x-nemo-omitted`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from conftest import Gateway, Sim, new_gateway

GPT = "openai/gpt-4o-mini"
CLAUDE = "anthropic/claude-sonnet-4-5"
FLASH = "google/gemini-2.5-flash"
MODELS = [GPT, CLAUDE, FLASH]
# The path each model's upstream request reaches on the sim: its own wire format.
UPSTREAM_PATH = {GPT: "/v1/chat/completions", CLAUDE: "/v1/messages", FLASH: ":generateContent"}
EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
        "additionalProperties": False,
    },
    "strict": True,
}
PLACE = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    """One gateway with the sim behind all three upstream formats."""
    gateway = new_gateway(tmp_path_factory.mktemp("responses"), sim=sim)
    gateway.cli("providers", "add", "anth", "--kind", "anthropic", "--base-url", sim.url)
    gateway.cli(
        "providers", "add-key", "anth", "--label", "main", input=f"sk-sim-anth-{secrets.token_hex(8)}\n"
    )
    gateway.cli("models", "import", "--vendor", "anthropic", "--provider", "anth")
    gateway.cli("providers", "add", "gem", "--kind", "gemini", "--base-url", sim.url)
    gateway.cli(
        "providers", "add-key", "gem", "--label", "main", input=f"AIzaSy-sim-{secrets.token_hex(8)}\n"
    )
    gateway.cli("models", "import", "--vendor", "google", "--provider", "gem")
    gateway.start()
    yield gateway
    assert gateway.stop() == 0


def charge(gw: Gateway, key: str, request_id: str) -> Decimal:
    found = httpx.get(
        f"{gw.url}/v1/generation", params={"id": request_id}, headers={"Authorization": f"Bearer {key}"}
    )
    assert found.status_code == 200, found.text
    cost: Decimal = json.loads(found.text, parse_float=Decimal)["data"]["total_cost"]
    return cost


def spent(gw: Gateway, account: str) -> Decimal:
    return Decimal(str(gw.balance(account)["total_usage"]))


def create(client: openai.OpenAI, **kwargs: Any) -> tuple[Response, Decimal, str, httpx.Headers]:
    """The typed Response, its exact `usage.cost`, its request id and the headers."""
    raw = client.responses.with_raw_response.create(**kwargs)
    response = raw.parse()
    body = json.loads(raw.http_response.text, parse_float=Decimal)
    Response.model_validate(body)
    cost: Decimal = body["usage"]["cost"]
    assert Decimal(raw.headers["x-nemo-cost"]) == cost
    assert response.id == raw.headers["x-nemo-request-id"]
    return response, cost, raw.headers["x-nemo-request-id"], raw.headers


def streamed(client: openai.OpenAI, **kwargs: Any) -> tuple[list[Any], dict[str, Any], str]:
    """Every event of a streamed response, each validated by the SDK's event types, the final
    Response (money as Decimal, read from the raw frame) and the request id."""
    events, frames = [], []
    raw = client.responses.with_raw_response.create(stream=True, **kwargs)
    request_id = raw.headers["x-nemo-request-id"]
    for line in raw.http_response.iter_lines():
        if line.startswith("data: "):
            data = json.loads(line[6:], parse_float=Decimal)
            frames.append(data)
            events.append(EVENT.validate_python(json.loads(line[6:])))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[-1].type == "response.completed"
    final: dict[str, Any] = frames[-1]["response"]
    return events, final, request_id


def assert_charged(gw: Gateway, key: str, account: str, request_id: str, cost: Decimal) -> None:
    assert cost > 0
    assert charge(gw, key, request_id) == cost
    assert spent(gw, account) == cost
    assert gw.verify()["ok"] is True


@pytest.mark.parametrize("model", MODELS)
def test_plain_answer_is_a_response_charged_exactly(gw: Gateway, model: str, sim: Sim) -> None:
    account = gw.account("2.00")
    key = gw.key(account)
    response, cost, request_id, _ = create(
        gw.openai(key),
        model=model,
        instructions="Be brief.",
        input="Hello there rs-plain",
        max_output_tokens=60,
    )
    assert response.status == "completed" and response.object == "response"
    assert response.output_text and response.output[0].type == "message"
    assert response.usage is not None
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.max_output_tokens == 60 and response.instructions == "Be brief."
    upstream = [r for r in sim.requests() if "rs-plain" in json.dumps(r["body"])][-1]
    assert upstream["path"].endswith(UPSTREAM_PATH[model])
    assert_charged(gw, key, account, request_id, cost)


@pytest.mark.parametrize("model", MODELS)
def test_stream_is_the_documented_event_sequence_charged_exactly(gw: Gateway, model: str) -> None:
    account = gw.account("2.00")
    key = gw.key(account)
    events, final, request_id = streamed(gw.openai(key), model=model, input="Tell me a story rs-stream")
    kinds = [e.type for e in events]
    for needed in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ):
        assert needed in kinds
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert Response.model_validate(final).output_text == text != ""
    assert final["id"] == request_id
    assert_charged(gw, key, account, request_id, final["usage"]["cost"])


@pytest.mark.parametrize("model", MODELS)
def test_function_call_round_trip(gw: Gateway, model: str, sim: Sim) -> None:
    account = gw.account("2.00")
    key = gw.key(account)
    client = gw.openai(key)
    tools: list[Any] = [WEATHER, {"type": "web_search"}]
    first, cost_1, id_1, headers = create(
        client, model=model, input="Weather in Paris? rs-tools", tools=tools
    )
    assert headers["x-nemo-omitted"] == "tools.web_search"
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    arguments = json.loads(calls[0].arguments)
    assert isinstance(arguments["city"], str) and isinstance(arguments["days"], int)
    follow_up = [
        {"role": "user", "content": "Weather in Paris? rs-tools"},
        *[item.model_dump(exclude_none=True) for item in first.output],
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": '{"sky": "clear"}'},
    ]
    events, final, id_2 = streamed(client, model=model, input=follow_up, tools=tools)
    assert Response.model_validate(final).output_text
    assert not [e for e in events if e.type.startswith("response.function_call_arguments")]
    seen = [r for r in sim.requests() if '{\\"sky\\": \\"clear\\"}' in json.dumps(r["body"])]
    assert seen, "the tool's output never reached the upstream"
    assert charge(gw, key, id_1) == cost_1 and charge(gw, key, id_2) == final["usage"]["cost"]
    assert spent(gw, account) == cost_1 + final["usage"]["cost"]
    assert gw.verify()["ok"] is True


def test_a_streamed_function_call_streams_its_arguments(gw: Gateway) -> None:
    account = gw.account("2.00")
    key = gw.key(account)
    events, final, request_id = streamed(
        gw.openai(key), model=GPT, input="Weather? rs-stream-tool", tools=[WEATHER]
    )
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert len(done) == 1 and done[0].arguments == deltas and done[0].name == "get_weather"
    assert final["output"][-1]["arguments"] == deltas
    assert_charged(gw, key, account, request_id, final["usage"]["cost"])


@pytest.mark.parametrize("model", MODELS)
def test_json_schema_output(gw: Gateway, model: str) -> None:
    account = gw.account("2.00")
    key = gw.key(account)
    fmt = {"type": "json_schema", "name": "place", "schema": PLACE, "strict": True}
    response, cost, request_id, _ = create(
        gw.openai(key), model=model, input="A city rs-json", text={"format": fmt}
    )
    place = json.loads(response.output_text)
    assert isinstance(place["city"], str) and isinstance(place["population"], int)
    assert_charged(gw, key, account, request_id, cost)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [({"previous_response_id": "resp_1"}, "previous_response_id"), ({"store": True}, "store: true")],
)
def test_stateful_requests_are_refused_with_the_alternative(
    gw: Gateway, extra: dict[str, Any], needle: str
) -> None:
    account = gw.account("1.00")
    client = gw.openai(gw.key(account))
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=GPT, input="hi", **extra)
    error = caught.value.body
    assert isinstance(error, dict) and needle in error["message"]
    assert "send the whole conversation as `input`, with `store: false`" in error["message"]
    assert caught.value.response.headers["x-nemo-request-id"]
    assert spent(gw, account) == 0


def test_an_unknown_model_is_a_404_in_the_openai_error_shape(gw: Gateway) -> None:
    client = gw.openai(gw.key(gw.account("1.00")))
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="nope/nothing", input="hi")
    assert isinstance(caught.value.body, dict) and caught.value.body["type"]


def test_claude_thinking_round_trips_through_encrypted_content(gw: Gateway, sim: Sim) -> None:
    """Codex's way with `store: false`: the reasoning item's `encrypted_content` goes back with the
    function call's output, and Anthropic gets its signed thinking block back before the tool use."""
    account = gw.account("2.00")
    key = gw.key(account)
    client = gw.openai(key)
    ask = {"role": "user", "content": "Weather? [sim:thinking=12] rs-think"}
    settings: dict[str, Any] = {
        "model": CLAUDE,
        "tools": [WEATHER],
        "reasoning": {"effort": "low", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "store": False,
    }
    events, first, id_1 = streamed(client, input=[ask], **settings)
    kinds = [item["type"] for item in first["output"]]
    assert kinds == ["reasoning", "function_call"], kinds
    reasoning, call = first["output"]
    assert reasoning["summary"][0]["text"] and reasoning["encrypted_content"]
    assert any(e.type == "response.reasoning_summary_text.delta" for e in events)
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}
    _, follow, id_2 = streamed(client, input=[ask, *first["output"], output], **settings)
    assert Response.model_validate(follow).output_text
    upstream = [
        r for r in sim.requests() if r["path"] == "/v1/messages" and "sunny" in json.dumps(r["body"])
    ][-1]
    turn = upstream["body"]["messages"][1]
    assert turn["role"] == "assistant"
    assert [b["type"] for b in turn["content"]] == ["thinking", "tool_use"]
    assert turn["content"][0]["thinking"] == reasoning["summary"][0]["text"]
    assert turn["content"][0]["signature"]
    costs = first["usage"]["cost"] + follow["usage"]["cost"]
    assert charge(gw, key, id_1) + charge(gw, key, id_2) == costs == spent(gw, account)
    assert gw.verify()["ok"] is True


@pytest.mark.parametrize("model", [GPT, CLAUDE])
def test_error_mid_stream_is_error_then_response_failed_and_the_output_is_charged(
    gw: Gateway, model: str
) -> None:
    account = gw.account("1.00")
    key = gw.key(account)
    raw = gw.openai(key).responses.with_raw_response.create(
        model=model, input="Fail soon rs-err [sim:tokens=20,error_after=3]", stream=True
    )
    request_id = raw.headers["x-nemo-request-id"]
    frames = []
    for line in raw.http_response.iter_lines():
        if line.startswith("data: "):
            EVENT.validate_python(json.loads(line[6:]))
            frames.append(json.loads(line[6:], parse_float=Decimal))
    kinds = [f["type"] for f in frames]
    assert kinds[-2:] == ["error", "response.failed"] and "response.completed" not in kinds
    assert kinds.count("response.output_text.delta") == 3
    failed = frames[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    assert failed["usage"]["output_tokens"] == 3
    found = httpx.get(
        f"{gw.url}/v1/generation", params={"id": request_id}, headers={"Authorization": f"Bearer {key}"}
    ).json()["data"]
    assert found["status"] == "partial"
    assert charge(gw, key, request_id) == failed["usage"]["cost"] == spent(gw, account) > 0
    assert gw.verify()["ok"] is True
