"""What today's Messages clients send, through the official `anthropic` SDK against a running
gateway on the simulator with Anthropic-, OpenAI- and Gemini-format upstreams: count_tokens,
Claude Code's fields (`output_config`, `context_management`, adaptive thinking, top-level
`cache_control`, system turns, `anthropic-beta`, `?beta=true`), unknown fields, which stop
sequence fired, and structured output through `messages.parse`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import pydantic
import pytest
from anthropic.types import Message, RawMessageStreamEvent

from conftest import SIM_PROVIDER_SECRET, Gateway, Sim, new_gateway

CLAUDE = "anthropic/claude-sonnet-4-5"
GPT = "openai/gpt-4o-mini"
FLASH = "google/gemini-2.5-flash"
ALL = (CLAUDE, GPT, FLASH)


def three_formats(base: Path, sim: Sim) -> Gateway:
    """A gateway with the sim as an OpenAI-, an Anthropic- and a Gemini-format provider."""
    gw = new_gateway(base, sim)
    gw.cli("providers", "add", "anth", "--kind", "anthropic", "--base-url", sim.url)
    gw.cli("providers", "add-key", "anth", "--label", "main", input=SIM_PROVIDER_SECRET + "\n")
    gw.cli("models", "import", "--vendor", "anthropic", "--provider", "anth")
    gw.cli("providers", "add", "gem", "--kind", "gemini", "--base-url", sim.url)
    gw.cli("providers", "add-key", "gem", "--label", "main", input="AIzaSy-clients\n")
    gw.cli("models", "import", "--vendor", "google", "--provider", "gem")
    return gw


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gateway = three_formats(Path(tmp_path_factory.mktemp("messages-clients")), sim)
    gateway.start()
    yield gateway
    assert gateway.stop() == 0


def sdk(gw: Gateway, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0)


def sent_upstream(sim: Sim, marker: str) -> dict[str, Any]:
    """The last request the sim received whose body contains `marker`."""
    for seen in reversed(sim.requests()):
        if marker in json.dumps(seen.get("body")):
            return seen
    raise AssertionError(f"no upstream request carried {marker!r}")


@pytest.mark.parametrize("model", ALL)
def test_count_tokens_is_free_and_matches_the_answer(gw: Gateway, sim: Sim, model: str) -> None:
    account = gw.account("1.00")
    client = sdk(gw, gw.key(account))
    messages = [{"role": "user", "content": f"Count these words please ct-{model}"}]
    response = client.messages.with_raw_response.count_tokens(
        model=model,
        system="Be brief.",
        messages=messages,  # type: ignore[arg-type]
    )
    counted = response.parse()
    assert counted.input_tokens > 0
    source = response.http_response.headers["x-nemo-token-count"]
    # Anthropic and Gemini count upstream, exactly; OpenAI's family counts with its tokenizer.
    assert source == ("tokenizer" if model == GPT else "upstream")
    assert gw.balance(account)["total_usage"] == 0 and gw.balance(account)["held"] == 0
    message = client.messages.create(model=model, max_tokens=50, system="Be brief.", messages=messages)
    if source == "upstream":  # the provider's count is the prompt it then bills
        assert counted.input_tokens == message.usage.input_tokens
    assert gw.verify()["ok"] is True


def test_count_tokens_is_rate_limited(gw: Gateway) -> None:
    key = gw.key(gw.account("1.00"), rpm=2)
    client = sdk(gw, key)
    messages = [{"role": "user", "content": "hi"}]
    for _ in range(2):
        client.messages.count_tokens(model=GPT, messages=messages)  # type: ignore[arg-type]
    with pytest.raises(anthropic.RateLimitError):
        client.messages.count_tokens(model=GPT, messages=messages)  # type: ignore[arg-type]


def test_count_tokens_needs_a_key(gw: Gateway) -> None:
    client = sdk(gw, "sk-nemo-not-a-key")
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.count_tokens(model=GPT, messages=[{"role": "user", "content": "hi"}])


CLAUDE_CODE_FIELDS: dict[str, Any] = {
    "thinking": {"type": "adaptive"},
    "output_config": {"effort": "medium"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "cache_control": {"type": "ephemeral"},
}


@pytest.mark.parametrize("model", ALL)
def test_claude_code_fields_are_accepted(gw: Gateway, sim: Sim, model: str) -> None:
    account = gw.account("1.00")
    client = sdk(gw, gw.key(account))
    marker = f"cc-fields-{model}"
    messages: Any = [
        {"role": "user", "content": f"First question {marker}"},
        {"role": "assistant", "content": "First answer."},
        {"role": "system", "content": "Answer in English."},
        {"role": "user", "content": f"Second question {marker}"},
    ]
    raw = client.messages.with_raw_response.create(
        model=model,
        max_tokens=2000,
        messages=messages,
        extra_body={**CLAUDE_CODE_FIELDS, "some_future_field": {"x": 1}},
        extra_headers={"anthropic-beta": "context-management-2025-06-27,interleaved-thinking-2025-05-14"},
        extra_query={"beta": "true"},
    )
    message = raw.parse()
    assert message.content and message.stop_reason == "end_turn"
    assert raw.http_response.headers["x-nemo-ignored-fields"] == "some_future_field"
    upstream = sent_upstream(sim, marker)
    body = upstream["body"]
    assert "some_future_field" not in body and "anthropic_passthrough" not in body
    if model == CLAUDE:  # Anthropic gets Claude Code's own fields and betas
        for name, value in CLAUDE_CODE_FIELDS.items():
            assert body[name] == value
        assert upstream["headers"]["anthropic-beta"] == (
            "context-management-2025-06-27,interleaved-thinking-2025-05-14"
        )
        assert body["max_tokens"] == 2000
    else:  # others get the effort, and none of Anthropic's own fields
        assert not set(CLAUDE_CODE_FIELDS) & set(body)
        if model == GPT:
            assert body["reasoning_effort"] == "medium"
            assert [m["role"] for m in body["messages"]] == ["user", "assistant", "system", "user"]
        else:
            assert "Answer in English." in json.dumps(body["systemInstruction"])
    assert gw.verify()["ok"] is True


@pytest.mark.parametrize("model", ALL)
def test_output_config_format_gives_json(gw: Gateway, model: str) -> None:
    client = sdk(gw, gw.key(gw.account("1.00")))
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    message = client.messages.create(
        model=model,
        max_tokens=300,
        messages=[{"role": "user", "content": "Name a city as JSON."}],
        extra_body={"output_config": {"format": {"type": "json_schema", "schema": schema}}},
    )
    text = "".join(b.text for b in message.content if b.type == "text")
    assert isinstance(json.loads(text), dict)


def test_stop_sequence_is_named_when_it_fires(gw: Gateway) -> None:
    """The Anthropic upstream says which sequence stopped it; so do we, plain and streamed."""
    client = sdk(gw, gw.key(gw.account("1.00")))
    messages: Any = [{"role": "user", "content": "Say something long please"}]
    first = client.messages.create(model=CLAUDE, max_tokens=200, messages=messages)
    words = first.content[0].text.split(" ")  # type: ignore[union-attr]
    stop = words[len(words) // 2]
    message = client.messages.create(model=CLAUDE, max_tokens=200, messages=messages, stop_sequences=[stop])
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == stop
    with client.messages.stream(model=CLAUDE, max_tokens=200, messages=messages, stop_sequences=[stop]) as s:
        final = s.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == stop


def test_count_tokens_refuses_a_malformed_body(gw: Gateway) -> None:
    key = gw.key(gw.account("1.00"))
    found = httpx.post(
        f"{gw.url}/v1/messages/count_tokens", headers={"x-api-key": key}, json={"model": GPT, "messages": "x"}
    )
    assert found.status_code == 400
    assert found.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("model", ALL)
def test_message_start_carries_the_prompt_count_when_told_early(gw: Gateway, model: str) -> None:
    """Anthropic's message_start and Gemini's first usageMetadata tell the prompt before the
    answer: our message_start carries it. OpenAI tells it only at the end: zeros, then the
    final message_delta's counts (which the SDK's final message takes)."""
    client = sdk(gw, gw.key(gw.account("1.00")))
    messages: Any = [{"role": "user", "content": f"Early count please {model}"}]
    with client.messages.stream(model=model, max_tokens=100, messages=messages) as stream:
        events = list(stream)
        final = stream.get_final_message()
    start = next(e for e in events if e.type == "message_start")
    assert final.usage.input_tokens > 0
    expected = 0 if model == GPT else final.usage.input_tokens
    assert start.message.usage.input_tokens == expected


STREAM_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RawMessageStreamEvent)


class City(pydantic.BaseModel):
    name: str
    population: int
    districts: list[str]


# Where each upstream format received the schema `messages.parse(output_format=City)` sent as
# `output_config.format`: Anthropic as it is, OpenAI as `response_format`, Gemini as its JSON schema.
SCHEMA_AT: dict[str, Any] = {
    CLAUDE: lambda body: body["output_config"]["format"]["schema"],
    GPT: lambda body: body["response_format"]["json_schema"]["schema"],
    FLASH: lambda body: body["generationConfig"]["responseJsonSchema"],
}


@pytest.mark.parametrize("model", ALL)
def test_messages_parse_gives_the_typed_object_charged_exactly(gw: Gateway, sim: Sim, model: str) -> None:
    """The SDK's structured output (`messages.parse` and `messages.stream` with `output_format`):
    the schema reaches every upstream in its own form, the answer parses into the model class,
    the raw Message validates strictly against the SDK's type, and each is charged its usage."""
    account = gw.account("1.00")
    key = gw.key(account)
    raw: list[Any] = []  # every response, read whole (the SDK then reads the same bytes)
    http = httpx2.Client(event_hooks={"response": [lambda r: raw.append(r.read())]})
    client = anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, http_client=http)
    marker = f"parse-{model}"
    messages: Any = [{"role": "user", "content": f"Describe a city {marker}"}]
    parsed = client.messages.parse(model=model, max_tokens=500, messages=messages, output_format=City)
    assert isinstance(parsed.parsed_output, City) and parsed.stop_reason == "end_turn"
    (body,) = raw
    Message.model_validate(json.loads(body), strict=True)
    schema = SCHEMA_AT[model](sent_upstream(sim, marker)["body"])
    assert set(schema["required"]) == {"name", "population", "districts"}
    with client.messages.stream(model=model, max_tokens=500, messages=messages, output_format=City) as stream:
        streamed = stream.get_final_message()
    assert isinstance(streamed.parsed_output, City)
    frames = [json.loads(line[6:]) for line in raw[1].decode().splitlines() if line.startswith("data: ")]
    for frame in frames:  # `ping` is Anthropic's keep-alive, outside the SDK's event union
        if frame["type"] != "ping":
            STREAM_EVENT.validate_python(frame, strict=True)
    assert [f["type"] for f in frames][-2:] == ["message_delta", "message_stop"]
    total = Decimal(0)
    for message in (parsed, streamed):  # the Message id is the request id
        found = httpx.get(
            f"{gw.url}/v1/generation", params={"id": message.id}, headers={"Authorization": f"Bearer {key}"}
        )
        record = json.loads(found.text, parse_float=Decimal)["data"]
        assert record["tokens"]["completion"] == message.usage.output_tokens
        assert record["total_cost"] == gw.list_price(key, model, record["tokens"]) > 0
        total += record["total_cost"]
    assert Decimal(str(gw.balance(account)["total_usage"])) == total
    assert gw.verify()["ok"] is True
