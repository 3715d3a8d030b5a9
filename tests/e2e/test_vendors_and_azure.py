"""A vendor row and Azure OpenAI, end to end through the gateway to the simulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from conftest import Gateway, Sim, new_gateway


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Gateway]:
    gateway = new_gateway(tmp_path, None)
    gateway.start()
    yield gateway
    assert gateway.stop() == 0


def deploy(gw: Gateway, provider: str, model_id: str, upstream_model: str) -> None:
    body = {
        "id": model_id,
        "context_length": 64000,
        "max_output": 1000,
        "pricing": {"input": "0.3", "output": "1.2"},
        "deployments": [{"provider": provider, "upstream_model": upstream_model}],
    }
    assert gw.admin("POST", "/models", body).status_code == 201


def test_a_vendor_is_a_row_plus_a_base_url(gw: Gateway, sim: Sim) -> None:
    made = gw.admin(
        "POST",
        "/providers",
        {"name": "mistral", "kind": "openai-compatible", "vendor": "mistral", "base_url": f"{sim.url}/v1"},
    )
    assert made.status_code == 201, made.text
    assert gw.admin("POST", "/providers/mistral/keys", {"secret": "sk-sim-mistral"}).status_code == 201
    deploy(gw, "mistral", "mistral/large", "mistral-large-latest")
    key = gw.key(gw.account("1.00"))
    sim.clear()
    answer = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json={
            "model": "mistral/large",
            "messages": [{"role": "user", "content": "bonjour"}],
            "seed": 3,
            "max_completion_tokens": 4,
        },
        headers={"Authorization": f"Bearer {key}"},
    )
    assert answer.status_code == 200, answer.text
    usage = json.loads(answer.text, parse_float=Decimal)["usage"]
    assert usage["completion_tokens"] == 4
    assert usage["cost"] == (usage["prompt_tokens"] * Decimal("0.3") + 4 * Decimal("1.2")) / 10**6
    sent = sim.requests(1)[0]["body"]
    assert sent["random_seed"] == 3 and sent["max_tokens"] == 4 and "seed" not in sent


def test_an_unknown_vendor_is_refused(gw: Gateway) -> None:
    made = gw.admin("POST", "/providers", {"name": "x", "kind": "openai-compatible", "vendor": "nope"})
    assert made.status_code == 400 and made.json()["error"]["type"] == "invalid_request"


def test_azure_openai_uses_deployment_urls_and_the_api_key_header(gw: Gateway, sim: Sim) -> None:
    made = gw.admin(
        "POST",
        "/providers",
        {
            "name": "azure",
            "kind": "azure-openai",
            "base_url": sim.url,
            "config": {"api_version": "2024-10-21"},
        },
    )
    assert made.status_code == 201, made.text
    assert gw.admin("POST", "/providers/azure/keys", {"secret": "sk-sim-azure-key"}).status_code == 201
    deploy(gw, "azure", "azure/gpt-4o-mini", "my-gpt4o-mini-deployment")
    key = gw.key(gw.account("1.00"))
    client = gw.openai(key)
    sim.clear()
    reply = client.chat.completions.create(
        model="azure/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert reply.choices[0].finish_reason == "length"
    chunks = list(
        client.chat.completions.create(
            model="azure/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=3, stream=True
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    for seen in sim.requests(2):
        assert seen["path"] == "/openai/deployments/my-gpt4o-mini-deployment/chat/completions"
        assert seen["query"] == "api-version=2024-10-21"
        assert seen["headers"]["api-key"] == "sk-sim-azure-key"
        assert seen["authorization"] is None
    assert gw.verify()["ok"] is True
