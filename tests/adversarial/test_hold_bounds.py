"""Issue 20, scope 2: the hold covers everything the provider bills, whatever the request carries.

Through the real gateway and simulator: the limit the simulator receives is exactly the one the
hold was sized from (the two-field trick on a vendor row that renames the field, a request with
no limit); parts the old bound missed (an 800 KB legacy `function_call`, a large inline file)
are held in full or refused. After each: key usage <= limit, balance >= 0 to the pico-dollar,
nothing left held, and `ledger verify` ok.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from conftest import Gateway, Sim, new_gateway

PER_MILLION = Decimal(10) ** 6


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gateway = new_gateway(tmp_path_factory.mktemp("hold-bounds"), sim)
    gateway.start()
    made = gateway.admin(
        "POST",
        "/providers",
        {"name": "mistral", "kind": "openai-compatible", "vendor": "mistral", "base_url": f"{sim.url}/v1"},
    )
    assert made.status_code == 201, made.text
    assert gateway.admin("POST", "/providers/mistral/keys", {"secret": "sk-sim-mistral"}).status_code == 201
    # Output dear, so 200000 tokens cost far more than any key or account below holds.
    deploy(gateway, "adv/mistral", "mistral", context=262_144, max_output=262_144, out="10")
    deploy(gateway, "adv/openai", "sim", context=100_000, max_output=1_000, out="2")
    yield gateway
    assert gateway.stop() == 0


def deploy(gw: Gateway, model_id: str, provider: str, context: int, max_output: int, out: str) -> None:
    body = {
        "id": model_id,
        "context_length": context,
        "max_output": max_output,
        "pricing": {"input": "1", "output": out},
        "deployments": [{"provider": provider, "upstream_model": "sim-model"}],
    }
    created = gw.admin("POST", "/models", body)
    assert created.status_code == 201, created.text


def chat(gw: Gateway, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{gw.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )


def exact(response: httpx.Response) -> Any:
    return json.loads(response.text, parse_float=Decimal)


def sent_upstream(sim: Sim, marker: str) -> list[dict[str, Any]]:
    return [r["body"] for r in sim.requests() if marker in json.dumps(r.get("body"))]


def needed(gw: Gateway, body: dict[str, Any]) -> Decimal:
    """The hold the gateway asks for `body`, read from the 402 of a key that affords nothing."""
    probe = gw.key(gw.account("1.00"), limit="0.000000000001")
    refused = chat(gw, probe, body)
    assert refused.status_code == 402, refused.text
    amount: Decimal = exact(refused)["error"]["needed"]
    return amount


def assert_capped(gw: Gateway, account: str, key: str, limit: Decimal | None) -> None:
    """Key usage within its limit, balance not negative, nothing held, the books verified."""
    state = exact(httpx.get(f"{gw.url}/v1/key", headers={"Authorization": f"Bearer {key}"}))["data"]
    if limit is not None:
        assert Decimal(str(state["usage"])) <= limit
    balance = gw.balance(account)
    assert Decimal(str(balance["balance"])) >= 0
    assert Decimal(str(balance["held"])) == 0
    report = gw.verify()
    assert report["ok"] is True, report


def test_the_two_field_trick_on_a_renaming_vendor_sends_exactly_the_held_limit(gw: Gateway, sim: Sim) -> None:
    account = gw.account("1.00")
    key = gw.key(account, limit="0.01")
    marker = f"trick-{secrets.token_hex(4)}"
    body = {
        "model": "adv/mistral",
        "messages": [{"role": "user", "content": f"write a lot {marker} [sim:tokens=5000]"}],
        "max_completion_tokens": 1,
        "max_tokens": 200_000,
    }
    answer = chat(gw, key, body)
    assert answer.status_code == 200, answer.text
    assert exact(answer)["usage"]["completion_tokens"] <= 1
    [seen] = sent_upstream(sim, marker)
    # Mistral's row obeys max_tokens: it carries the held 1, and no other limit field reaches it.
    assert seen["max_tokens"] == 1 and "max_completion_tokens" not in seen
    assert needed(gw, body) == needed(gw, {**body, "max_tokens": 1})  # the hold is sized from 1
    assert_capped(gw, account, key, Decimal("0.01"))


def test_the_two_field_trick_streamed_sends_the_same_limit(gw: Gateway, sim: Sim) -> None:
    account = gw.account("1.00")
    key = gw.key(account, limit="0.01")
    marker = f"trick-stream-{secrets.token_hex(4)}"
    body = {
        "model": "adv/mistral",
        "messages": [{"role": "user", "content": f"stream a lot {marker} [sim:tokens=5000]"}],
        "max_tokens": 200_000,
        "max_output_tokens": 2,
        "stream": True,
    }
    answer = chat(gw, key, body)
    assert answer.status_code == 200, answer.text
    events = [json.loads(line[6:], parse_float=Decimal) for line in answer.text.splitlines()
              if line.startswith("data: {")]  # fmt: skip
    usage = [e["usage"] for e in events if e.get("usage")][-1]
    assert usage["completion_tokens"] <= 2
    [seen] = sent_upstream(sim, marker)
    assert seen["max_tokens"] == 2 and "max_output_tokens" not in seen and seen["stream"] is True
    assert_capped(gw, account, key, Decimal("0.01"))


async def _forty(gw: Gateway, key: str, body: dict[str, Any]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=gw.url, timeout=60) as client:
        return await asyncio.gather(
            *(
                client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
                for _ in range(40)
            )
        )


def test_forty_concurrent_two_field_requests_never_push_the_balance_below_zero(gw: Gateway) -> None:
    account = gw.account("0.001")
    key = gw.key(account)
    body = {
        "model": "adv/mistral",
        "messages": [{"role": "user", "content": "again [sim:latency_ms=200] [sim:tokens=5000]"}],
        "max_completion_tokens": 1,
        "max_tokens": 200_000,
    }
    answers = asyncio.run(_forty(gw, key, body))
    assert {a.status_code for a in answers} <= {200, 402}
    served = [a for a in answers if a.status_code == 200]
    assert served and all(exact(a)["usage"]["completion_tokens"] <= 1 for a in served)
    charged = sum((exact(a)["usage"]["cost"] for a in served), Decimal(0))
    assert charged <= Decimal("0.001")
    assert Decimal(str(gw.balance(account)["total_usage"])) == charged
    assert_capped(gw, account, key, None)


@pytest.mark.parametrize(
    ("model", "field", "model_max"),
    [("adv/mistral", "max_tokens", 262_144), ("adv/openai", "max_completion_tokens", 1_000)],
)
def test_a_request_without_a_limit_sends_the_model_max(
    gw: Gateway, sim: Sim, model: str, field: str, model_max: int
) -> None:
    account = gw.account("5.00")
    key = gw.key(account)
    marker = f"nolimit-{secrets.token_hex(4)}"
    body = {"model": model, "messages": [{"role": "user", "content": f"hi {marker}"}]}
    assert chat(gw, key, body).status_code == 200
    [seen] = sent_upstream(sim, marker)
    limits = {
        k: v for k, v in seen.items() if k in ("max_tokens", "max_completion_tokens", "max_output_tokens")
    }
    assert limits == {field: model_max}
    assert needed(gw, body) == needed(gw, {**body, "max_tokens": model_max})  # held = sent
    assert_capped(gw, account, key, None)


def test_n_choices_each_get_the_limit_and_the_hold_covers_all_of_them(gw: Gateway, sim: Sim) -> None:
    body = {"model": "adv/openai", "messages": [{"role": "user", "content": "n"}], "max_tokens": 10}
    one, three = needed(gw, body), needed(gw, {**body, "n": 3})
    assert three - one == 2 * 10 * Decimal(2) / PER_MILLION  # two more choices of 10 tokens at $2/M


def test_an_800_kb_legacy_function_call_is_held_in_full(gw: Gateway, sim: Sim) -> None:
    account = gw.account("1.00")
    key = gw.key(account, limit="0.01")
    marker = f"legacy-{secrets.token_hex(4)}"
    arguments = json.dumps({"blob": "x" * 800_000})
    body = {
        "model": "adv/openai",
        "messages": [
            {"role": "user", "content": f"call it {marker}"},
            {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": arguments}},
            {"role": "function", "name": "f", "content": "done"},
        ],
        "max_tokens": 5,
    }
    refused = chat(gw, key, body)
    assert refused.status_code == 402, refused.text
    assert refused.json()["error"]["type"] == "key_limit_exceeded"
    assert sent_upstream(sim, marker) == []  # nothing reached the provider
    # 800 KB is past the 100k-token window: the hold is the whole window at $1/M, plus 5 out at $2/M.
    assert needed(gw, body) == (100_000 * 1 + 5 * 2) / PER_MILLION
    assert_capped(gw, account, key, Decimal("0.01"))


def test_a_huge_inline_file_is_held_as_the_whole_context_window(gw: Gateway, sim: Sim) -> None:
    pdf = "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.7 " + b"\0" * 3_000).decode()
    body = {
        "model": "adv/openai",
        "messages": [
            {"role": "user", "content": [{"type": "file", "file": {"file_data": pdf, "filename": "a.pdf"}}]}
        ],
        "max_tokens": 5,
    }
    # A few KB of compressed PDF can hold any number of text tokens: held as the full window.
    assert needed(gw, body) == (100_000 * 1 + 5 * 2) / PER_MILLION
    account = gw.account("1.00")
    key = gw.key(account, limit="0.05")
    refused = chat(gw, key, body)
    assert refused.status_code == 402 and refused.json()["error"]["type"] == "key_limit_exceeded"
    assert_capped(gw, account, key, Decimal("0.05"))


def test_images_are_held_by_the_providers_worst_case(gw: Gateway) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}
    text = {"model": "adv/openai", "messages": [{"role": "user", "content": "look"}], "max_tokens": 5}
    pictured = {
        **text,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "look"}, image, image]}],
    }
    # Two images, each at OpenAI's high-detail worst case (6,000 tokens), whatever `detail` says.
    assert needed(gw, pictured) - needed(gw, text) >= 2 * 6_000 / PER_MILLION


def test_a_bad_limit_field_is_a_clear_400(gw: Gateway) -> None:
    key = gw.key(gw.account("1.00"))
    body = {
        "model": "adv/openai",
        "messages": [{"role": "user", "content": "x"}],
        "max_output_tokens": "lots",
    }
    refused = chat(gw, key, body)
    assert refused.status_code == 400
    assert refused.json()["error"]["type"] == "invalid_request" and "max_output_tokens" in refused.text


def test_the_gateway_is_alive_and_the_books_balance(gw: Gateway) -> None:
    assert httpx.get(f"{gw.url}/healthz").status_code == 200
    assert gw.verify()["ok"] is True
