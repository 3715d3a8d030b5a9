"""/metrics after traffic: request, token and cost series match the ledger; no key or secret in any label."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from conftest import SIM_PROVIDER_SECRET, Gateway, Sim, new_gateway


@pytest.fixture
def gw(tmp_path: Path, sim: Sim) -> Iterator[Gateway]:
    gateway = new_gateway(tmp_path, sim)
    gateway.env["NEMO_METRICS_TOKEN"] = "scrape-me"
    gateway.start()
    yield gateway
    assert gateway.stop() == 0


def samples(text: str, name: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(\{{[^}}]*\}})? (\S+)", line)
        if match:
            found[match.group(1) or ""] = float(match.group(2))
    return found


def test_metrics_match_the_ledger(gw: Gateway) -> None:
    account = gw.account("1.00")
    key = gw.key(account)
    client = gw.openai(key)
    for _ in range(3):
        client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    list(
        client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    client.embeddings.create(model="openai/text-embedding-3-small", input="some words")
    refused = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json={"model": "nope/nope", "messages": [{"role": "user", "content": "x"}]},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert refused.status_code == 404

    assert httpx.get(f"{gw.url}/metrics").status_code == 401
    text = httpx.get(f"{gw.url}/metrics", headers={"Authorization": "Bearer scrape-me"}).text
    cost = sum(samples(text, "nemo_cost_picousd_total").values())
    spent = Decimal(str(gw.balance(account)["total_usage"]))
    assert Decimal(int(cost)) / 10**12 == spent
    generations = httpx.get(
        f"{gw.url}/v1/generations", headers={"Authorization": f"Bearer {gw.management_key(account)}"}
    ).json()["data"]
    prompt = sum(g["tokens"]["prompt"] for g in generations)
    completion = sum(g["tokens"]["completion"] for g in generations)
    tokens = samples(text, "nemo_tokens_total")
    assert sum(v for k, v in tokens.items() if 'kind="prompt"' in k) == prompt
    assert sum(v for k, v in tokens.items() if 'kind="completion"' in k) == completion
    http = samples(text, "nemo_http_requests_total")
    assert http['{route="/v1/chat/completions",status="200"}'] == 4
    assert http['{route="/v1/embeddings",status="200"}'] == 1
    assert http['{route="/v1/chat/completions",status="404"}'] == 1
    assert samples(text, "nemo_open_holds")[""] == 0
    assert key not in text and "key_" not in text and SIM_PROVIDER_SECRET not in text and "sk-" not in text
