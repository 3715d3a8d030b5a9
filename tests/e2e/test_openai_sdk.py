"""The official `openai` SDK against the running gateway: exact costs, exact balances, a clean ledger."""

from __future__ import annotations

import base64
import json
import struct
from decimal import Decimal
from typing import Any

import httpx
import pytest

from conftest import SIM_PROVIDER_SECRET, Gateway, Sim

# The bundled list price of openai/gpt-4o-mini, USD per 1M tokens (src/nemorouter/data/catalog.csv).
INPUT_PER_M = Decimal("0.15")
OUTPUT_PER_M = Decimal("0.6")


def expected_cost(prompt: int, completion: int, cached: int = 0) -> Decimal:
    cached_rate = Decimal("0.075")
    return ((prompt - cached) * INPUT_PER_M + cached * cached_rate + completion * OUTPUT_PER_M) / 10**6


def raw_usage(response: Any) -> dict[str, Any]:
    """The usage object as sent on the wire (with `cost` as an exact decimal)."""
    return json.loads(response.http_response.text, parse_float=Decimal)["usage"]


def test_chat_non_stream_charges_exact_cost(gateway: Gateway) -> None:
    account = gateway.account("5.00")
    key = gateway.key(account)
    client = gateway.openai(key)
    raw = client.chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "Hello there, how are you?"}]
    )
    reply = raw.parse()
    usage = json.loads(raw.http_response.text, parse_float=Decimal)["usage"]
    assert reply.choices[0].message.content
    assert reply.model == "openai/gpt-4o-mini"
    cost = expected_cost(usage["prompt_tokens"], usage["completion_tokens"])
    assert usage["cost"] == cost
    assert Decimal(raw.headers["x-nemo-cost"]) == cost
    assert raw.headers["x-nemo-request-id"] == reply.id
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 0}
    balance = gateway.balance(account)
    assert Decimal(str(balance["total_usage"])) == cost
    assert Decimal(str(balance["balance"])) == Decimal("5") - cost
    assert balance["held"] == 0
    assert gateway.verify()["ok"] is True


def test_chat_stream_ends_with_usage_chunk_carrying_cost(gateway: Gateway) -> None:
    account = gateway.account("5.00")
    client = gateway.openai(gateway.key(account))
    with client.chat.completions.with_streaming_response.create(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "Stream me a short answer"}],
        stream=True,
        max_tokens=12,
    ) as response:
        request_id = response.headers["x-nemo-request-id"]
        frames = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert frames[-1] == "data: [DONE]"
    chunks = [json.loads(f[len("data: ") :], parse_float=Decimal) for f in frames[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert len(text.split()) == 12  # the simulator's words are one token each; max_tokens caps them
    assert all(c["id"] == request_id and c["model"] == "openai/gpt-4o-mini" for c in chunks)
    final = chunks[-1]
    assert final["choices"] == []
    usage = final["usage"]
    assert usage["completion_tokens"] == 12
    assert usage["cost"] == expected_cost(usage["prompt_tokens"], 12)
    finish = [
        c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]
    ]
    assert finish == ["length"]
    assert Decimal(str(gateway.balance(account)["total_usage"])) == usage["cost"]
    record = httpx.get(
        f"{gateway.url}/v1/generation",
        params={"id": request_id},
        headers={"Authorization": f"Bearer {client.api_key}"},
    ).json()["data"]
    assert record["streamed"] is True and record["status"] == "success"
    assert Decimal(str(record["total_cost"])) == usage["cost"]
    assert gateway.verify()["ok"] is True


def test_stream_through_sdk_iterator_matches_non_stream_text(gateway: Gateway) -> None:
    client = gateway.openai(gateway.key(gateway.account("1.00")))
    messages = [{"role": "user", "content": "Same words both ways please"}]
    whole = client.chat.completions.create(model="openai/gpt-4o-mini", messages=messages, seed=7)
    parts = []
    usage = None
    for chunk in client.chat.completions.create(
        model="openai/gpt-4o-mini", messages=messages, seed=7, stream=True
    ):
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
        if chunk.usage is not None:
            usage = chunk.usage
    assert "".join(parts) == whole.choices[0].message.content
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens
    assert Decimal(str(usage.model_extra["cost"])) == expected_cost(
        usage.prompt_tokens, usage.completion_tokens
    )


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}


def test_tool_calls_non_stream_and_stream(gateway: Gateway) -> None:
    account = gateway.account("1.00")
    client = gateway.openai(gateway.key(account))
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    raw = client.chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL], tool_choice="auto"
    )
    reply = raw.parse()
    call = reply.choices[0].message.tool_calls[0]
    assert reply.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert set(arguments) == {"city", "days"}
    usage = raw_usage(raw)
    assert usage["cost"] == expected_cost(usage["prompt_tokens"], usage["completion_tokens"])

    streamed_args = ""
    streamed_name = None
    final_usage = None
    for chunk in client.chat.completions.create(
        model="openai/gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL], stream=True
    ):
        if chunk.choices and chunk.choices[0].delta.tool_calls:
            fragment = chunk.choices[0].delta.tool_calls[0]
            streamed_name = streamed_name or fragment.function.name
            streamed_args += fragment.function.arguments or ""
        if chunk.usage is not None:
            final_usage = chunk.usage
    assert streamed_name == "get_weather"
    assert json.loads(streamed_args) == arguments

    # The tool result goes back and the model answers in text.
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'},
    ]
    answer = client.chat.completions.create(
        model="openai/gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL]
    )
    assert answer.choices[0].finish_reason == "stop" and answer.choices[0].message.content
    assert final_usage is not None
    spent = Decimal(str(gateway.balance(account)["total_usage"]))
    assert spent == sum(
        (
            expected_cost(u.prompt_tokens, u.completion_tokens)
            for u in (reply.usage, final_usage, answer.usage)
        ),
        Decimal(0),
    )
    assert gateway.verify()["ok"] is True


def test_embeddings_charge_input_tokens(gateway: Gateway) -> None:
    account = gateway.account("1.00")
    client = gateway.openai(gateway.key(account))
    raw = client.embeddings.with_raw_response.create(
        model="openai/text-embedding-3-small", input=["first text here", "and a second one"]
    )
    result = raw.parse()
    assert len(result.data) == 2 and len(result.data[0].embedding) == 1536
    usage = json.loads(raw.http_response.text, parse_float=Decimal)["usage"]
    assert usage["prompt_tokens"] == 7  # "first text here" = 3, "and a second one" = 4
    assert usage["cost"] == Decimal(7) * Decimal("0.02") / 10**6
    assert Decimal(str(gateway.balance(account)["total_usage"])) == usage["cost"]
    # base64 encoding passes through and the SDK decodes it to the same vector.
    encoded = client.embeddings.create(
        model="openai/text-embedding-3-small", input="first text here", encoding_format="base64"
    )
    vector = encoded.data[0].embedding
    if isinstance(vector, str):  # the SDK may hand back the base64 text as sent
        raw = base64.b64decode(vector)
        vector = list(struct.unpack(f"<{len(raw) // 4}f", raw))
    assert vector == pytest.approx(result.data[0].embedding, abs=1e-6)
    assert gateway.verify()["ok"] is True


def test_upstream_sees_only_the_vault_key(gateway: Gateway, sim: Sim) -> None:
    key = gateway.key(gateway.account("1.00"))
    client = gateway.openai(key)
    sim.clear()
    client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    client.embeddings.create(model="openai/text-embedding-3-small", input="hi")
    list(
        client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    seen = sim.requests()
    assert len(seen) == 3
    for request in seen:
        assert request["authorization"] == f"Bearer {SIM_PROVIDER_SECRET}"
        flat = json.dumps(request)
        assert key not in flat and "sk-nemo" not in flat
    assert seen[2]["body"]["stream_options"] == {"include_usage": True}
    assert seen[0]["body"]["model"] == "gpt-4o-mini"
