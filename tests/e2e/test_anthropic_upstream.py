"""The official `openai` SDK -> the real gateway -> the sim speaking Anthropic: mapping both ways, typed
event streams, exact costs (cache reads, 5-minute and 1-hour writes, thinking), errors, no charge on failure.

Expected costs are computed by hand from the usage the sim reports in Anthropic's own conventions
(`input_tokens` excludes the cache), read by replaying the exact upstream request to the sim.
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

from conftest import Gateway, Sim, new_gateway

MODEL = "anthropic/claude-sonnet-4-5"
SECRET = "sk-sim-anthropic-vault-" + secrets.token_hex(8)
M = Decimal(10**6)
# The bundled list prices of claude-sonnet-4-5, USD per 1M tokens (src/nemorouter/data/catalog.csv).
IN, OUT, READ, WRITE_5M, WRITE_1H = (Decimal(p) for p in ("3", "15", "0.3", "3.75", "6"))

PROPERTIES = {"city": {"type": "string"}, "days": {"type": "integer"}}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": PROPERTIES, "required": ["city", "days"]},
    },
}
HI = [{"role": "user", "content": "hi"}]
AUDIO = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


@pytest.fixture(scope="module")
def anth(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gw = new_gateway(tmp_path_factory.mktemp("anthropic"), sim=None)
    gw.cli("providers", "add", "anth", "--kind", "anthropic", "--base-url", sim.url)
    gw.cli("providers", "add-key", "anth", "--label", "main", input=SECRET + "\n")
    gw.cli("models", "import", "--vendor", "anthropic", "--provider", "anth")
    gw.start()
    yield gw
    assert gw.stop() == 0


@pytest.fixture
def account(anth: Gateway) -> str:
    return anth.account("5.00")


@pytest.fixture
def client(anth: Gateway, account: str) -> openai.OpenAI:
    return anth.openai(anth.key(account))


# ----------------------------------------------------------------------------- helpers


def upstream_calls(sim: Sim) -> list[dict[str, Any]]:
    return [r for r in sim.requests() if r["path"] == "/v1/messages"]


def anthropic_usage(sim: Sim, body: dict[str, Any]) -> dict[str, Any]:
    """The sim's own usage for an upstream body (the sim is deterministic; streams report the same)."""
    headers = {"x-api-key": "sk-sim-replay", "anthropic-version": "2023-06-01"}
    answer = httpx.post(f"{sim.url}/v1/messages", json={**body, "stream": False}, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    usage: dict[str, Any] = answer.json()["usage"]
    return usage


def anthropic_cost(u: dict[str, Any]) -> Decimal:
    """providers.md section 4: input, cache reads, 5-minute and 1-hour writes, output (thinking inside)."""
    one_hour = u["cache_creation"]["ephemeral_1h_input_tokens"]
    five_min = u["cache_creation_input_tokens"] - one_hour
    writes = five_min * WRITE_5M + one_hour * WRITE_1H
    return (
        u["input_tokens"] * IN + u["cache_read_input_tokens"] * READ + writes + u["output_tokens"] * OUT
    ) / M


def assert_normalized(usage: dict[str, Any], u: dict[str, Any]) -> None:
    """The client's usage is Anthropic's in OpenAI's conventions (cache inside prompt_tokens)."""
    cache = u["cache_read_input_tokens"] + u["cache_creation_input_tokens"]
    assert usage["prompt_tokens"] == u["input_tokens"] + cache
    assert usage["completion_tokens"] == u["output_tokens"]
    assert usage["prompt_tokens_details"] == {
        "cached_tokens": u["cache_read_input_tokens"],
        "cache_write_tokens": u["cache_creation_input_tokens"],
    }
    assert usage["cost"] == anthropic_cost(u)


def create(client: openai.OpenAI, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    raw = client.chat.completions.with_raw_response.create(model=MODEL, **kwargs)
    usage: dict[str, Any] = json.loads(raw.http_response.text, parse_float=Decimal)["usage"]
    assert Decimal(raw.headers["x-nemo-cost"]) == usage["cost"]
    return raw.parse(), usage


def gw_auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def post(gw: Gateway, key: str, **body: Any) -> httpx.Response:
    url, payload = f"{gw.url}/v1/chat/completions", {"model": MODEL, **body}
    return httpx.post(url, json=payload, headers=gw_auth(key), timeout=30)


def stream(gw: Gateway, key: str, **body: Any) -> tuple[list[dict[str, Any]], httpx.Response]:
    """The chunks of a streamed request (exact decimals), checking the stream ends with usage and
    [DONE], or (after a failure) with usage and then the error chunk."""
    response = post(gw, key, stream=True, **body)
    assert response.status_code == 200, response.text
    frames = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    failed = frames[-1] != "[DONE]"
    chunks = [json.loads(f, parse_float=Decimal) for f in (frames if failed else frames[:-1])]
    usage = chunks[-2] if failed else chunks[-1]
    assert usage["choices"] == [] and "cost" in usage["usage"]
    assert not failed or "error" in chunks[-1]
    return chunks, response


def deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in chunks if c["choices"]]


def text_of(chunks: list[dict[str, Any]], field: str = "content") -> str:
    return "".join(d.get(field) or "" for d in deltas(chunks))


def block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def finishes(chunks: list[dict[str, Any]]) -> list[str]:
    return [
        c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]
    ]


def spent(gw: Gateway, account: str) -> Decimal:
    balance = gw.balance(account)
    assert balance["held"] == 0
    return Decimal(str(balance["total_usage"]))


# ----------------------------------------------------------------------------- scenarios


def test_text_both_ways_with_the_vault_key_and_pinned_version(
    anth: Gateway, sim: Sim, client: openai.OpenAI, account: str
) -> None:
    sim.clear()
    messages = [{"role": "user", "content": "Hello there, how are you?"}]
    reply, usage = create(client, messages=messages)
    assert reply.model == MODEL and reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content and reply.choices[0].message.role == "assistant"
    (call,) = upstream_calls(sim)
    assert call["headers"]["x-api-key"] == SECRET and call["authorization"] is None
    assert call["headers"]["anthropic-version"] == "2023-06-01"
    assert call["body"] == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64000,  # the catalog's max output: Anthropic requires max_tokens
        "messages": [{"role": "user", "content": [block("Hello there, how are you?")]}],
    }
    assert_normalized(usage, u := anthropic_usage(sim, call["body"]))

    chunks, response = stream(anth, client.api_key, messages=messages)
    assert text_of(chunks) == reply.choices[0].message.content
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["id"] == response.headers["x-nemo-request-id"] and c["model"] == MODEL for c in chunks)
    assert finishes(chunks) == ["stop"]
    assert_normalized(chunks[-1]["usage"], u)
    assert upstream_calls(sim)[-1]["body"]["stream"] is True
    assert spent(anth, account) == 2 * anthropic_cost(u)
    assert anth.verify()["ok"] is True


def test_multi_turn_with_system(anth: Gateway, sim: Sim, client: openai.OpenAI, account: str) -> None:
    sim.clear()
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "developer", "content": "Answer in words."},
        {"role": "user", "content": "Another one?"},
    ]
    reply, usage = create(client, messages=messages)
    body = upstream_calls(sim)[-1]["body"]
    assert body["system"] == [block("You are terse."), block("Answer in words.")]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert_normalized(usage, u := anthropic_usage(sim, body))
    chunks, _ = stream(anth, client.api_key, messages=messages)
    assert text_of(chunks) == reply.choices[0].message.content
    assert spent(anth, account) == 2 * anthropic_cost(u)
    assert anth.verify()["ok"] is True


def test_tools_streamed_arguments_and_tool_results(
    anth: Gateway, sim: Sim, client: openai.OpenAI, account: str
) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    sim.clear()
    reply, usage = create(client, messages=messages, tools=[WEATHER], tool_choice="auto")
    assert reply.choices[0].finish_reason == "tool_calls" and reply.choices[0].message.content is None
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and call.id.startswith("toolu_")
    arguments = json.loads(call.function.arguments)
    assert set(arguments) == {"city", "days"}
    first = anthropic_usage(sim, upstream_calls(sim)[-1]["body"])
    assert upstream_calls(sim)[-1]["body"]["tool_choice"] == {"type": "auto"}
    assert_normalized(usage, first)

    chunks, _ = stream(anth, client.api_key, messages=messages, tools=[WEATHER])
    fragments = [d["tool_calls"][0] for d in deltas(chunks) if d.get("tool_calls")]
    assert fragments[0]["id"] == call.id and fragments[0]["function"]["name"] == "get_weather"
    assert all(f["index"] == 0 for f in fragments) and len(fragments) > 2
    assert json.loads("".join(f["function"]["arguments"] for f in fragments)) == arguments
    assert finishes(chunks) == ["tool_calls"]
    assert_normalized(chunks[-1]["usage"], first)

    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'},
    ]
    answer, answer_usage = create(client, messages=messages, tools=[WEATHER])
    assert answer.choices[0].finish_reason == "stop" and answer.choices[0].message.content
    body = upstream_calls(sim)[-1]["body"]
    use, result = body["messages"][1]["content"], body["messages"][2]["content"]
    assert use == [{"type": "tool_use", "id": call.id, "name": "get_weather", "input": arguments}]
    assert result == [{"type": "tool_result", "tool_use_id": call.id, "content": '{"temp_c": 21}'}]
    assert_normalized(answer_usage, second := anthropic_usage(sim, body))
    assert spent(anth, account) == 2 * anthropic_cost(first) + anthropic_cost(second)
    assert anth.verify()["ok"] is True


def test_image_data_url(anth: Gateway, sim: Sim, client: openai.OpenAI) -> None:
    sim.clear()
    content = [
        block("What is this?"),
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]
    _, usage = create(client, messages=[{"role": "user", "content": content}])
    body = upstream_calls(sim)[-1]["body"]
    image = body["messages"][0]["content"][1]
    assert image == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    u = anthropic_usage(sim, body)
    assert u["input_tokens"] == 3 + 3 + 4 + 85  # priming, one turn, "What is this ?", the image
    assert_normalized(usage, u)
    assert anth.verify()["ok"] is True


def test_stop_and_max_tokens(anth: Gateway, sim: Sim, client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Say many words [sim:tokens=30]"}]
    words = (create(client, messages=messages)[0].choices[0].message.content or "").split(" ")
    sim.clear()
    stopped, usage = create(client, messages=messages, stop=[words[5]])
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == " ".join(words[:5]) and usage["completion_tokens"] == 5
    assert upstream_calls(sim)[-1]["body"]["stop_sequences"] == [words[5]]
    chunks, _ = stream(anth, client.api_key, messages=messages, stop=words[5])
    assert text_of(chunks) == " ".join(words[:5]) and finishes(chunks) == ["stop"]

    capped, capped_usage = create(client, messages=messages, max_completion_tokens=7)
    assert capped.choices[0].finish_reason == "length" and capped_usage["completion_tokens"] == 7
    assert upstream_calls(sim)[-1]["body"]["max_tokens"] == 7
    assert capped_usage["cost"] == anthropic_cost(anthropic_usage(sim, upstream_calls(sim)[-1]["body"]))
    chunks, _ = stream(anth, client.api_key, messages=messages, max_tokens=7)
    assert finishes(chunks) == ["length"] and chunks[-1]["usage"]["completion_tokens"] == 7
    assert anth.verify()["ok"] is True


@pytest.mark.parametrize("streamed", [False, True])
def test_thinking_via_reasoning_effort_is_charged_as_output(
    anth: Gateway, sim: Sim, client: openai.OpenAI, account: str, streamed: bool
) -> None:
    messages = [{"role": "user", "content": "Think it through [sim:thinking=12,tokens=5]"}]
    sim.clear()
    if streamed:
        chunks, _ = stream(anth, client.api_key, messages=messages, reasoning_effort="low")
        usage, reasoning, content = chunks[-1]["usage"], text_of(chunks, "reasoning_content"), text_of(chunks)
    else:
        reply, usage = create(client, messages=messages, reasoning_effort="low")
        message = reply.choices[0].message
        reasoning, content = message.model_extra["reasoning_content"], message.content or ""
    body = upstream_calls(sim)[-1]["body"]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert len(reasoning.split(" ")) == 12 and len(content.split(" ")) == 5 and reasoning not in content
    u = anthropic_usage(sim, body)
    assert u["output_tokens"] == 12 + 5  # Anthropic counts thinking inside output_tokens
    assert usage["completion_tokens"] == 17
    assert usage["cost"] == (u["input_tokens"] * IN + 17 * OUT) / M
    assert spent(anth, account) == usage["cost"]
    assert anth.verify()["ok"] is True


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize(
    "case", [("cached=20", 20, 0, 0), ("cache_write=15", 0, 15, 0), ("cache_write_1h=12", 0, 0, 12)]
)
def test_cache_reads_and_writes_cost_exactly(
    anth: Gateway, sim: Sim, client: openai.OpenAI, account: str, case: tuple[Any, ...], streamed: bool
) -> None:
    directive, read, write_5m, write_1h = case
    messages = [{"role": "user", "content": f"A long shared prefix goes here [sim:{directive},tokens=6]"}]
    sim.clear()
    if streamed:
        usage = stream(anth, client.api_key, messages=messages)[0][-1]["usage"]
    else:
        usage = create(client, messages=messages)[1]
    u = anthropic_usage(sim, upstream_calls(sim)[-1]["body"])
    prompt = u["input_tokens"] + read + write_5m + write_1h
    assert (u["cache_read_input_tokens"], u["cache_creation_input_tokens"]) == (read, write_5m + write_1h)
    assert u["cache_creation"] == dict(ephemeral_5m_input_tokens=write_5m, ephemeral_1h_input_tokens=write_1h)
    assert usage["prompt_tokens"] == prompt and usage["completion_tokens"] == 6
    writes = write_5m * WRITE_5M + write_1h * WRITE_1H
    expected = (u["input_tokens"] * IN + read * READ + writes + 6 * OUT) / M
    assert usage["cost"] == expected
    assert spent(anth, account) == expected
    assert anth.verify()["ok"] is True


def test_overloaded_upstream_is_502_and_free(anth: Gateway, client: openai.OpenAI, account: str) -> None:
    messages = [{"role": "user", "content": "busy [sim:status=529]"}]
    with pytest.raises(openai.InternalServerError) as exc:
        create(client, messages=messages)
    assert exc.value.status_code == 502
    assert isinstance(exc.value.body, dict) and exc.value.body["type"] == "upstream_error"
    response = post(anth, client.api_key, stream=True, messages=messages)
    assert response.status_code == 502 and response.json()["error"]["type"] == "upstream_error"
    assert spent(anth, account) == 0
    assert anth.verify()["ok"] is True


def test_error_inside_a_200_stream_charges_only_the_output_so_far(
    anth: Gateway, sim: Sim, client: openai.OpenAI, account: str
) -> None:
    sim.clear()
    messages = [{"role": "user", "content": "Fail midway [sim:tokens=20,error_after=4]"}]
    chunks, response = stream(anth, client.api_key, messages=messages)
    errors = [c for c in chunks if "error" in c]
    assert errors == [chunks[-1]] and errors[0]["choices"][0]["finish_reason"] == "error"
    assert errors[0]["error"]["type"] == "upstream_error" and errors[0]["error"]["code"] == 529
    assert len(text_of(chunks).split(" ")) == 4
    u = anthropic_usage(sim, upstream_calls(sim)[-1]["body"])
    usage = chunks[-2]["usage"]  # the usage comes before the error chunk, which ends the stream
    # the input Anthropic reported at message_start, and the four words that reached the client
    assert usage["prompt_tokens"] == u["input_tokens"] and usage["completion_tokens"] == 4
    assert usage["cost"] == (u["input_tokens"] * IN + 4 * OUT) / M
    found = httpx.get(
        f"{anth.url}/v1/generation",
        params={"id": response.headers["x-nemo-request-id"]},
        headers=gw_auth(client.api_key),
    )
    record = found.json()["data"]
    assert record["status"] == "partial" and Decimal(str(record["total_cost"])) == usage["cost"]
    assert spent(anth, account) == usage["cost"]
    assert anth.verify()["ok"] is True


@pytest.mark.parametrize(
    "extra",
    [
        {"messages": [{"role": "user", "content": [AUDIO]}]},
        {"messages": HI, "n": 2},
        {"messages": HI, "logprobs": True},
    ],
)
@pytest.mark.parametrize("streamed", [False, True])
def test_unsupported_content_is_400_and_free(
    anth: Gateway, sim: Sim, client: openai.OpenAI, account: str, extra: dict[str, Any], streamed: bool
) -> None:
    sim.clear()
    response = post(anth, client.api_key, stream=streamed, **extra)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request"
    assert upstream_calls(sim) == []  # refused before any upstream call
    assert spent(anth, account) == 0
    assert anth.verify()["ok"] is True


def test_response_format_json_schema(anth: Gateway, sim: Sim, client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    sim.clear()
    messages = [{"role": "user", "content": "Answer as JSON"}]
    reply, usage = create(client, messages=messages, response_format=fmt)
    assert reply.choices[0].finish_reason == "stop" and not reply.choices[0].message.tool_calls
    assert set(json.loads(reply.choices[0].message.content or "")) == {"answer"}
    chunks, _ = stream(anth, client.api_key, messages=messages, response_format=fmt)
    assert json.loads(text_of(chunks)) == json.loads(reply.choices[0].message.content or "")
    assert finishes(chunks) == ["stop"]
    assert_normalized(usage, anthropic_usage(sim, upstream_calls(sim)[-2]["body"]))
    assert anth.verify()["ok"] is True
