"""Issue 24 scope 1, the native path: the official `openai` SDK's `client.responses` -> the gateway's
`POST /v1/responses` -> an OpenAI provider flagged `config.responses_api` -> the sim's own
`POST /v1/responses` (not Chat Completions), plain, streamed (every event validated by the SDK's
types), a function-call round trip carrying OpenAI's encrypted reasoning items back unchanged, and
`text.format` json_schema. Each upstream request carries `max_output_tokens` = the limit the hold
was sized from and `store: false`; each charge is exactly the upstream's reported usage at list
price, the generation's charge and the account's spend; `ledger verify` stays ok.
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
from openai.types.responses import Response

from conftest import SIM_PROVIDER_SECRET, Gateway, Sim, new_gateway
from e2e.test_responses_api import EVENT, PLACE, WEATHER  # the same tool, schema and event type

GPT = "openai/gpt-4o-mini"
GPT_MAX_OUTPUT = 16384  # the bundled catalog's max_output for gpt-4o-mini (data/catalog.csv)
M = Decimal(10**6)
GPT_IN, GPT_OUT, GPT_CACHED = Decimal("0.15"), Decimal("0.6"), Decimal("0.075")  # USD per 1M


def native_gateway(base: Any, sim: Sim) -> Gateway:
    """A gateway whose OpenAI provider speaks the Responses API (`--responses-api`)."""
    gateway = new_gateway(base, sim=None)
    gateway.cli(
        "providers", "add", "oai", "--kind", "openai", "--base-url", f"{sim.url}/v1", "--responses-api"
    )
    gateway.cli("providers", "add-key", "oai", "--label", "main", input=SIM_PROVIDER_SECRET + "\n")
    gateway.cli("models", "import", "--vendor", "openai", "--provider", "oai")
    return gateway


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gateway = native_gateway(tmp_path_factory.mktemp("responses-native"), sim)
    gateway.start()
    yield gateway
    assert gateway.stop() == 0


def upstream_of(sim: Sim, marker: str) -> dict[str, Any]:
    """The last request the sim received whose body contains `marker`."""
    found = [r for r in sim.requests() if marker in json.dumps(r["body"])]
    assert found, f"no upstream request carried {marker}"
    return found[-1]


def record(gw: Gateway, key: str, request_id: str) -> dict[str, Any]:
    found = httpx.get(
        f"{gw.url}/v1/generation", params={"id": request_id}, headers={"Authorization": f"Bearer {key}"}
    )
    assert found.status_code == 200, found.text
    data: dict[str, Any] = json.loads(found.text, parse_float=Decimal)["data"]
    return data


def list_price(usage: dict[str, Any]) -> Decimal:
    """gpt-4o-mini's list price of a Responses usage (cached tokens inside input_tokens)."""
    cached = usage["input_tokens_details"]["cached_tokens"]
    return (
        (usage["input_tokens"] - cached) * GPT_IN + cached * GPT_CACHED + usage["output_tokens"] * GPT_OUT
    ) / M


def hold_of(gw: Gateway, body: dict[str, Any]) -> Decimal:
    """The worst case held for a Responses `body`: the `needed` of a key that affords nothing."""
    probe = gw.key(gw.account("1.00"), limit="0.000000000001")
    refused = httpx.post(f"{gw.url}/v1/responses", json=body, headers={"Authorization": f"Bearer {probe}"})
    assert refused.status_code == 402, refused.text
    needed: Decimal = json.loads(refused.text, parse_float=Decimal)["error"]["needed"]
    return needed


def assert_exact(gw: Gateway, key: str, account: str, request_id: str, usage: dict[str, Any]) -> None:
    """Charged exactly the reported usage at list price, recorded as such, spent once."""
    cost: Decimal = usage["cost"]
    assert cost == list_price(usage) > 0
    found = record(gw, key, request_id)
    assert found["total_cost"] == cost
    assert found["tokens"]["prompt"] == usage["input_tokens"]
    assert found["tokens"]["completion"] == usage["output_tokens"]
    assert Decimal(str(gw.balance(account)["total_usage"])) == cost
    assert gw.verify()["ok"] is True


def create(client: openai.OpenAI, **kwargs: Any) -> tuple[Response, dict[str, Any], httpx.Headers]:
    raw = client.responses.with_raw_response.create(**kwargs)
    response = raw.parse()
    body = json.loads(raw.http_response.text, parse_float=Decimal)
    Response.model_validate(body)
    assert Decimal(raw.headers["x-nemo-cost"]) == body["usage"]["cost"]
    return response, body, raw.headers


def streamed(client: openai.OpenAI, **kwargs: Any) -> tuple[list[Any], dict[str, Any], str]:
    events, frames = [], []
    raw = client.responses.with_raw_response.create(stream=True, **kwargs)
    for line in raw.http_response.iter_lines():
        if line.startswith("data: "):
            frames.append(json.loads(line[6:], parse_float=Decimal))
            events.append(EVENT.validate_python(json.loads(line[6:])))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[-1].type == "response.completed"
    return events, frames[-1]["response"], raw.headers["x-nemo-request-id"]


@pytest.mark.parametrize("limit", [60, None], ids=["client-limit", "catalog-limit"])
def test_plain_answer_goes_to_the_upstreams_responses_api_with_the_held_limit(
    gw: Gateway, sim: Sim, limit: int | None
) -> None:
    account = gw.account("2.00")
    key = gw.key(account)
    marker = f"rn-plain-{secrets.token_hex(3)}"
    request: dict[str, Any] = {"model": GPT, "instructions": "Be brief.", "input": f"Hello {marker}"}
    if limit is not None:
        request["max_output_tokens"] = limit
    hold = hold_of(gw, request)
    response, body, headers = create(gw.openai(key), **request)
    assert response.status == "completed" and response.output_text
    assert response.id == headers["x-nemo-request-id"]
    upstream = upstream_of(sim, marker)
    assert upstream["path"] == "/v1/responses"
    sent = upstream["body"]
    assert sent["max_output_tokens"] == (limit or GPT_MAX_OUTPUT)
    assert sent["store"] is False and sent["model"] == "gpt-4o-mini"
    assert not {"max_completion_tokens", "max_tokens", "messages", "responses_passthrough"} & set(sent)
    # The hold is sized from that same limit: its output part is the limit at the output price.
    assert hold >= (limit or GPT_MAX_OUTPUT) * GPT_OUT / M
    assert body["usage"]["cost"] <= hold
    assert_exact(gw, key, account, headers["x-nemo-request-id"], body["usage"])


def test_stream_is_relayed_from_the_upstreams_events_and_charged_exactly(gw: Gateway, sim: Sim) -> None:
    account = gw.account("2.00")
    key = gw.key(account)
    marker = f"rn-stream-{secrets.token_hex(3)}"
    events, final, request_id = streamed(
        gw.openai(key), model=GPT, input=f"Tell me a story {marker} [sim:tokens=30]", max_output_tokens=100
    )
    kinds = [e.type for e in events]
    for needed in ("response.output_item.added", "response.content_part.added", "response.output_text.done"):
        assert needed in kinds
    assert kinds.count("response.output_text.delta") == 30
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert Response.model_validate(final).output_text == text
    upstream = upstream_of(sim, marker)
    assert upstream["path"] == "/v1/responses"
    assert upstream["body"]["stream"] is True and upstream["body"]["max_output_tokens"] == 100
    assert final["usage"]["output_tokens"] == 30
    assert_exact(gw, key, account, request_id, final["usage"])


def test_function_call_round_trip_carries_openais_encrypted_reasoning_back(gw: Gateway, sim: Sim) -> None:
    """Codex's way with `store: false`: the reasoning item (OpenAI's own `encrypted_content`, which
    the gateway cannot read) goes back with the function call's output, unchanged, and the sim
    (like OpenAI) refuses a reasoning item whose content it did not write."""
    account = gw.account("2.00")
    key = gw.key(account)
    client = gw.openai(key)
    marker = f"rn-tools-{secrets.token_hex(3)}"
    ask = {"role": "user", "content": f"Weather in Paris? {marker} [sim:reasoning=7]"}
    settings: dict[str, Any] = {
        "model": GPT,
        "tools": [WEATHER, {"type": "web_search"}],
        "reasoning": {"effort": "low", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "store": False,
    }
    first, body_1, headers = create(client, input=[ask], **settings)
    # web_search bills per call, which no hold covers: still left out, and named.
    assert headers["x-nemo-omitted"] == "tools.web_search"
    assert [item.type for item in first.output] == ["reasoning", "function_call"]
    reasoning, call = first.output
    assert reasoning.type == "reasoning" and call.type == "function_call"
    assert reasoning.encrypted_content and reasoning.encrypted_content.startswith("sim_enc_")
    assert reasoning.id.startswith("rs_") and call.name == "get_weather"
    json.loads(call.arguments)
    sent_1 = upstream_of(sim, marker)["body"]
    assert sent_1["include"] == ["reasoning.encrypted_content"]
    assert sent_1["reasoning"] == {"effort": "low", "summary": "auto"}
    assert [t["type"] for t in sent_1["tools"]] == ["function"] and sent_1["tools"][0]["strict"] is True
    assert body_1["usage"]["output_tokens_details"]["reasoning_tokens"] == 7
    assert_exact(gw, key, account, headers["x-nemo-request-id"], body_1["usage"])

    output = {"type": "function_call_output", "call_id": call.call_id, "output": '{"sky": "clear"}'}
    items = [ask, *[item.model_dump(exclude_none=True) for item in first.output], output]
    _, final, id_2 = streamed(client, input=items, **settings)
    assert Response.model_validate(final).output_text
    sent_2 = [r for r in sim.requests() if '{\\"sky\\": \\"clear\\"}' in json.dumps(r["body"])][-1]["body"]
    kinds = [item.get("type") for item in sent_2["input"]]
    assert kinds == ["message", "reasoning", "function_call", "function_call_output"], kinds
    assert sent_2["input"][1]["encrypted_content"] == reasoning.encrypted_content
    assert sent_2["input"][1]["id"] == reasoning.id
    assert sent_2["input"][2]["call_id"] == call.call_id
    total = body_1["usage"]["cost"] + final["usage"]["cost"]
    assert record(gw, key, id_2)["total_cost"] == final["usage"]["cost"] == list_price(final["usage"])
    assert Decimal(str(gw.balance(account)["total_usage"])) == total
    assert gw.verify()["ok"] is True


def test_a_streamed_reasoning_item_keeps_the_upstreams_id_and_encrypted_content(
    gw: Gateway, sim: Sim
) -> None:
    account = gw.account("2.00")
    key = gw.key(account)
    events, final, request_id = streamed(
        gw.openai(key),
        model=GPT,
        input="Think first [sim:reasoning=5,tokens=4] rn-think",
        include=["reasoning.encrypted_content"],
        store=False,
    )
    added = [e for e in events if e.type == "response.output_item.added"]
    done = [e for e in events if e.type == "response.output_item.done"]
    assert [e.item.type for e in added] == ["reasoning", "message"] == [e.item.type for e in done]
    assert added[0].item.id == done[0].item.id == final["output"][0]["id"]
    assert done[0].item.encrypted_content == final["output"][0]["encrypted_content"]
    assert final["output"][0]["encrypted_content"].startswith("sim_enc_")
    assert final["usage"]["output_tokens"] == 9
    assert_exact(gw, key, account, request_id, final["usage"])


def test_a_streamed_function_call(gw: Gateway, sim: Sim) -> None:
    account = gw.account("2.00")
    key = gw.key(account)
    events, final, request_id = streamed(
        gw.openai(key), model=GPT, input="Weather? rn-stool", tools=[WEATHER]
    )
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert len(done) == 1 and done[0].arguments == deltas and done[0].name == "get_weather"
    assert final["output"][-1]["arguments"] == deltas and json.loads(deltas)
    assert upstream_of(sim, "rn-stool")["path"] == "/v1/responses"
    assert_exact(gw, key, account, request_id, final["usage"])


def test_json_schema_output(gw: Gateway, sim: Sim) -> None:
    account = gw.account("2.00")
    key = gw.key(account)
    fmt = {"type": "json_schema", "name": "place", "schema": PLACE, "strict": True}
    response, body, headers = create(gw.openai(key), model=GPT, input="A city rn-json", text={"format": fmt})
    place = json.loads(response.output_text)
    assert isinstance(place["city"], str) and isinstance(place["population"], int)
    sent = upstream_of(sim, "rn-json")
    assert sent["path"] == "/v1/responses" and sent["body"]["text"]["format"] == fmt
    assert_exact(gw, key, account, headers["x-nemo-request-id"], body["usage"])


def test_a_limit_below_openais_minimum_keeps_chat_completions(gw: Gateway, sim: Sim) -> None:
    """OpenAI refuses `max_output_tokens` under 16 and the hold covers only the client's limit, so
    such a request goes to Chat Completions with that limit rather than being raised."""
    account = gw.account("1.00")
    key = gw.key(account)
    response, body, headers = create(gw.openai(key), model=GPT, input="Short rn-short", max_output_tokens=5)
    assert response.status == "incomplete"
    sent = upstream_of(sim, "rn-short")
    assert sent["path"] == "/v1/chat/completions" and sent["body"]["max_completion_tokens"] == 5
    assert body["usage"]["output_tokens"] == 5
    assert_exact(gw, key, account, headers["x-nemo-request-id"], body["usage"])


def test_chat_completions_clients_keep_chat_completions(gw: Gateway, sim: Sim) -> None:
    account = gw.account("1.00")
    client = gw.openai(gw.key(account))
    answer = client.chat.completions.create(
        model=GPT, messages=[{"role": "user", "content": "hi rn-chat"}], max_tokens=20
    )
    assert answer.choices[0].message.content
    assert upstream_of(sim, "rn-chat")["path"] == "/v1/chat/completions"


def test_the_flag_is_for_openai_kinds_and_a_boolean(gw: Gateway) -> None:
    for body in (
        {
            "name": "x1",
            "kind": "anthropic",
            "base_url": "https://a.example",
            "config": {"responses_api": True},
        },
        {"name": "x2", "kind": "openai", "base_url": "https://a.example", "config": {"responses_api": "yes"}},
    ):
        refused = gw.admin("POST", "/providers", body)
        assert refused.status_code == 400 and "responses_api" in refused.text
