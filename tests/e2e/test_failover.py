"""Routing around failing providers before the first byte: breakers, quarantine, retry-after,
provider preferences; always billed at the deployment that served, never twice."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import NEMOROUTER, Gateway, Sim, _wait_for_line, new_gateway, stop
from faulty import FaultyUpstream

PRICES = {"input": "1", "output": "2"}  # USD per 1M tokens, on every deployment unless overridden


def model(gw: Gateway, model_id: str, deployments: list[dict[str, Any]]) -> None:
    body = {
        "id": model_id,
        "context_length": 128000,
        "max_output": 1000,
        "pricing": PRICES,
        "deployments": deployments,
    }
    created = gw.admin("POST", "/models", body)
    assert created.status_code == 201, created.text


def provider(gw: Gateway, name: str, url: str, secret: str) -> None:
    assert (
        gw.admin("POST", "/providers", {"name": name, "kind": "openai", "base_url": url}).status_code == 201
    )
    assert gw.admin("POST", f"/providers/{name}/keys", {"secret": secret, "label": "k"}).status_code == 201


def chat(gw: Gateway, key: str, model_id: str, **extra: Any) -> httpx.Response:
    body = {"model": model_id, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 5, **extra}
    return httpx.post(f"{gw.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})


def served_by(gw: Gateway, key: str, response: httpx.Response) -> dict[str, Any]:
    record = httpx.get(
        f"{gw.url}/v1/generation",
        params={"id": response.headers["x-nemo-request-id"]},
        headers={"Authorization": f"Bearer {key}"},
    ).json()["data"]
    return record  # type: ignore[no-any-return]


@pytest.fixture
def gw(tmp_path: Path, sim: Sim) -> Iterator[Gateway]:
    gateway = new_gateway(tmp_path, None)
    gateway.start()
    provider(gateway, "good", f"{sim.url}/v1", "sk-sim-good-one")
    yield gateway
    assert gateway.stop() == 0


def test_1000_requests_succeed_while_one_of_two_deployments_always_fails(gw: Gateway) -> None:
    bad = FaultyUpstream(status=500).start()
    try:
        provider(gw, "bad", f"{bad.url}/v1", "sk-bad")
        model(
            gw,
            "t/m",
            [
                {"provider": "bad", "upstream_model": "gpt-4o-mini", "priority": 0},
                {"provider": "good", "upstream_model": "gpt-4o-mini", "priority": 1},
            ],
        )
        account = gw.account("10.00")
        key = gw.key(account)

        async def storm() -> list[int]:
            async with httpx.AsyncClient(base_url=gw.url, timeout=60) as client:
                semaphore = asyncio.Semaphore(25)

                async def one() -> int:
                    async with semaphore:
                        answer = await client.post(
                            "/v1/chat/completions",
                            json={
                                "model": "t/m",
                                "messages": [{"role": "user", "content": "x"}],
                                "max_tokens": 3,
                            },
                            headers={"Authorization": f"Bearer {key}"},
                        )
                        return answer.status_code

                return list(await asyncio.gather(*(one() for _ in range(1000))))

        assert asyncio.run(storm()) == [200] * 1000
        # The breaker opened after 5 failures; only requests already on their way saw the bad one.
        assert 5 <= bad.requests <= 30
        assert gw.verify()["ok"] is True
    finally:
        bad.stop()


def test_a_provider_key_the_provider_rejects_is_quarantined(gw: Gateway, tmp_path: Path) -> None:
    log = open(tmp_path / "strict-sim.log", "w")  # noqa: SIM115 - closed with the process
    strict = subprocess.Popen(
        [*NEMOROUTER, "sim", "--port", "0", "--key", "sk-sim-the-right-one"],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        line = _wait_for_line(strict, "http://", 20)
        strict_url = line[line.index("http://") :].strip()
        provider(gw, "strict", f"{strict_url}/v1", "sk-sim-a-wrong-one")
        model(
            gw,
            "t/q",
            [
                {"provider": "strict", "upstream_model": "gpt-4o-mini", "priority": 0},
                {"provider": "good", "upstream_model": "gpt-4o-mini", "priority": 1},
            ],
        )
        key = gw.key(gw.account("1.00"))
        first = chat(gw, key, "t/q")
        assert first.status_code == 200 and served_by(gw, key, first)["provider"] == "good"
        listed = gw.admin("GET", "/providers/strict").json()["data"]["keys"]
        assert listed[0]["quarantined_at"] is not None
        assert "sk-sim-a-wrong-one" not in json.dumps(listed)
        seen = len(httpx.get(f"{strict_url}/_sim/requests").json())
        assert chat(gw, key, "t/q").status_code == 200
        assert len(httpx.get(f"{strict_url}/_sim/requests").json()) == seen  # not tried again
        log_text = (gw.data_dir / "gateway.log").read_text()
        assert "quarantined" in log_text and "sk-sim-a-wrong-one" not in log_text
    finally:
        stop(strict)  # type: ignore[arg-type]
        log.close()


def test_retry_after_puts_a_key_in_cool_down(gw: Gateway) -> None:
    limited = FaultyUpstream(status=429, retry_after=60).start()
    try:
        provider(gw, "limited", f"{limited.url}/v1", "sk-limited")
        model(
            gw,
            "t/r",
            [
                {"provider": "limited", "upstream_model": "gpt-4o-mini", "priority": 0},
                {"provider": "good", "upstream_model": "gpt-4o-mini", "priority": 1},
            ],
        )
        key = gw.key(gw.account("1.00"))
        for _ in range(5):
            assert chat(gw, key, "t/r").status_code == 200
        assert limited.requests == 1
    finally:
        limited.stop()


def test_every_provider_rate_limited_is_429_with_retry_after(gw: Gateway) -> None:
    limited = FaultyUpstream(status=429, retry_after=7).start()
    try:
        provider(gw, "limited", f"{limited.url}/v1", "sk-limited")
        model(gw, "t/l", [{"provider": "limited", "upstream_model": "gpt-4o-mini"}])
        account = gw.account("1.00")
        answer = chat(gw, gw.key(account), "t/l")
        assert answer.status_code == 429 and answer.json()["error"]["type"] == "upstream_rate_limited"
        assert answer.headers["retry-after"] == "7"
        again = chat(gw, gw.key(account), "t/l")  # the key is cooling down: not even tried
        assert again.status_code == 429 and again.json()["error"]["type"] == "upstream_rate_limited"
        assert 1 <= int(again.headers["retry-after"]) <= 7
        assert limited.requests == 1
        assert gw.balance(account)["total_usage"] == 0
    finally:
        limited.stop()


def test_provider_preferences_choose_the_deployment_and_its_price(gw: Gateway, sim: Sim) -> None:
    provider(gw, "pricey", f"{sim.url}/v1", "sk-sim-pricey")
    model(
        gw,
        "t/p",
        [
            {"provider": "good", "upstream_model": "gpt-4o-mini", "priority": 0},
            {
                "provider": "pricey",
                "upstream_model": "gpt-4o-mini",
                "priority": 0,
                "pricing": {"input": "5", "output": "10"},
            },
        ],
    )
    key = gw.key(gw.account("1.00"))

    def used(**extra: Any) -> tuple[str, Decimal, dict[str, Any]]:
        answer = chat(gw, key, "t/p", **extra)
        assert answer.status_code == 200, answer.text
        usage = json.loads(answer.text, parse_float=Decimal)["usage"]
        return served_by(gw, key, answer)["provider"], usage["cost"], usage

    name, cost, usage = used(provider={"order": ["pricey"]})
    assert name == "pricey"
    assert cost == (usage["prompt_tokens"] * 5 + usage["completion_tokens"] * 10) / Decimal(10**6)
    name, cost, usage = used(provider={"only": ["good"]})
    assert name == "good"
    assert cost == (usage["prompt_tokens"] * 1 + usage["completion_tokens"] * 2) / Decimal(10**6)
    assert used(provider={"ignore": ["good"]})[0] == "pricey"
    assert all(used(provider={"sort": "price"})[0] == "good" for _ in range(5))
    assert used(provider={"max_price": {"prompt": 2}})[0] == "good"
    none_fits = chat(gw, key, "t/p", provider={"max_price": {"prompt": 0.5}})
    assert none_fits.status_code == 503 and none_fits.json()["error"]["type"] == "no_deployment_available"
    bad = chat(gw, key, "t/p", provider={"sort": "fastest"})
    assert bad.status_code == 400
    assert gw.verify()["ok"] is True


def test_fallback_models_bill_the_model_that_served(gw: Gateway) -> None:
    broken = FaultyUpstream(mode="reset").start()
    try:
        provider(gw, "broken", f"{broken.url}/v1", "sk-broken")
        model(gw, "t/first", [{"provider": "broken", "upstream_model": "gpt-4o-mini"}])
        model(gw, "t/second", [{"provider": "good", "upstream_model": "gpt-4o-mini"}])
        key = gw.key(gw.account("1.00"))
        answer = chat(gw, key, "t/first", models=["t/first", "t/second"])
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == "t/second"
        assert served_by(gw, key, answer)["model"] == "t/second"
        assert broken.requests >= 1
    finally:
        broken.stop()
