"""The official `anthropic` SDK -> the gateway's `POST /v1/messages` -> an OpenAI-format upstream (the
sim) and a Gemini-format one: text, streams, tools, limits, images, Anthropic-convention usage with
exact cost, exact balances, errors in Anthropic's shape, and settlement when the client leaves.

Expected costs are computed by hand from the OpenAI-side token counts the gateway recorded
(`GET /v1/generation`) and the bundled list prices.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from conftest import Gateway, Sim, new_gateway, wait_until

GPT = "openai/gpt-4o-mini"
FLASH = "google/gemini-2.5-flash"
M = Decimal(10**6)
# USD per 1M tokens (src/nemorouter/data/catalog.csv): input, output, cache read. Neither model
# has its own cache-write price, so writes are charged at the input rate.
GPT_PRICES = (Decimal("0.15"), Decimal("0.6"), Decimal("0.075"))
FLASH_PRICES = (Decimal("0.3"), Decimal("2.5"), Decimal("0.03"))
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
}


# ----------------------------------------------------------------------------- helpers


def sdk(gw: Gateway, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0)


def record(gw: Gateway, key: str, request_id: str) -> dict[str, Any]:
    found = httpx.get(
        f"{gw.url}/v1/generation", params={"id": request_id}, headers={"Authorization": f"Bearer {key}"}
    )
    assert found.status_code == 200, found.text
    data: dict[str, Any] = json.loads(found.text, parse_float=Decimal)["data"]
    return data


def hand_cost(prices: tuple[Decimal, Decimal, Decimal], tokens: dict[str, int]) -> Decimal:
    inp, out, read = prices
    uncached = tokens["prompt"] - tokens["cached"] - tokens["cache_write"]
    return (
        uncached * inp + tokens["cached"] * read + tokens["cache_write"] * inp + tokens["completion"] * out
    ) / M


def assert_anthropic_usage(usage: dict[str, Any], tokens: dict[str, int]) -> None:
    """Anthropic's conventions: input_tokens excludes cache reads and writes."""
    assert usage["input_tokens"] == tokens["prompt"] - tokens["cached"] - tokens["cache_write"]
    assert usage["cache_read_input_tokens"] == tokens["cached"]
    assert usage["cache_creation_input_tokens"] == tokens["cache_write"]
    assert usage["output_tokens"] == tokens["completion"]


def create(client: anthropic.Anthropic, **kwargs: Any) -> tuple[Any, dict[str, Any], str]:
    """The parsed message, its raw usage (cost as an exact Decimal) and its request id."""
    raw = client.messages.with_raw_response.create(**{"model": GPT, "max_tokens": 200, **kwargs})
    message = raw.parse()
    usage: dict[str, Any] = json.loads(raw.http_response.text, parse_float=Decimal)["usage"]
    assert Decimal(raw.headers["x-nemo-cost"]) == usage["cost"]
    assert message.id == raw.headers["x-nemo-request-id"]
    return message, usage, raw.headers["x-nemo-request-id"]


def raw_stream(gw: Gateway, key: str, **body: Any) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    """Every (event, data) frame of a streamed request, money as Decimal, and the request id."""
    payload = {"model": GPT, "max_tokens": 200, "stream": True, **body}
    with httpx.stream(
        "POST", f"{gw.url}/v1/messages", json=payload, headers={"x-api-key": key}, timeout=30
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode()
        request_id = response.headers["x-nemo-request-id"]
    frames = []
    for block in text.split("\n\n"):
        if block.strip():
            name_line, data_line = block.split("\n")
            assert name_line.startswith("event: ") and data_line.startswith("data: ")
            data = json.loads(data_line[6:], parse_float=Decimal)
            assert data["type"] == name_line[7:]
            frames.append((name_line[7:], data))
    return frames, request_id


def spent(gw: Gateway, account: str) -> Decimal:
    return Decimal(str(gw.balance(account)["total_usage"]))


def upstream_body(sim: Sim, needle: str) -> dict[str, Any]:
    found = [r for r in sim.requests() if needle in json.dumps(r["body"])]
    assert found, f"the sim never saw {needle!r}"
    body: dict[str, Any] = found[-1]["body"]
    return body


# ----------------------------------------------------------------------------- text


def test_text_with_system_prompt_exact_usage_cost_and_balance(gateway: Gateway, sim: Sim) -> None:
    account = gateway.account("5.00")
    key = gateway.key(account)
    message, usage, request_id = create(
        sdk(gateway, key),
        system="You are terse. fd-system",
        messages=[{"role": "user", "content": "Hello there fd-text"}],
    )
    assert message.type == "message" and message.role == "assistant" and message.model == GPT
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    tokens = record(gateway, key, request_id)["tokens"]
    assert_anthropic_usage(usage, tokens)
    assert message.usage.input_tokens == usage["input_tokens"] and message.usage.output_tokens == len(
        message.content[0].text.split()
    )
    assert usage["cost"] == hand_cost(GPT_PRICES, tokens) > 0
    assert spent(gateway, account) == usage["cost"]
    assert Decimal(str(gateway.balance(account)["balance"])) == Decimal("5") - usage["cost"]
    seen = upstream_body(sim, "fd-text")
    assert seen["messages"] == [
        {"role": "system", "content": "You are terse. fd-system"},
        {"role": "user", "content": "Hello there fd-text"},
    ]
    # The one held limit, in the field OpenAI obeys (`max_tokens` is refused by its o-series).
    assert (
        seen["max_completion_tokens"] == 200 and "max_tokens" not in seen and seen["model"] == "gpt-4o-mini"
    )
    assert gateway.verify()["ok"] is True


def test_cache_reads_and_writes_leave_input_tokens(gateway: Gateway) -> None:
    account = gateway.account("5.00")
    key = gateway.key(account)
    content = "A long shared prefix, then a question fd-cache [sim:cached=12,cache_write=7]"
    message, usage, request_id = create(sdk(gateway, key), messages=[{"role": "user", "content": content}])
    tokens = record(gateway, key, request_id)["tokens"]
    assert (tokens["cached"], tokens["cache_write"]) == (12, 7)
    assert_anthropic_usage(usage, tokens)
    assert message.usage.cache_read_input_tokens == 12 and message.usage.cache_creation_input_tokens == 7
    assert usage["cost"] == hand_cost(GPT_PRICES, tokens)
    assert spent(gateway, account) == usage["cost"]
    assert gateway.verify()["ok"] is True


def test_multi_turn_reaches_the_upstream_in_order(gateway: Gateway, sim: Sim) -> None:
    client = sdk(gateway, gateway.key(gateway.account("1.00")))
    turns = [
        {"role": "user", "content": "First question fd-multi"},
        {"role": "assistant", "content": [{"type": "text", "text": "First answer."}]},
        {"role": "user", "content": [{"type": "text", "text": "Second question"}]},
    ]
    message, _, _ = create(client, messages=turns)
    assert message.content[0].text
    assert upstream_body(sim, "fd-multi")["messages"] == [
        {"role": "user", "content": "First question fd-multi"},
        {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": "Second question"},
    ]


def test_max_tokens_stops_with_max_tokens(gateway: Gateway) -> None:
    key = gateway.key(gateway.account("1.00"))
    message, usage, request_id = create(
        sdk(gateway, key), max_tokens=5, messages=[{"role": "user", "content": "Say a lot fd-max"}]
    )
    assert message.stop_reason == "max_tokens"
    assert usage["output_tokens"] == 5 == len(message.content[0].text.split())
    assert usage["cost"] == hand_cost(GPT_PRICES, record(gateway, key, request_id)["tokens"])


def test_stop_sequences_cut_the_text(gateway: Gateway, sim: Sim) -> None:
    client = sdk(gateway, gateway.key(gateway.account("1.00")))
    messages = [{"role": "user", "content": "Count some words fd-stop"}]
    full, _, _ = create(client, messages=messages)
    text = full.content[0].text
    stop = " " + text.split()[4]
    cut, _, _ = create(client, messages=messages, stop_sequences=[stop])
    assert cut.content[0].text == text[: text.find(stop)]
    # OpenAI's finish reason does not say a stop sequence fired: end_turn (see frontdoors/anthropic_messages/reply.py).
    assert cut.stop_reason == "end_turn" and cut.stop_sequence is None
    assert upstream_body(sim, "fd-stop")["stop"] == [stop]


def test_image_block_reaches_the_upstream_as_a_data_url(gateway: Gateway, sim: Sim) -> None:
    key = gateway.key(gateway.account("1.00"))
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    content = [image, {"type": "text", "text": "What is this? fd-image"}]
    message, usage, request_id = create(sdk(gateway, key), messages=[{"role": "user", "content": content}])
    assert message.content[0].text
    assert upstream_body(sim, "fd-image")["messages"][0]["content"][0] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{PNG}"},
    }
    tokens = record(gateway, key, request_id)["tokens"]
    assert tokens["prompt"] > 85  # the sim counts an image as 85 tokens
    assert usage["cost"] == hand_cost(GPT_PRICES, tokens)


# ----------------------------------------------------------------------------- streams


def test_stream_through_the_sdk_matches_non_stream(gateway: Gateway) -> None:
    client = sdk(gateway, gateway.key(gateway.account("1.00")))
    messages = [{"role": "user", "content": "Same words both ways fd-stream"}]
    whole, usage, _ = create(client, system="Be kind.", messages=messages)
    with client.messages.stream(model=GPT, max_tokens=200, system="Be kind.", messages=messages) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == whole.content[0].text == final.content[0].text
    assert final.stop_reason == "end_turn" and final.model == GPT
    assert final.usage.input_tokens == usage["input_tokens"]  # cumulative counts from message_delta
    assert final.usage.output_tokens == usage["output_tokens"]
    events = [
        event.type
        for event in client.messages.create(model=GPT, max_tokens=200, messages=messages, stream=True)
    ]
    assert events[:3] == ["message_start", "content_block_start", "content_block_delta"]  # the SDK skips ping
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_raw_stream_frames_usage_and_exact_cost(gateway: Gateway) -> None:
    account = gateway.account("1.00")
    key = gateway.key(account)
    frames, request_id = raw_stream(
        gateway, key, max_tokens=7, messages=[{"role": "user", "content": "Stream it fd-raw [sim:cached=4]"}]
    )
    names = [name for name, _ in frames]
    assert names[:4] == ["message_start", "ping", "content_block_start", "content_block_delta"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert names.count("content_block_delta") == 7
    start = frames[0][1]["message"]
    assert start["id"] == request_id and start["content"] == [] and start["stop_reason"] is None
    delta = frames[-2][1]
    assert delta["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    tokens = record(gateway, key, request_id)["tokens"]
    assert tokens["cached"] == 4 and tokens["completion"] == 7
    assert_anthropic_usage(delta["usage"], tokens)
    assert delta["usage"]["cost"] == hand_cost(GPT_PRICES, tokens) == spent(gateway, account)
    assert gateway.verify()["ok"] is True


def test_tools_round_trip_and_streamed_tool_use(gateway: Gateway, sim: Sim) -> None:
    account = gateway.account("1.00")
    key = gateway.key(account)
    client = sdk(gateway, key)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris? fd-tools"}]
    first, usage1, _ = create(client, messages=messages, tools=[WEATHER])
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather" and set(call.input) == {"city", "days"}

    with client.messages.stream(model=GPT, max_tokens=200, messages=messages, tools=[WEATHER]) as stream:
        streamed = stream.get_final_message()
    streamed_call = next(block for block in streamed.content if block.type == "tool_use")
    assert (streamed_call.id, streamed_call.input) == (call.id, call.input)
    assert streamed.stop_reason == "tool_use"

    messages += [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "21C, sunny"}],
        },
    ]
    answer, usage3, _ = create(client, messages=messages, tools=[WEATHER], tool_choice={"type": "auto"})
    assert answer.stop_reason == "end_turn" and answer.content[0].type == "text"
    sent = upstream_body(sim, "21C, sunny")["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.id
    assert json.loads(sent[1]["tool_calls"][0]["function"]["arguments"]) == call.input
    assert sent[2] == {"role": "tool", "tool_call_id": call.id, "content": "21C, sunny"}
    total = spent(gateway, account)
    assert total > usage1["cost"] + usage3["cost"]  # the streamed call was charged too
    assert gateway.verify()["ok"] is True


def test_error_mid_stream_is_an_error_event_and_output_is_charged(gateway: Gateway) -> None:
    account = gateway.account("1.00")
    key = gateway.key(account)
    frames, request_id = raw_stream(
        gateway, key, messages=[{"role": "user", "content": "Fail soon fd-err [sim:tokens=20,error_after=3]"}]
    )
    names = [name for name, _ in frames]
    # The block closes, the usage (with cost) arrives as a message_delta, then the error ends it.
    assert names == (
        ["message_start", "ping", "content_block_start"]
        + ["content_block_delta"] * 3
        + ["content_block_stop", "message_delta", "error"]
    )
    error = frames[-1][1]
    assert error["error"]["type"] == "api_error" and error["error"]["nemo_type"] == "upstream_error"
    delta = frames[-2][1]
    assert delta["delta"]["stop_reason"] is None and delta["usage"]["output_tokens"] == 3
    found = record(gateway, key, request_id)
    assert found["status"] == "partial" and found["tokens"]["completion"] == 3
    assert spent(gateway, account) == Decimal(str(found["total_cost"])) == delta["usage"]["cost"] > 0
    assert gateway.verify()["ok"] is True
    again = [{"role": "user", "content": "again [sim:tokens=20,error_after=2]"}]
    seen: list[str] = []
    stream = sdk(gateway, key).messages.stream(model=GPT, max_tokens=50, messages=again)
    with pytest.raises(anthropic.APIStatusError, match="api_error"), stream as events:
        for event in events:
            seen.append(event.type)
    assert "message_delta" in seen  # the SDK saw the usage before it raised on the error


def test_client_leaving_mid_stream_settles(gateway: Gateway) -> None:
    account = gateway.account("1.00")
    key = gateway.key(account)
    body = json.dumps(
        {
            "model": GPT,
            "max_tokens": 500,
            "stream": True,
            "messages": [{"role": "user", "content": "Talk slowly [sim:tokens=200,chunk_delay_ms=20]"}],
        }
    ).encode()
    request = (
        f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(request)
        received = b""
        while received.count(b"event: content_block_delta") < 5:
            received += sock.recv(65536)
    head = received.split(b"\r\n\r\n", 1)[0].decode()
    request_id = next(
        line.split(": ", 1)[1] for line in head.splitlines() if line.startswith("x-nemo-request-id")
    )
    assert wait_until(lambda: record(gateway, key, request_id)["status"] != "pending", timeout=10)
    found = record(gateway, key, request_id)
    assert found["cancelled"] is True and found["status"] == "cancelled"
    assert 0 < found["tokens"]["completion"] < 200
    time.sleep(0.1)
    assert gateway.balance(account)["held"] == 0
    assert spent(gateway, account) == Decimal(str(found["total_cost"]))
    assert gateway.verify()["ok"] is True


# ----------------------------------------------------------------------------- errors and auth


def test_x_api_key_header_authenticates(gateway: Gateway) -> None:
    key = gateway.key(gateway.account("1.00"))
    body = {"model": GPT, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    answer = httpx.post(
        f"{gateway.url}/v1/messages",
        json=body,
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["type"] == "message" and answer.headers["x-nemo-cost"]
    # Only on /v1/messages: the chat endpoint still wants a bearer key.
    chat = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": GPT, "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": key},
        timeout=30,
    )
    assert chat.status_code == 401 and chat.json()["error"]["type"] == "invalid_key"
    missing = httpx.post(f"{gateway.url}/v1/messages", json=body, timeout=30)
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"


def test_bad_key_is_authentication_error(gateway: Gateway) -> None:
    with pytest.raises(anthropic.AuthenticationError) as caught:
        sdk(gateway, "sk-nemo-v1-not-a-real-key").messages.create(
            model=GPT, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 401
    assert caught.value.body["type"] == "error"
    error = caught.value.body["error"]
    assert (error["type"], error["code"], error["nemo_type"]) == ("authentication_error", 401, "invalid_key")
    assert caught.value.response.headers["x-nemo-request-id"].startswith("gen-")


def test_unknown_model_is_not_found_error(gateway: Gateway) -> None:
    account = gateway.account("1.00")
    with pytest.raises(anthropic.NotFoundError) as caught:
        sdk(gateway, gateway.key(account)).messages.create(
            model="nobody/no-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    error = caught.value.body["error"]
    assert (error["type"], error["nemo_type"]) == ("not_found_error", "model_not_found")
    assert spent(gateway, account) == 0


def test_insufficient_credits_is_402_with_needed_and_available(gateway: Gateway) -> None:
    account = gateway.account("0.0001")
    with pytest.raises(anthropic.PaymentRequiredError) as caught:
        sdk(gateway, gateway.key(account)).messages.create(
            model=GPT, max_tokens=16_000, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 402
    error = json.loads(caught.value.response.text, parse_float=Decimal)["error"]
    assert (error["type"], error["code"], error["nemo_type"]) == (
        "billing_error",
        402,
        "insufficient_credits",
    )
    assert error["available"] == Decimal("0.0001") and error["needed"] > error["available"]
    assert isinstance(error["max_tokens_affordable"], int)
    balance = gateway.balance(account)
    assert balance["total_usage"] == 0 and balance["held"] == 0
    assert gateway.verify()["ok"] is True


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (json.dumps({"model": GPT, "messages": [{"role": "user", "content": "hi"}]}).encode(), "max_tokens"),
        (json.dumps({"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}).encode(), "model"),
        (
            json.dumps({"model": GPT, "max_tokens": 5, "messages": [], "container": "c"}).encode(),
            "container",
        ),
    ],
)
def test_malformed_requests_are_invalid_request_error(gateway: Gateway, body: bytes, text: str) -> None:
    account = gateway.account("1.00")
    answer = httpx.post(
        f"{gateway.url}/v1/messages",
        content=body,
        headers={"x-api-key": gateway.key(account), "content-type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["type"], error["nemo_type"]) == ("invalid_request_error", "invalid_request")
    assert text in error["message"]
    assert spent(gateway, account) == 0


# ----------------------------------------------------------------------------- a Gemini-format upstream


@pytest.fixture(scope="module")
def gem(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gw = new_gateway(Path(tmp_path_factory.mktemp("front-gemini")), sim=None)
    gw.cli("providers", "add", "gem", "--kind", "gemini", "--base-url", sim.url)
    gw.cli("providers", "add-key", "gem", "--label", "main", input="AIzaSy-front-door\n")
    gw.cli("models", "import", "--vendor", "google", "--provider", "gem")
    gw.start()
    yield gw
    assert gw.stop() == 0


def test_gemini_upstream_text_and_stream(gem: Gateway, sim: Sim) -> None:
    account = gem.account("5.00")
    key = gem.key(account)
    client = sdk(gem, key)
    messages = [{"role": "user", "content": "Hello Gemini fd-gemini"}]
    message, usage, request_id = create(client, model=FLASH, system="Be brief.", messages=messages)
    assert message.model == FLASH and message.stop_reason == "end_turn" and message.content[-1].text
    tokens = record(gem, key, request_id)["tokens"]
    assert_anthropic_usage(usage, tokens)
    assert usage["cost"] == hand_cost(FLASH_PRICES, tokens) > 0
    seen = upstream_body(sim, "fd-gemini")
    assert seen["systemInstruction"] == {"parts": [{"text": "Be brief."}]}

    with client.messages.stream(model=FLASH, max_tokens=200, system="Be brief.", messages=messages) as stream:
        final = stream.get_final_message()
    assert final.content[-1].text == message.content[-1].text
    assert (final.usage.input_tokens, final.usage.output_tokens) == (
        usage["input_tokens"],
        usage["output_tokens"],
    )
    frames, stream_id = raw_stream(gem, key, model=FLASH, system="Be brief.", messages=messages)
    cost = frames[-2][1]["usage"]["cost"]
    assert cost == hand_cost(FLASH_PRICES, record(gem, key, stream_id)["tokens"])
    assert spent(gem, account) == usage["cost"] * 3 == usage["cost"] + cost * 2
    assert gem.verify()["ok"] is True


# ----------------------------------------------------------------------------- an Anthropic-format upstream

SONNET = "anthropic/claude-sonnet-4-5"


@pytest.fixture(scope="module")
def anth(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gw = new_gateway(Path(tmp_path_factory.mktemp("front-anthropic")), sim=None)
    gw.cli("providers", "add", "anth", "--kind", "anthropic", "--base-url", sim.url)
    gw.cli("providers", "add-key", "anth", "--label", "main", input="sk-sim-front-door\n")
    gw.cli("models", "import", "--vendor", "anthropic", "--provider", "anth")
    gw.start()
    yield gw
    assert gw.stop() == 0


def test_anthropic_upstream_thinking_and_tools_round_trip(anth: Gateway, sim: Sim) -> None:
    """Signed thinking blocks and cache hints survive Anthropic -> OpenAI -> Anthropic and back."""
    account = anth.account("5.00")
    key = anth.key(account)
    client = sdk(anth, key)
    cache = {"type": "ephemeral"}
    options: dict[str, Any] = {
        "model": SONNET,
        "max_tokens": 4000,
        "thinking": {"type": "enabled", "budget_tokens": 2000},
        "tools": [WEATHER],
    }
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": "Weather? fd-claude", "cache_control": cache}]}
    ]
    first, usage, request_id = create(client, messages=messages, **options)
    assert [block.type for block in first.content] == ["thinking", "tool_use"]
    assert first.content[0].signature and first.stop_reason == "tool_use"
    found = record(anth, key, request_id)
    assert_anthropic_usage(usage, found["tokens"])
    assert usage["cost"] == found["total_cost"] > 0
    with client.messages.stream(messages=messages, **options) as stream:
        streamed = stream.get_final_message()
    assert [(b.type, getattr(b, "signature", None)) for b in streamed.content] == [
        (b.type, getattr(b, "signature", None)) for b in first.content
    ]
    call = first.content[1]
    messages += [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "21C"}]},
    ]
    answer, _, _ = create(client, messages=messages, **options)
    assert answer.stop_reason == "end_turn" and answer.content[-1].type == "text"
    sent = [r for r in sim.requests() if r["path"] == "/v1/messages" and "fd-claude" in json.dumps(r["body"])]
    upstream = sent[-1]["body"]["messages"]
    assert upstream[0]["content"][0]["cache_control"] == cache
    assert upstream[1]["content"][0] == first.content[0].model_dump(exclude_none=True)  # signed, unchanged
    assert upstream[2]["content"][0] == {"type": "tool_result", "tool_use_id": call.id, "content": "21C"}
    assert anth.verify()["ok"] is True
