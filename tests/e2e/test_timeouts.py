"""Timeouts per provider and keep-alive comments while a stream waits for its first token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from conftest import Gateway, Sim, new_gateway


@pytest.fixture
def gw(tmp_path: Path, sim: Sim) -> Iterator[Gateway]:
    gateway = new_gateway(tmp_path, None)
    gateway.env["NEMO_SSE_KEEPALIVE"] = "0.2"
    gateway.start()
    config = {"timeouts": {"first_byte": 0.5, "idle": 0.5}}
    made = gateway.admin(
        "POST", "/providers", {"name": "sim", "kind": "openai", "base_url": f"{sim.url}/v1", "config": config}
    )
    assert made.status_code == 201, made.text
    assert gateway.admin("POST", "/providers/sim/keys", {"secret": "sk-sim-t"}).status_code == 201
    body = {
        "id": "t/m",
        "context_length": 8000,
        "max_output": 100,
        "pricing": {"input": "1", "output": "2"},
        "deployments": [{"provider": "sim", "upstream_model": "gpt-4o-mini"}],
    }
    assert gateway.admin("POST", "/models", body).status_code == 201
    yield gateway
    assert gateway.stop() == 0


def post(gw: Gateway, key: str, content: str, stream: bool = False) -> httpx.Response:
    body = {"model": "t/m", "stream": stream, "messages": [{"role": "user", "content": content}]}
    return httpx.post(
        f"{gw.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def test_a_slow_first_byte_past_the_providers_timeout_is_504_and_free(gw: Gateway) -> None:
    account = gw.account("1.00")
    answer = post(gw, gw.key(account), "slow [sim:latency_ms=1500]")
    assert answer.status_code == 504 and answer.json()["error"]["type"] == "upstream_timeout"
    balance = gw.balance(account)
    assert balance["total_usage"] == 0 and balance["held"] == 0


def test_a_stalled_stream_ends_with_an_error_and_charges_what_came(gw: Gateway) -> None:
    account = gw.account("1.00")
    answer = post(gw, gw.key(account), "stall [sim:tokens=5,chunk_delay_ms=300]", stream=True)
    assert answer.status_code == 200
    # 300 ms between tokens is within the 0.5 s idle limit: the stream completes.
    assert answer.text.rstrip().endswith("data: [DONE]") and '"error"' not in answer.text
    stalled = post(gw, gw.key(account), "stall [sim:tokens=5,chunk_delay_ms=900]", stream=True)
    frames = [json.loads(f[6:]) for f in stalled.text.splitlines() if f.startswith("data: {")]
    assert any("error" in f for f in frames)
    assert gw.verify()["ok"] is True


def test_keepalive_comments_while_waiting_for_the_first_token(gw: Gateway) -> None:
    account = gw.account("1.00")
    answer = post(gw, gw.key(account), "think first [sim:tokens=2,chunk_delay_ms=400]", stream=True)
    assert answer.status_code == 200
    lines = answer.text.splitlines()
    first_content = next(
        i for i, line in enumerate(lines) if '"content":"' in line and '"content":""' not in line
    )
    assert ": keepalive" in lines[:first_content]
    usage = json.loads(next(f for f in reversed(lines) if '"usage":{' in f)[6:], parse_float=Decimal)["usage"]
    assert usage["completion_tokens"] == 2
    assert usage["cost"] == (usage["prompt_tokens"] * 1 + 2 * 2) / Decimal(10**6)
