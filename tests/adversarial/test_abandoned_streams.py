"""Issue 20, items 4 and 10: a client that hangs up still pays for what the provider did, and
after a stream has started an error is the last chunk, after the usage.

Before: a stream the client left after the provider's first event and before any content was
free (the hold was released), though the provider bills the whole prompt: free prefill and
free prompt-cache warming, as often as one liked. Now, once the provider has answered, the
prompt is charged: the provider's own count where it sent one (Anthropic's message_start,
Gemini's running usageMetadata), else the model family's tokenizer (OpenAI's o200k_base for
gpt-4o-mini), else the hold's prompt bound. A provider failure before any output stays free.

Everything runs through the real `nemorouter serve` and `nemorouter sim`; the client hangs up
by closing its socket after the first `data:` frame, while the sim waits before the content.
"""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from conftest import Gateway, Sim, new_gateway, wait_until
from nemorouter.providers.bounds import chat_input_bound
from nemorouter.providers.tokenizers import count_chat_prompt

M = Decimal(10**6)
GPT = "openai/gpt-4o-mini"
GPT_IN = Decimal("0.15")  # the bundled list price of gpt-4o-mini input, USD per 1M (data/catalog.csv)
CLAUDE = "anthropic/claude-sonnet-4-5"
CLAUDE_IN, CLAUDE_WRITE_5M, CLAUDE_READ = Decimal("3"), Decimal("3.75"), Decimal("0.3")
FLASH = "google/gemini-2.5-flash"
FLASH_IN, FLASH_OUT = Decimal("0.30"), Decimal("2.50")
# The sim sends its first event at once, then waits this long before the content: the window in
# which the client hangs up.
SLOW = "chunk_delay_ms=3000"


def hang_up_after_first_event(gw: Gateway, key: str, path: str, body: dict[str, Any]) -> str:
    """Send a streaming request over a raw socket, read until the first `data:` frame, close the
    socket (the client is gone); the request id from the response headers."""
    raw = json.dumps(body).encode()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nx-api-key: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n"
    ).encode() + raw
    with socket.create_connection(("127.0.0.1", gw.port), timeout=20) as sock:
        sock.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received or b"data: " not in received.split(b"\r\n\r\n", 1)[1]:
            piece = sock.recv(65536)
            assert piece, received
            received += piece
            assert received.startswith(b"HTTP/1.1 200") or b"\r\n\r\n" not in received, received
    head = received.split(b"\r\n\r\n", 1)[0].decode()
    return next(line.split(": ", 1)[1] for line in head.splitlines() if line.startswith("x-nemo-request-id"))


def settled_record(gw: Gateway, key: str, request_id: str) -> dict[str, Any]:
    def fetch() -> dict[str, Any]:
        found = httpx.get(
            f"{gw.url}/v1/generation", params={"id": request_id}, headers={"Authorization": f"Bearer {key}"}
        )
        assert found.status_code == 200, found.text
        data: dict[str, Any] = found.json()["data"]
        return data

    assert wait_until(lambda: fetch()["status"] != "pending", timeout=15)
    return fetch()


def spent(gw: Gateway, account: str) -> Decimal:
    balance = gw.balance(account)
    assert balance["held"] == 0  # every hold settled or released
    return Decimal(str(balance["total_usage"]))


def chat(model: str, content: str) -> dict[str, Any]:
    return {"model": model, "stream": True, "messages": [{"role": "user", "content": content}]}


def sim_prompt_tokens(sim: Sim, body: dict[str, Any]) -> int:
    """What the (OpenAI-format) sim itself counts for this prompt, asked directly and without faults."""
    plain = {**body, "model": body["model"].split("/")[-1], "stream": False}
    answer = httpx.post(
        f"{sim.url}/v1/chat/completions",
        json=plain,
        headers={"Authorization": "Bearer sk-sim-replay"},
        timeout=20,
    )
    assert answer.status_code == 200, answer.text
    count: int = answer.json()["usage"]["prompt_tokens"]
    return count


# ----------------------------------------------------------------------------- OpenAI upstream


def test_hanging_up_before_content_pays_the_prompt_by_the_families_tokenizer(
    gateway: Gateway, sim: Sim
) -> None:
    account = gateway.account("1.00")
    key = gateway.key(account)
    body = chat(GPT, f"Please write a long essay about the history of tea in China. [sim:{SLOW},tokens=50]")
    request_id = hang_up_after_first_event(gateway, key, "/v1/chat/completions", body)
    record = settled_record(gateway, key, request_id)
    assert record["status"] == "cancelled" and record["cancelled"] is True
    expected = count_chat_prompt(body, [GPT], 10**9)
    assert expected is not None
    assert record["tokens"]["prompt"] == expected >= sim_prompt_tokens(sim, body)
    assert record["tokens"]["completion"] == 0
    cost = expected * GPT_IN / M
    assert Decimal(str(record["total_cost"])) == cost > 0
    assert spent(gateway, account) == cost
    assert gateway.verify()["ok"] is True


def test_hanging_up_n_times_costs_n_prompts(gateway: Gateway) -> None:
    account = gateway.account("1.00")
    key = gateway.key(account)
    body = chat(GPT, f"Warm my cache for free, again and again. [sim:{SLOW},tokens=50]")
    expected = count_chat_prompt(body, [GPT], 10**9)
    assert expected is not None
    n = 5
    for _ in range(n):
        request_id = hang_up_after_first_event(gateway, key, "/v1/chat/completions", body)
        assert settled_record(gateway, key, request_id)["tokens"]["prompt"] == expected
    assert spent(gateway, account) == n * expected * GPT_IN / M
    assert gateway.verify()["ok"] is True


def test_a_family_without_an_offline_tokenizer_pays_the_prompt_bound(gateway: Gateway, sim: Sim) -> None:
    """No provider count, no tokenizer (a Llama on an OpenAI-format upstream): the hold's prompt
    bound, which never undercounts (every token is at least one byte) and never passes the hold."""
    model = {
        "id": "adv/llama-abandoned",
        "context_length": 8000,
        "max_output": 100,
        "pricing": {"input": "1", "output": "2"},
        "deployments": [{"provider": "sim", "upstream_model": "llama-3.1-8b-instruct"}],
    }
    made = gateway.admin("POST", "/models", model)
    assert made.status_code == 201, made.text
    account = gateway.account("1.00")
    key = gateway.key(account)
    body = chat("adv/llama-abandoned", f"Count me without a tokenizer, then leave. [sim:{SLOW},tokens=50]")
    request_id = hang_up_after_first_event(gateway, key, "/v1/chat/completions", body)
    record = settled_record(gateway, key, request_id)
    assert record["status"] == "cancelled"
    bound = chat_input_bound(body)
    assert record["tokens"]["prompt"] == bound >= sim_prompt_tokens(sim, {**body, "model": "x/gpt-4o-mini"})
    assert spent(gateway, account) == bound * 1 / M
    assert gateway.verify()["ok"] is True


def test_the_anthropic_front_door_charges_the_same_prompt(gateway: Gateway) -> None:
    """/v1/messages wraps the same relay: a client gone before content pays the same prompt."""
    account = gateway.account("1.00")
    key = gateway.key(account)
    content = f"Front door, then gone. [sim:{SLOW},tokens=50]"
    body = {
        "model": GPT,
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": content}],
    }
    request_id = hang_up_after_first_event(gateway, key, "/v1/messages", body)
    record = settled_record(gateway, key, request_id)
    assert record["status"] == "cancelled"
    translated = {"messages": [{"role": "user", "content": content}]}  # what the front door sends on
    expected = count_chat_prompt(translated, [GPT], 10**9)
    assert expected is not None and record["tokens"]["prompt"] == expected
    assert spent(gateway, account) == expected * GPT_IN / M > 0
    assert gateway.verify()["ok"] is True


@pytest.mark.parametrize("directive", ["tokens=20,error_after=0", "tokens=20,cut_after=0"])
def test_a_provider_failure_before_any_output_is_still_free(gateway: Gateway, directive: str) -> None:
    """The provider answered, then failed (an error event, a cut connection) before any content:
    its fault, nothing charged; the stream still ends with a usage chunk (cost 0) and the error."""
    account = gateway.account("1.00")
    key = gateway.key(account)
    answer = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json=chat(GPT, f"Fail at once [sim:{directive}]"),
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert answer.status_code == 200
    frames = [line[6:] for line in answer.text.splitlines() if line.startswith("data: ")]
    assert "[DONE]" not in frames
    usage, error = (json.loads(f, parse_float=Decimal) for f in frames[-2:])
    assert usage["choices"] == [] and usage["usage"]["cost"] == 0 and usage["usage"]["prompt_tokens"] == 0
    assert error["choices"][0]["finish_reason"] == "error" and error["error"]["type"] == "upstream_error"
    record = settled_record(gateway, key, answer.headers["x-nemo-request-id"])
    assert record["status"] == "error" and Decimal(str(record["total_cost"])) == 0
    assert spent(gateway, account) == 0
    assert gateway.verify()["ok"] is True


def test_the_openai_sdk_sees_the_usage_and_cost_before_the_error(gateway: Gateway) -> None:
    account = gateway.account("1.00")
    client = gateway.openai(gateway.key(account))
    seen: list[Any] = []
    with pytest.raises(openai.APIError) as raised:
        stream = client.chat.completions.create(
            model=GPT,
            stream=True,
            messages=[{"role": "user", "content": "Fail midway [sim:tokens=20,error_after=4]"}],
        )
        for chunk in stream:
            seen.append(chunk)
    assert "error while streaming" in str(raised.value)
    last = seen[-1]  # the chunk just before the error: the usage, with its cost
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == 4
    cost = Decimal(str(last.usage.model_extra["cost"]))
    assert cost == spent(gateway, account) > 0
    assert len("".join(c.choices[0].delta.content or "" for c in seen if c.choices).split()) == 4
    assert gateway.verify()["ok"] is True


# ----------------------------------------------------------------------------- Anthropic upstream


@pytest.fixture(scope="module")
def anth(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gw = new_gateway(tmp_path_factory.mktemp("abandoned-anthropic"), sim=None)
    gw.cli("providers", "add", "anth", "--kind", "anthropic", "--base-url", sim.url)
    gw.cli(
        "providers", "add-key", "anth", "--label", "main", input="sk-sim-anth-" + secrets.token_hex(8) + "\n"
    )
    gw.cli("models", "import", "--vendor", "anthropic", "--provider", "anth")
    gw.start()
    yield gw
    assert gw.stop() == 0


def anthropic_reported_usage(sim: Sim) -> dict[str, Any]:
    """The usage the sim reports for the last upstream body it saw (deterministic: replayed)."""
    body = next(r for r in sim.requests() if r["path"] == "/v1/messages")["body"]
    headers = {"x-api-key": "sk-sim-replay", "anthropic-version": "2023-06-01"}
    answer = httpx.post(f"{sim.url}/v1/messages", json={**body, "stream": False}, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    usage: dict[str, Any] = answer.json()["usage"]
    return usage


def test_hanging_up_after_message_start_pays_anthropics_own_prompt_count(anth: Gateway, sim: Sim) -> None:
    """message_start carries Anthropic's input count, cache reads and writes: the prompt and the
    cache warming are charged exactly, N hang-ups cost N times that."""
    account = anth.account("10.00")
    key = anth.key(account)
    body = chat(CLAUDE, f"Warm a prompt cache and leave [sim:{SLOW},tokens=50,cache_write=6,cached=4]")
    body["max_tokens"] = 100  # small holds: several abandoned requests may be settling at once
    sim.clear()
    request_id = hang_up_after_first_event(anth, key, "/v1/chat/completions", body)
    record = settled_record(anth, key, request_id)
    u = anthropic_reported_usage(sim)
    assert u["cache_creation_input_tokens"] == 6 and u["cache_read_input_tokens"] == 4
    assert record["status"] == "cancelled"
    prompt = u["input_tokens"] + u["cache_creation_input_tokens"] + u["cache_read_input_tokens"]
    assert record["tokens"] == {
        "prompt": prompt,
        "completion": 0,
        "cached": 4,
        "cache_write": 6,
        "reasoning": 0,
    }
    one = (u["input_tokens"] * CLAUDE_IN + 6 * CLAUDE_WRITE_5M + 4 * CLAUDE_READ) / M
    assert Decimal(str(record["total_cost"])) == one
    for _ in range(3):
        hang_up_after_first_event(anth, key, "/v1/chat/completions", body)
    assert wait_until(lambda: anth.balance(account)["held"] == 0, timeout=15)
    assert spent(anth, account) == 4 * one
    assert anth.verify()["ok"] is True


# ----------------------------------------------------------------------------- Gemini upstream


@pytest.fixture(scope="module")
def gem(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gw = new_gateway(tmp_path_factory.mktemp("abandoned-gemini"), sim=None)
    gw.cli("providers", "add", "gem", "--kind", "gemini", "--base-url", sim.url)
    gw.cli(
        "providers",
        "add-key",
        "gem",
        "--label",
        "main",
        input="AIzaSy-abandon-" + secrets.token_hex(8) + "\n",
    )
    gw.cli("models", "import", "--vendor", "google", "--provider", "gem")
    gw.start()
    yield gw
    assert gw.stop() == 0


def test_hanging_up_mid_gemini_stream_pays_googles_prompt_count(gem: Gateway, sim: Sim) -> None:
    """Gemini's first event already holds content and a running usageMetadata: its promptTokenCount
    is charged exactly (no estimate), with the output that reached the client."""
    account = gem.account("1.00")
    key = gem.key(account)
    body = chat(FLASH, f"Start, then I leave [sim:{SLOW},tokens=50,prompt_tokens=777]")
    request_id = hang_up_after_first_event(gem, key, "/v1/chat/completions", body)
    record = settled_record(gem, key, request_id)
    assert record["status"] == "cancelled"
    assert record["tokens"]["prompt"] == 777  # Google's own count, not the tokenizer's nor the bound
    completion = record["tokens"]["completion"]
    assert 1 <= completion < 50
    assert (
        spent(gem, account)
        == Decimal(str(record["total_cost"]))
        == (777 * FLASH_IN + completion * FLASH_OUT) / M
    )
    assert gem.verify()["ok"] is True
