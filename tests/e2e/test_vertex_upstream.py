"""The official `openai` and `anthropic` SDKs -> the real gateway -> the sim playing Vertex AI:
Gemini and Claude on one `vertex` provider whose vault key is a service account (a throwaway RSA
key made here), tokens minted from the sim's OAuth endpoint, exact costs per publisher, token
refresh, a refused account quarantined, and neither the key nor a token in plaintext anywhere."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from conftest import Gateway, Sim, new_gateway, wait_until
from secret_scan import SESSION as SECRET_SCAN
from service_accounts import ServiceAccount, accept, issued_tokens, new_account

GEMINI = "vertex/gemini-2.5-flash"
CLAUDE = "vertex/claude-sonnet-4-5@20250929"
M = Decimal(10**6)
# USD per 1M tokens, the bundled catalog's vertex rows (src/nemorouter/data/catalog.csv).
GEMINI_IN, GEMINI_OUT, GEMINI_READ = Decimal("0.3"), Decimal("2.5"), Decimal("0.03")
CLAUDE_IN, CLAUDE_OUT, CLAUDE_READ, CLAUDE_WRITE = (Decimal(p) for p in ("3", "15", "0.3", "3.75"))
PROJECT, REGION = "nemo-test", "us-east5"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def register(account: ServiceAccount) -> None:
    """The account's key, whole and line by line (a PEM line is what a partial leak shows)."""
    SECRET_SCAN.registry.add(account.private_key, "a service account's private key")
    for line in account.private_key.splitlines():
        if not line.startswith("-----"):
            SECRET_SCAN.registry.add(line, "a line of a service account's private key")


def vertex_gateway(base: Path, sim: Sim, account: ServiceAccount, from_file: bool = False) -> Gateway:
    register(account)
    name = "vx"
    gw = new_gateway(base, sim=None)
    gw.cli(
        "providers", "add", name, "--kind", "vertex", "--base-url", sim.url, "--project", PROJECT,
        "--region", REGION,
    )  # fmt: skip
    if from_file:
        key_file = base / "sa-key.json"
        key_file.write_text(account.key_file())
        gw.cli("providers", "add-key", name, "--label", "sa", "--secret-file", str(key_file))
        key_file.unlink()
    else:
        gw.cli(
            "providers", "add-key", name, "--label", "sa", input=account.key_file()
        )  # the whole JSON, piped
    gw.cli("models", "import", "--vendor", "vertex", "--provider", name)
    gw.start()
    return gw


@pytest.fixture(scope="module")
def vx(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    account = new_account(sim.url)
    accept(sim.url, account)
    gw = vertex_gateway(tmp_path_factory.mktemp("vertex"), sim, account)
    yield gw
    assert gw.stop() == 0


@pytest.fixture(scope="module", autouse=True)
def scan_minted_tokens(sim: Sim) -> Iterator[None]:
    yield
    for token in issued_tokens(sim.url):
        SECRET_SCAN.registry.add(token, "an access token minted for a service account")


def usage_of(raw: Any) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(raw.http_response.text, parse_float=Decimal)["usage"]
    return found


def create(client: openai.OpenAI, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    raw = client.chat.completions.with_raw_response.create(**kwargs)
    usage = usage_of(raw)
    assert Decimal(raw.headers["x-nemo-cost"]) == usage["cost"]
    return raw.parse(), usage


def stream(gw: Gateway, key: str, **body: Any) -> list[dict[str, Any]]:
    with httpx.stream(
        "POST",
        f"{gw.url}/v1/chat/completions",
        json={**body, "stream": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200, response.read()
        frames = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert frames[-1] == "[DONE]", frames[-2:]
    return [json.loads(f, parse_float=Decimal) for f in frames[:-1]]


def last_call(sim: Sim, needle: str) -> dict[str, Any]:
    found = [r for r in sim.requests() if needle in json.dumps(r["body"])]
    assert found, f"the sim never saw {needle!r}"
    return found[-1]


def spent(gw: Gateway, account: str) -> Decimal:
    return Decimal(str(gw.balance(account)["total_usage"]))


def gemini_cost(prompt: int, completion: int, cached: int = 0) -> Decimal:
    return ((prompt - cached) * GEMINI_IN + cached * GEMINI_READ + completion * GEMINI_OUT) / M


def claude_cost(u: dict[str, Any]) -> Decimal:
    """Anthropic's conventions (providers.md): input_tokens excludes cache reads and writes."""
    return (
        u["input_tokens"] * CLAUDE_IN
        + u["cache_read_input_tokens"] * CLAUDE_READ
        + u["cache_creation_input_tokens"] * CLAUDE_WRITE
        + u["output_tokens"] * CLAUDE_OUT
    ) / M


def claude_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """The client's OpenAI usage back in Anthropic's terms (cache inside prompt_tokens)."""
    details = usage.get("prompt_tokens_details") or {}
    read, write = details.get("cached_tokens", 0), details.get("cache_write_tokens", 0)
    return {
        "input_tokens": usage["prompt_tokens"] - read - write,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write,
        "output_tokens": usage["completion_tokens"],
    }


def bearer_of(call: dict[str, Any], sim: Sim) -> str:
    token: str = call["headers"]["authorization"].removeprefix("Bearer ")
    assert token in issued_tokens(sim.url)
    return token


# -- Gemini on Vertex ---------------------------------------------------------------------------


def test_gemini_on_vertex_charged_at_the_catalog_price_both_ways(vx: Gateway, sim: Sim) -> None:
    account = vx.account("5.00")
    client = vx.openai(vx.key(account))
    messages = [{"role": "user", "content": "Hello from Vertex e2e-vx-gemini [sim:cached=4]"}]
    reply, usage = create(client, model=GEMINI, messages=messages)
    assert reply.model == GEMINI and reply.choices[0].finish_reason == "stop"
    words = len(reply.choices[0].message.content.split())
    assert usage["completion_tokens"] == words and usage["prompt_tokens_details"]["cached_tokens"] == 4
    assert usage["cost"] == gemini_cost(usage["prompt_tokens"], words, cached=4)
    seen = last_call(sim, "e2e-vx-gemini")
    assert seen["path"] == (
        f"/v1/projects/{PROJECT}/locations/{REGION}/publishers/google/models/gemini-2.5-flash:generateContent"
    )
    bearer_of(seen, sim)
    assert "x-goog-api-key" not in seen["headers"] and "key=" not in seen["query"]
    assert seen["body"]["generationConfig"] == {"maxOutputTokens": 65535}  # the catalog's max_output

    chunks = stream(vx, client.api_key, model=GEMINI, messages=messages)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == reply.choices[0].message.content
    assert chunks[-1]["usage"]["cost"] == usage["cost"]
    streamed = last_call(sim, "e2e-vx-gemini")
    assert streamed["path"].endswith(":streamGenerateContent") and streamed["query"] == "alt=sse"
    assert spent(vx, account) == 2 * usage["cost"]
    assert vx.verify()["ok"] is True


def test_gemini_on_vertex_tool_calls(vx: Gateway, sim: Sim) -> None:
    client = vx.openai(vx.key(vx.account("5.00")))
    messages = [{"role": "user", "content": "Weather in Paris? e2e-vx-gtools"}]
    reply, usage = create(client, model=GEMINI, messages=messages, tools=[WEATHER])
    call = reply.choices[0].message.tool_calls[0]
    assert reply.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["city"]
    assert usage["cost"] == gemini_cost(usage["prompt_tokens"], usage["completion_tokens"])
    chunks = stream(vx, client.api_key, model=GEMINI, messages=messages, tools=[WEATHER])
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls") or []]
    assert calls and calls[0]["function"]["name"] == "get_weather"
    assert chunks[-1]["usage"]["cost"] == usage["cost"]
    assert (
        last_call(sim, "e2e-vx-gtools")["body"]["tools"][0]["functionDeclarations"][0]["name"]
        == "get_weather"
    )


# -- Claude on Vertex ---------------------------------------------------------------------------


def test_claude_on_vertex_charged_in_anthropic_conventions_both_ways(vx: Gateway, sim: Sim) -> None:
    account = vx.account("5.00")
    client = vx.openai(vx.key(account))
    messages = [{"role": "user", "content": "Hello Claude e2e-vx-claude [sim:cached=6,cache_write=5]"}]
    reply, usage = create(client, model=CLAUDE, messages=messages, max_tokens=200)
    assert reply.model == CLAUDE and reply.choices[0].finish_reason == "stop"
    u = claude_usage(usage)
    assert (u["cache_read_input_tokens"], u["cache_creation_input_tokens"]) == (6, 5)
    assert u["input_tokens"] > 0 and usage["cost"] == claude_cost(u)
    seen = last_call(sim, "e2e-vx-claude")
    path = f"/v1/projects/{PROJECT}/locations/{REGION}/publishers/anthropic/models/claude-sonnet-4-5@20250929"
    assert seen["path"] == path + ":rawPredict"
    assert seen["body"]["anthropic_version"] == "vertex-2023-10-16" and "model" not in seen["body"]
    assert seen["body"]["max_tokens"] == 200
    bearer_of(seen, sim)
    assert "x-api-key" not in seen["headers"] and "anthropic-version" not in seen["headers"]

    chunks = stream(vx, client.api_key, model=CLAUDE, messages=messages, max_tokens=200)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == reply.choices[0].message.content and chunks[-1]["usage"]["cost"] == usage["cost"]
    assert last_call(sim, "e2e-vx-claude")["path"] == path + ":streamRawPredict"
    assert spent(vx, account) == 2 * usage["cost"]
    assert vx.verify()["ok"] is True


def test_claude_on_vertex_tool_calls(vx: Gateway) -> None:
    client = vx.openai(vx.key(vx.account("5.00")))
    messages = [{"role": "user", "content": "Weather in Paris? e2e-vx-ctools"}]
    reply, usage = create(client, model=CLAUDE, messages=messages, tools=[WEATHER], max_tokens=300)
    call = reply.choices[0].message.tool_calls[0]
    assert reply.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert usage["cost"] == claude_cost(claude_usage(usage))
    chunks = stream(vx, client.api_key, model=CLAUDE, messages=messages, tools=[WEATHER], max_tokens=300)
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls") or []]
    assert calls[0]["function"]["name"] == "get_weather"
    assert "".join(tc["function"].get("arguments") or "" for tc in calls) == call.function.arguments
    assert chunks[-1]["usage"]["cost"] == usage["cost"]


def test_the_anthropic_sdk_on_messages_through_claude_on_vertex(vx: Gateway, sim: Sim) -> None:
    account = vx.account("5.00")
    client = anthropic.Anthropic(base_url=vx.url, api_key=vx.key(account), max_retries=0)
    raw = client.messages.with_raw_response.create(
        model=CLAUDE, max_tokens=100, messages=[{"role": "user", "content": "Hi e2e-vx-messages"}]
    )
    message = raw.parse()
    assert message.type == "message" and message.content[0].type == "text" and message.content[0].text
    u = message.usage
    expected = (u.input_tokens * CLAUDE_IN + u.output_tokens * CLAUDE_OUT) / M
    assert Decimal(raw.headers["x-nemo-cost"]) == expected == spent(vx, account)
    with client.messages.stream(
        model=CLAUDE, max_tokens=100, messages=[{"role": "user", "content": "Hi e2e-vx-messages"}]
    ) as s:
        assert "".join(s.text_stream) == message.content[0].text
        assert s.get_final_message().usage.output_tokens == u.output_tokens
    assert last_call(sim, "e2e-vx-messages")["path"].endswith(":streamRawPredict")
    assert wait_until(lambda: spent(vx, account) == 2 * expected)
    assert vx.verify()["ok"] is True


# -- tokens ---------------------------------------------------------------------------------------


def test_a_token_is_reused_then_refreshed_before_it_expires(tmp_path: Path, sim: Sim) -> None:
    account = new_account(sim.url, "short")
    accept(sim.url, account, lifetime=3)  # its successor minted from 1.5 s on, it is sent until 2.25 s
    gw = vertex_gateway(tmp_path, sim, account, from_file=True)
    try:
        client = gw.openai(gw.key(gw.account("5.00")))

        def call(i: int) -> str:
            create(client, model=GEMINI, messages=[{"role": "user", "content": f"e2e-vx-refresh-{i}"}])
            return bearer_of(last_call(sim, f"e2e-vx-refresh-{i}"), sim)

        first = call(0)
        assert call(1) == first
        time.sleep(2)
        later = [call(i) for i in range(2, 5)]  # every one served; a new token within them
        assert later[-1] != first
        assert gw.verify()["ok"] is True
    finally:
        assert gw.stop() == 0


def test_a_token_vertex_refuses_is_dropped_and_the_key_kept(vx: Gateway, sim: Sim) -> None:
    account = vx.account("5.00")
    client = vx.openai(vx.key(account))
    create(client, model=GEMINI, messages=[{"role": "user", "content": "before e2e-vx-revoke"}])
    httpx.delete(f"{sim.url}/_sim/vertex/tokens")  # the cached token is now refused with a 401
    with pytest.raises(openai.APIStatusError) as refused:
        create(client, model=GEMINI, messages=[{"role": "user", "content": "during e2e-vx-revoke"}])
    assert refused.value.status_code == 502
    reply, _ = create(client, model=GEMINI, messages=[{"role": "user", "content": "after e2e-vx-revoke"}])
    assert reply.choices[0].message.content
    assert bearer_of(last_call(sim, "after e2e-vx-revoke"), sim) != last_call(sim, "before e2e-vx-revoke")[
        "headers"
    ]["authorization"].removeprefix("Bearer ")
    assert vx.admin("GET", "/providers/vx").json()["data"]["keys"][0]["quarantined_at"] is None
    assert vx.verify()["ok"] is True


def test_a_service_account_the_token_endpoint_refuses_is_quarantined(tmp_path: Path, sim: Sim) -> None:
    stranger = new_account(sim.url, "stranger")  # never accepted by the sim: invalid_grant
    gw = vertex_gateway(tmp_path, sim, stranger)
    try:
        account = gw.account("5.00")
        client = gw.openai(gw.key(account))
        with pytest.raises(openai.APIStatusError) as caught:
            create(client, model=GEMINI, messages=[{"role": "user", "content": "hi"}])
        assert caught.value.status_code == 502
        assert stranger.private_key.splitlines()[1] not in caught.value.response.text
        assert wait_until(
            lambda: gw.admin("GET", "/providers/vx").json()["data"]["keys"][0]["quarantined_at"]
        )
        assert spent(gw, account) == 0 and gw.balance(account)["held"] == 0
        assert gw.verify()["ok"] is True
        log = (gw.data_dir / "gateway.log").read_text()
        assert "quarantined" in log and stranger.email not in log
    finally:
        assert gw.stop() == 0


def test_a_token_endpoint_that_is_down_is_not_the_keys_fault(tmp_path: Path, sim: Sim) -> None:
    down = new_account(sim.url, "down")
    accept(sim.url, down, status=503)
    gw = vertex_gateway(tmp_path, sim, down)
    try:
        account = gw.account("5.00")
        client = gw.openai(gw.key(account))
        with pytest.raises(openai.APIStatusError) as caught:
            create(client, model=CLAUDE, messages=[{"role": "user", "content": "hi"}], max_tokens=10)
        assert caught.value.status_code == 502
        assert gw.admin("GET", "/providers/vx").json()["data"]["keys"][0]["quarantined_at"] is None
        assert spent(gw, account) == 0 and gw.balance(account)["held"] == 0
        assert gw.verify()["ok"] is True
    finally:
        assert gw.stop() == 0


# -- administration -------------------------------------------------------------------------------


def test_a_vertex_provider_needs_project_and_region_and_defaults_its_url(vx: Gateway) -> None:
    missing = vx.admin(
        "POST", "/providers", {"name": "vx-bad", "kind": "vertex", "config": {"region": "global"}}
    )
    assert missing.status_code == 400 and "config.project" in missing.json()["error"]["message"]
    made = vx.admin(
        "POST",
        "/providers",
        {"name": "vx-global", "kind": "vertex", "config": {"project": PROJECT, "region": "global"}},
    )
    assert made.status_code == 201, made.text
    assert made.json()["data"]["base_url"] == "https://aiplatform.googleapis.com"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda info: {**info, "type": "authorized_user"}, "secret.type"),
        (lambda info: {k: v for k, v in info.items() if k != "client_email"}, "secret.client_email"),
        (lambda info: {k: v for k, v in info.items() if k != "token_uri"}, "secret.token_uri"),
        (
            lambda info: {**info, "private_key": info["private_key"].replace("A", "B", 40)},
            "secret.private_key",
        ),
        (lambda info: "not json " + info["private_key"], "not JSON"),
    ],
)
def test_a_bad_service_account_is_refused_naming_the_field(
    vx: Gateway, sim: Sim, change: Any, named: str
) -> None:
    account = new_account(sim.url, "bad")
    register(account)
    changed = change(account.info)
    secret = changed if isinstance(changed, str) else json.dumps(changed)
    answer = vx.admin("POST", "/providers/vx/keys", {"secret": secret, "label": "refused"})
    assert answer.status_code == 400 and named in answer.json()["error"]["message"]
    assert account.private_key.splitlines()[1] not in answer.text
    assert "refused" not in vx.admin("GET", "/providers/vx").text


# -- a misbehaving upstream ---------------------------------------------------------------------


@pytest.mark.parametrize("model", [GEMINI, CLAUDE])
def test_a_usage_report_past_the_hold_is_charged_the_hold_at_most(vx: Gateway, model: str) -> None:
    account = vx.account("5.00")
    client = vx.openai(vx.key(account))
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Lie [sim:usage_scale=1000]"}],
        "max_tokens": 20,
    }
    hold = vx.hold_of(body)
    _, usage = create(client, **body)
    assert 0 < usage["cost"] <= hold and spent(vx, account) == usage["cost"]
    assert vx.balance(account)["held"] == 0
    assert vx.verify()["ok"] is True


@pytest.mark.parametrize("model", [GEMINI, CLAUDE])
@pytest.mark.parametrize("streamed", [False, True])
def test_a_malformed_answer_is_a_502_and_free(vx: Gateway, model: str, streamed: bool) -> None:
    account = vx.account("5.00")
    client = vx.openai(vx.key(account))
    messages = [{"role": "user", "content": "Garbage please [sim:malformed=1]"}]
    if streamed:
        with httpx.stream(
            "POST",
            f"{vx.url}/v1/chat/completions",
            json={"model": model, "messages": messages, "max_tokens": 20, "stream": True},
            headers={"Authorization": f"Bearer {client.api_key}"},
            timeout=30,
        ) as response:
            text = response.read().decode()
        assert response.status_code == 502 or '"error"' in text
    else:
        with pytest.raises(openai.APIStatusError) as caught:
            create(client, model=model, messages=messages, max_tokens=20)
        assert caught.value.status_code == 502
    assert vx.balance(account)["held"] == 0
    assert vx.verify()["ok"] is True


def test_vertex_refusing_a_token_mid_run_never_quarantines_the_account(vx: Gateway) -> None:
    client = vx.openai(vx.key(vx.account("5.00")))
    with pytest.raises(openai.APIStatusError) as caught:  # the sim answers 401 UNAUTHENTICATED
        create(client, model=GEMINI, messages=[{"role": "user", "content": "no [sim:bad_key=1]"}])
    assert caught.value.status_code == 502
    assert vx.admin("GET", "/providers/vx").json()["data"]["keys"][0]["quarantined_at"] is None
    reply, _ = create(client, model=GEMINI, messages=[{"role": "user", "content": "and now?"}])
    assert reply.choices[0].message.content
