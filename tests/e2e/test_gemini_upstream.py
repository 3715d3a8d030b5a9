"""The official `openai` SDK -> the real gateway -> the sim speaking Gemini: mapping both ways,
streams without [DONE], exact costs (cached, thinking, the long-context tier), errors, no charge on failure."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

import nemorouter
from conftest import NEMOROUTER, Gateway, Sim, _wait_for_line, new_gateway, stop, wait_until

FLASH = "google/gemini-2.5-flash"
PRO = "google/gemini-2.5-pro"
SECRET = "AIzaSy-vault-" + secrets.token_hex(8)
M = Decimal(10**6)
# USD per 1M tokens: (input, output, cached); the bundled catalog's list prices.
FLASH_PRICES = (Decimal("0.30"), Decimal("2.50"), Decimal("0.03"))
PRO_PRICES = (Decimal("1.25"), Decimal("10"), Decimal("0.125"))
PRO_LONG = (Decimal("2.5"), Decimal("15"), Decimal("0.25"))  # prompt above 200k tokens

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
}


def cost(prices: tuple[Decimal, Decimal, Decimal], prompt: int, completion: int, cached: int = 0) -> Decimal:
    inp, out, cache = prices
    return ((prompt - cached) * inp + cached * cache + completion * out) / M


def gemini_gateway(base: Path, url: str, secret: str) -> Gateway:
    gw = new_gateway(base, sim=None)
    gw.cli("providers", "add", "gem", "--kind", "gemini", "--base-url", url)
    gw.cli("providers", "add-key", "gem", "--label", "main", input=secret + "\n")
    gw.cli("models", "import", "--vendor", "google", "--provider", "gem")
    gw.start()
    return gw


@pytest.fixture(scope="module")
def gem(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gw = gemini_gateway(tmp_path_factory.mktemp("gemini"), sim.url, SECRET)
    yield gw
    assert gw.stop() == 0


@pytest.fixture
def client(gem: Gateway) -> openai.OpenAI:
    return gem.openai(gem.key(gem.account("5.00")))


def usage_of(raw: Any) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(raw.http_response.text, parse_float=Decimal)["usage"]
    return found


def create(client: openai.OpenAI, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    raw = client.chat.completions.with_raw_response.create(**kwargs)
    reply = raw.parse()
    assert Decimal(raw.headers["x-nemo-cost"]) == usage_of(raw)["cost"]
    return reply, usage_of(raw)


def stream(gem: Gateway, key: str, **body: Any) -> tuple[list[dict[str, Any]], str]:
    """The raw frames of a streamed request (money as decimals) and its request id."""
    with httpx.stream(
        "POST",
        f"{gem.url}/v1/chat/completions",
        json={**body, "stream": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200, response.read()
        frames = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
        request_id = response.headers["x-nemo-request-id"]
    if frames[-1] != "[DONE]":  # a failure: the usage chunk, then the error chunk ends the stream
        assert '"error"' in frames[-1] and '"usage"' in frames[-2]
        return [json.loads(f, parse_float=Decimal) for f in frames], request_id
    # [DONE] is the gateway's own, though Gemini sends none
    return [json.loads(f, parse_float=Decimal) for f in frames[:-1]], request_id


def streamed_text(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def finishes(chunks: list[dict[str, Any]]) -> list[str]:
    return [
        c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]
    ]


def last_request(sim: Sim, needle: str) -> dict[str, Any]:
    """The last request the sim received whose body contains `needle`."""
    found = [r for r in sim.requests() if needle in json.dumps(r["body"])]
    assert found, f"the sim never saw {needle!r}"
    return found[-1]


def spent(gem: Gateway, account: str) -> Decimal:
    return Decimal(str(gem.balance(account)["total_usage"]))


# -- mapping ----------------------------------------------------------------------------------


def test_text_non_stream_exact_cost_and_what_google_receives(gem: Gateway, sim: Sim) -> None:
    account = gem.account("5.00")
    client = gem.openai(gem.key(account))
    reply, usage = create(
        client, model=FLASH, messages=[{"role": "user", "content": "Hello, world! e2e-text"}]
    )
    assert reply.model == FLASH and reply.object == "chat.completion"
    assert reply.choices[0].finish_reason == "stop" and reply.choices[0].message.content
    words = len(reply.choices[0].message.content.split())
    assert usage["prompt_tokens"] == 3 + 3 + 7 and usage["completion_tokens"] == words
    assert usage["cost"] == cost(FLASH_PRICES, 13, words)
    assert spent(gem, account) == usage["cost"]
    seen = last_request(sim, "e2e-text")
    assert seen["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert seen["headers"]["x-goog-api-key"] == SECRET and "authorization" not in seen["headers"]
    assert "key=" not in seen["query"]
    assert seen["headers"]["user-agent"] == f"NemoRouter/{nemorouter.__version__}"  # not aiohttp's
    # No limit asked: the model's max_output, the one the hold was sized from, is still sent.
    assert seen["body"] == {
        "contents": [{"role": "user", "parts": [{"text": "Hello, world! e2e-text"}]}],
        "generationConfig": {"maxOutputTokens": 65536},
    }
    assert gem.verify()["ok"] is True


def test_text_stream_has_usage_and_cost_though_gemini_sends_no_done(
    gem: Gateway, sim: Sim, client: openai.OpenAI
) -> None:
    messages = [{"role": "user", "content": "Same words both ways e2e-stream"}]
    whole, whole_usage = create(client, model=FLASH, messages=messages)
    chunks, request_id = stream(gem, client.api_key, model=FLASH, messages=messages)
    assert streamed_text(chunks) == whole.choices[0].message.content
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["id"] == request_id and c["model"] == FLASH for c in chunks)
    assert finishes(chunks) == ["stop"]
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == [] and usage["completion_tokens"] == whole_usage["completion_tokens"]
    assert (
        usage["cost"]
        == whole_usage["cost"]
        == cost(FLASH_PRICES, usage["prompt_tokens"], usage["completion_tokens"])
    )
    seen = last_request(sim, "e2e-stream")
    assert seen["path"].endswith(":streamGenerateContent") and seen["query"] == "alt=sse"
    assert seen["headers"]["x-goog-api-key"] == SECRET
    record = httpx.get(
        f"{gem.url}/v1/generation",
        params={"id": request_id},
        headers={"Authorization": f"Bearer {client.api_key}"},
    ).json()["data"]
    assert record["status"] == "success" and record["streamed"] is True
    assert gem.verify()["ok"] is True


def test_system_and_multi_turn(gem: Gateway, sim: Sim, client: openai.OpenAI) -> None:
    messages = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "How are you? e2e-multi"},
    ]
    reply, usage = create(client, model=FLASH, messages=messages)
    # priming 3; system 3+3; "Hi" 3+1; "Hello" 3+1; "How are you? e2e-multi" 3+7
    assert usage["prompt_tokens"] == 3 + 6 + 4 + 4 + 10
    body = last_request(sim, "e2e-multi")["body"]
    assert body["systemInstruction"] == {"parts": [{"text": "Be terse."}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    chunks, _ = stream(gem, client.api_key, model=FLASH, messages=messages)
    assert streamed_text(chunks) == reply.choices[0].message.content
    assert gem.verify()["ok"] is True


def test_tools_and_tool_results(gem: Gateway, sim: Sim, client: openai.OpenAI) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris? e2e-tools"}]
    reply, usage = create(client, model=FLASH, messages=messages, tools=[WEATHER], tool_choice="auto")
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"  # Gemini said STOP; the adapter knows better
    [call] = choice.message.tool_calls
    assert call.id == "call_0_get_weather" and call.function.name == "get_weather"
    assert set(json.loads(call.function.arguments)) == {"city", "days"}
    assert usage["cost"] == cost(FLASH_PRICES, usage["prompt_tokens"], usage["completion_tokens"])
    sent = last_request(sim, "e2e-tools")["body"]
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    assert "additionalProperties" not in json.dumps(sent["tools"])

    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'},
    ]
    answer, _ = create(client, model=FLASH, messages=messages, tools=[WEATHER])
    assert answer.choices[0].finish_reason == "stop" and answer.choices[0].message.content
    second = last_request(sim, "temp_c")["body"]
    assert second["contents"][1]["parts"][0]["functionCall"]["name"] == "get_weather"
    assert second["contents"][2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"content": '{"temp_c": 21}'}}}
    ]
    assert gem.verify()["ok"] is True


def test_streamed_tool_calls(gem: Gateway, client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Weather in Rome? e2e-stream-tools"}]
    whole, _ = create(client, model=FLASH, messages=messages, tools=[WEATHER])
    name, arguments = None, ""
    final = None
    reasons = []
    for chunk in client.chat.completions.create(model=FLASH, messages=messages, tools=[WEATHER], stream=True):
        if chunk.choices and chunk.choices[0].delta.tool_calls:
            fragment = chunk.choices[0].delta.tool_calls[0]
            name = name or fragment.function.name
            arguments += fragment.function.arguments or ""
        if chunk.choices and chunk.choices[0].finish_reason:
            reasons.append(chunk.choices[0].finish_reason)
        if chunk.usage is not None:
            final = chunk.usage
    assert name == "get_weather" and reasons == ["tool_calls"]
    assert json.loads(arguments) == json.loads(whole.choices[0].message.tool_calls[0].function.arguments)
    assert final is not None and Decimal(str(final.model_extra["cost"])) == cost(
        FLASH_PRICES, final.prompt_tokens, final.completion_tokens
    )
    assert gem.verify()["ok"] is True


def test_thought_signature_rides_in_the_tool_call_id(gem: Gateway, sim: Sim, client: openai.OpenAI) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather? e2e-sig [sim:thinking=20]"}]
    reply, usage = create(client, model=FLASH, messages=messages, tools=[WEATHER])
    [call] = reply.choices[0].message.tool_calls
    assert call.id.startswith("call_0_get_weather__thought__")
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 20
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny e2e-sig-2"},
    ]
    create(client, model=FLASH, messages=messages, tools=[WEATHER])
    echoed = last_request(sim, "e2e-sig-2")["body"]["contents"][1]["parts"][0]
    assert echoed["thoughtSignature"] == call.id.split("__thought__")[1]


def test_image_data_url(gem: Gateway, sim: Sim, client: openai.OpenAI) -> None:
    image = "data:image/png;base64,iVBORw0KGgo="
    content = [
        {"type": "text", "text": "What is it? e2e-image"},
        {"type": "image_url", "image_url": {"url": image}},
    ]
    reply, usage = create(client, model=FLASH, messages=[{"role": "user", "content": content}])
    assert reply.choices[0].message.content
    assert usage["prompt_tokens"] == 3 + 3 + 7 + 85  # an image is 85 tokens in the sim
    parts = last_request(sim, "e2e-image")["body"]["contents"][0]["parts"]
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
    chunks, _ = stream(gem, client.api_key, model=FLASH, messages=[{"role": "user", "content": content}])
    assert streamed_text(chunks) == reply.choices[0].message.content


def test_json_mode_and_schema(gem: Gateway, client: openai.OpenAI) -> None:
    reply, _ = create(
        client,
        model=FLASH,
        messages=[{"role": "user", "content": "JSON please"}],
        response_format={"type": "json_object"},
    )
    assert set(json.loads(reply.choices[0].message.content)) == {"answer"}
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "num", "strict": True, "schema": schema}}
    shaped, _ = create(
        client, model=FLASH, messages=[{"role": "user", "content": "A number"}], response_format=fmt
    )
    assert isinstance(json.loads(shaped.choices[0].message.content)["n"], int)
    chunks, _ = stream(
        gem,
        client.api_key,
        model=FLASH,
        messages=[{"role": "user", "content": "A number"}],
        response_format=fmt,
    )
    assert json.loads(streamed_text(chunks)) == json.loads(shaped.choices[0].message.content)


def test_stop_and_max_tokens(gem: Gateway, sim: Sim, client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Count words [sim:tokens=20]"}]
    full, _ = create(client, model=FLASH, messages=messages)
    words = full.choices[0].message.content.split()
    stopped, usage = create(client, model=FLASH, messages=messages, stop=[words[5]])
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content.split() == words[: words.index(words[5])]
    chunks, _ = stream(gem, client.api_key, model=FLASH, messages=messages, stop=[words[5]])
    assert streamed_text(chunks) == stopped.choices[0].message.content and finishes(chunks) == ["stop"]
    assert last_request(sim, "Count words")["body"]["generationConfig"] == {
        "maxOutputTokens": 65536,  # the model's max_output, held and always sent
        "stopSequences": [words[5]],
    }
    capped, usage = create(client, model=FLASH, messages=messages, max_tokens=7)
    assert capped.choices[0].finish_reason == "length" and usage["completion_tokens"] == 7
    assert capped.choices[0].message.content.split() == words[:7]
    chunks, _ = stream(gem, client.api_key, model=FLASH, messages=messages, max_tokens=7)
    assert finishes(chunks) == ["length"] and chunks[-1]["usage"]["completion_tokens"] == 7
    assert gem.verify()["ok"] is True


def test_blocked_prompt_is_content_filter(gem: Gateway, client: openai.OpenAI) -> None:
    reply, usage = create(client, model=FLASH, messages=[{"role": "user", "content": "Bad [sim:blocked=1]"}])
    assert reply.choices[0].finish_reason == "content_filter" and reply.choices[0].message.content == ""
    assert usage["completion_tokens"] == 0 and usage["cost"] == cost(FLASH_PRICES, usage["prompt_tokens"], 0)


# -- exact money ------------------------------------------------------------------------------


def test_cached_tokens_cost(gem: Gateway) -> None:
    account = gem.account("5.00")
    client = gem.openai(gem.key(account))
    messages = [{"role": "user", "content": "Cached prefix please [sim:cached=8]"}]
    _, usage = create(client, model=FLASH, messages=messages)
    assert usage["prompt_tokens_details"]["cached_tokens"] == 8
    assert usage["cost"] == cost(FLASH_PRICES, usage["prompt_tokens"], usage["completion_tokens"], cached=8)
    chunks, _ = stream(gem, client.api_key, model=FLASH, messages=messages)
    assert chunks[-1]["usage"] == usage
    assert spent(gem, account) == 2 * usage["cost"]
    assert gem.verify()["ok"] is True


def test_tool_use_prompt_tokens_are_billed_as_input(gem: Gateway, client: openai.OpenAI) -> None:
    _, plain_usage = create(
        client, model=FLASH, messages=[{"role": "user", "content": "Search [sim:tool_use=0]"}]
    )
    _, usage = create(
        client, model=FLASH, messages=[{"role": "user", "content": "Search [sim:tool_use=300]"}]
    )
    assert usage["prompt_tokens"] == plain_usage["prompt_tokens"] + 300
    assert usage["cost"] == cost(FLASH_PRICES, usage["prompt_tokens"], usage["completion_tokens"])


def test_thinking_tokens_are_billed_as_output(gem: Gateway) -> None:
    account = gem.account("5.00")
    client = gem.openai(gem.key(account))
    messages = [{"role": "user", "content": "Think first [sim:thinking=50,tokens=10]"}]
    reply, usage = create(client, model=FLASH, messages=messages)
    assert len(reply.choices[0].message.content.split()) == 10
    assert usage["completion_tokens"] == 60 and usage["completion_tokens_details"]["reasoning_tokens"] == 50
    assert usage["cost"] == cost(FLASH_PRICES, usage["prompt_tokens"], 60)
    chunks, _ = stream(gem, client.api_key, model=FLASH, messages=messages)
    assert chunks[-1]["usage"] == usage
    assert spent(gem, account) == 2 * usage["cost"]
    assert gem.verify()["ok"] is True


def test_long_context_tier_and_an_overrun_charged_at_its_hold(gem: Gateway) -> None:
    account = gem.account("10.00")
    client = gem.openai(gem.key(account))
    before = gem.verify()["overruns"]
    # A real prompt past the 200k-token tier (the simulator counts each word as a token).
    long_prompt = [{"role": "user", "content": "word " * 201_000}]
    _, usage = create(client, model=PRO, messages=long_prompt, max_tokens=20)
    assert usage["prompt_tokens"] > 200_000
    assert usage["cost"] == cost(PRO_LONG, usage["prompt_tokens"], usage["completion_tokens"])
    # A provider that reports 250k prompt tokens for a short prompt is not charged past the hold:
    # the customer pays the hold, the rest is the operator's overrun (streamed this time).
    short = [{"role": "user", "content": "Pretend this is long [sim:prompt_tokens=250000]"}]
    hold = gem.hold_of({"model": PRO, "messages": short, "max_tokens": 20})
    chunks, request_id = stream(gem, client.api_key, model=PRO, messages=short, max_tokens=20)
    capped = chunks[-1]["usage"]
    assert capped["cost"] == hold
    assert capped["prompt_tokens"] < 250_000  # the record shows what the hold covered
    assert spent(gem, account) == usage["cost"] + hold
    report = gem.verify()
    assert report["ok"] is True and report["problems"] == []
    assert report["overruns"] == before + 1
    [listed] = [o for o in report["overrun_requests"] if o["request_id"] == request_id]
    assert Decimal(str(listed["charged"])) == hold
    assert Decimal(str(listed["reported_cost"])) == cost(PRO_LONG, 250_000, capped["completion_tokens"])


# -- failures ---------------------------------------------------------------------------------


def test_503_is_502_and_nothing_charged(gem: Gateway) -> None:
    account = gem.account("5.00")
    client = gem.openai(gem.key(account))
    for streamed in (False, True):
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(
                model=FLASH, messages=[{"role": "user", "content": "Fail [sim:status=503]"}], stream=streamed
            )
        assert caught.value.status_code == 502
        assert caught.value.body["type"] == "upstream_error"
    balance = gem.balance(account)
    assert spent(gem, account) == 0 and balance["held"] == 0
    assert gem.verify()["ok"] is True


def test_429_retry_delay_reaches_the_client(tmp_path: Path, sim: Sim) -> None:
    # Its own gateway: the delay also cools the vault key down for the following requests.
    gw = gemini_gateway(tmp_path, sim.url, SECRET)
    try:
        account = gw.account("5.00")
        client = gw.openai(gw.key(account))
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(
                model=FLASH, messages=[{"role": "user", "content": "[sim:status=429,retry_after=12]"}]
            )
        assert caught.value.response.headers["retry-after"] == "12"  # from Google's RetryInfo, not a header
        assert spent(gw, account) == 0 and gw.verify()["ok"] is True
    finally:
        assert gw.stop() == 0


def test_error_inside_the_stream_is_forwarded_and_output_charged(gem: Gateway) -> None:
    account = gem.account("5.00")
    key = gem.key(account)
    chunks, _ = stream(
        gem, key, model=FLASH, messages=[{"role": "user", "content": "Go [sim:tokens=20,error_after=4]"}]
    )
    assert len(streamed_text(chunks).split()) == 4
    errors = [c for c in chunks if "error" in c]
    assert errors == [chunks[-1]] and errors[0]["choices"][0]["finish_reason"] == "error"
    usage = chunks[-2]["usage"]
    assert usage["completion_tokens"] == 4 and usage["cost"] == spent(gem, account) > 0
    assert gem.verify()["ok"] is True


def test_unsupported_content_is_400_and_nothing_charged(gem: Gateway, sim: Sim) -> None:
    account = gem.account("5.00")
    client = gem.openai(gem.key(account))
    bad_requests: list[dict[str, Any]] = [
        {"messages": [{"role": "user", "content": "hi e2e-unsupported"}], "logprobs": True},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "e2e-unsupported"},
                        {"type": "image_url", "image_url": {"url": "https://x.test/pic"}},
                    ],
                }
            ]
        },
        {
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
                    ],
                },
                {"role": "user", "content": "hi e2e-unsupported"},
            ]
        },
    ]
    for body in bad_requests:
        for streamed in (False, True):
            with pytest.raises(openai.BadRequestError) as caught:
                client.chat.completions.create(model=FLASH, stream=streamed, **body)
            assert caught.value.body["type"] == "invalid_request"
    reached = [r for r in sim.requests() if "e2e-unsupported" in json.dumps(r["body"])]
    assert reached == []  # nothing reached Google
    assert spent(gem, account) == 0 and gem.balance(account)["held"] == 0
    assert gem.verify()["ok"] is True


@pytest.fixture(scope="module")
def strict_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    """A sim that accepts only the key `AIza-good`, as Google accepts only real keys."""
    log = open(tmp_path_factory.mktemp("strict-sim") / "sim.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [*NEMOROUTER, "sim", "--port", "0", "--key", "AIza-good"],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    line = _wait_for_line(proc, "http://", 20)
    yield Sim(line[line.index("http://") :].strip(), proc)
    stop(proc)
    log.close()


@pytest.mark.parametrize("streamed", [False, True])
def test_key_google_rejects_is_502_and_nothing_charged(
    tmp_path: Path, strict_sim: Sim, streamed: bool
) -> None:
    # A gateway each way: the first refusal quarantines the gateway's only key.
    gw = gemini_gateway(tmp_path, strict_sim.url, "AIza-bad")
    try:
        account = gw.account("5.00")
        client = gw.openai(gw.key(account))
        seen = len(strict_sim.requests())
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(
                model=FLASH, messages=[{"role": "user", "content": "hi"}], stream=streamed
            )
        assert caught.value.status_code == 502 and caught.value.body["type"] == "upstream_error"
        assert "refused its credentials" in caught.value.body["message"]
        assert "AIza-bad" not in caught.value.response.text
        records = strict_sim.requests()
        assert len(records) == seen + 1 and records[-1]["headers"]["x-goog-api-key"] == "AIza-bad"
        # Google's 400 API_KEY_INVALID is a refused key, not a bad request: the key is quarantined.
        assert wait_until(
            lambda: gw.admin("GET", "/providers/gem").json()["data"]["keys"][0]["quarantined_at"]
        )
        assert spent(gw, account) == 0 and gw.balance(account)["held"] == 0
        assert gw.verify()["ok"] is True
    finally:
        assert gw.stop() == 0
