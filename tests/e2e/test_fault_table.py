"""The fault table of docs/failures.md, case by case: what the client sees, whether a fallback
served it, and the exact charge (none, or once)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Gateway, Sim, new_gateway
from faulty import FaultyUpstream

PRICES = {"input": "1", "output": "2"}


@pytest.fixture
def gw(tmp_path: Path, sim: Sim) -> Iterator[Gateway]:
    gateway = new_gateway(tmp_path, None)
    gateway.start()
    for name in ("primary", "backup"):
        made = gateway.admin(
            "POST", "/providers", {"name": name, "kind": "openai", "base_url": f"{sim.url}/v1"}
        )
        assert made.status_code == 201
        assert (
            gateway.admin("POST", f"/providers/{name}/keys", {"secret": f"sk-sim-{name}"}).status_code == 201
        )
    yield gateway
    assert gateway.stop() == 0


def model(gw: Gateway, model_id: str, providers: list[str]) -> None:
    deployments = [
        {"provider": p, "upstream_model": "gpt-4o-mini", "priority": i} for i, p in enumerate(providers)
    ]
    body = {
        "id": model_id,
        "context_length": 8000,
        "max_output": 100,
        "pricing": PRICES,
        "deployments": deployments,
    }
    assert gw.admin("POST", "/models", body).status_code == 201


def provider_at(gw: Gateway, name: str, url: str) -> None:
    assert (
        gw.admin("POST", "/providers", {"name": name, "kind": "openai", "base_url": url}).status_code == 201
    )
    assert gw.admin("POST", f"/providers/{name}/keys", {"secret": f"sk-{name}"}).status_code == 201


def ask(gw: Gateway, key: str, model_id: str, content: str, stream: bool = False) -> httpx.Response:
    body = {"model": model_id, "stream": stream, "messages": [{"role": "user", "content": content}]}
    return httpx.post(
        f"{gw.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def charged(gw: Gateway, account: str) -> Decimal:
    balance = gw.balance(account)
    assert balance["held"] == 0
    return Decimal(str(balance["total_usage"]))


def usage_cost(response: httpx.Response) -> Decimal:
    if response.headers["content-type"].startswith("text/event-stream"):
        last = next(f for f in reversed(response.text.splitlines()) if '"usage":{' in f)
        usage: dict[str, Any] = json.loads(last[6:], parse_float=Decimal)["usage"]
    else:
        usage = json.loads(response.text, parse_float=Decimal)["usage"]
    return Decimal(usage["cost"])


@pytest.mark.parametrize(
    ("status", "retry_after", "client_status"),
    [(500, None, 502), (502, None, 502), (503, None, 502), (429, None, 429), (429, 2, 429)],
)
def test_every_attempt_fails_with_a_status_nothing_charged(
    gw: Gateway, status: int, retry_after: int | None, client_status: int
) -> None:
    failing = FaultyUpstream(status=status, retry_after=retry_after).start()
    try:
        provider_at(gw, "failing", f"{failing.url}/v1")
        model(gw, "t/fail", ["failing"])
        account = gw.account("1.00")
        answer = ask(gw, gw.key(account), "t/fail", "hi")
        assert answer.status_code == client_status
        if client_status == 429:
            assert int(answer.headers["retry-after"]) == (retry_after or 1)
        assert failing.requests == 1
        assert charged(gw, account) == 0
    finally:
        failing.stop()


@pytest.mark.parametrize("mode", ["status", "reset", "refused"])
def test_a_failing_primary_falls_back_and_charges_once(gw: Gateway, mode: str) -> None:
    if mode == "refused":
        with socket.socket() as sock:  # a port nothing listens on
            sock.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        provider_at(gw, "bad", url)
    else:
        bad = FaultyUpstream(mode=mode, status=503).start()
        provider_at(gw, "bad", f"{bad.url}/v1")
    model(gw, "t/fb", ["bad", "backup"])
    account = gw.account("1.00")
    for stream in (False, True):
        answer = ask(gw, gw.key(account), "t/fb", "hello there", stream=stream)
        assert answer.status_code == 200, answer.text
    records = httpx.get(
        f"{gw.url}/v1/generations", headers={"Authorization": f"Bearer {gw.management_key(account)}"}
    ).json()["data"]
    assert [r["provider"] for r in records] == ["backup", "backup"]
    assert charged(gw, account) == sum(Decimal(str(r["total_cost"])) for r in records) > 0
    assert gw.verify()["ok"] is True


@pytest.mark.parametrize(
    ("directive", "stream", "outcome"),
    [
        ("[sim:malformed=1]", False, "fallback"),  # a 200 that is not JSON: the attempt failed
        ("[sim:tokens=20,cut_after=5]", True, "partial"),  # connection reset after the first byte
        ("[sim:tokens=20,error_after=5]", True, "partial"),  # error event inside a 200 stream
        # A broken event right after the first (role) chunk: the error is in the stream, and as no
        # output came, nothing is charged.
        ("[sim:tokens=20,malformed=1]", True, "free"),
    ],
)
def test_protocol_faults(gw: Gateway, directive: str, stream: bool, outcome: str) -> None:
    model(gw, "t/p", ["primary"])
    account = gw.account("1.00")
    answer = ask(gw, gw.key(account), "t/p", f"go {directive}", stream=stream)
    if outcome == "fallback":
        # Both tries hit the same directive, so no target serves: 502, nothing charged.
        assert answer.status_code == 502
        assert charged(gw, account) == 0
        return
    assert answer.status_code == 200
    frames = [line for line in answer.text.splitlines() if line.startswith("data: ")]
    # The usage chunk, then the error as the final chunk (no [DONE] after an error).
    assert '"finish_reason":"error"' in frames[-1] and '"usage":{' in frames[-2]
    assert not any(f == "data: [DONE]" for f in frames)
    if outcome == "free":
        assert charged(gw, account) == 0
        return
    assert charged(gw, account) == usage_cost(answer) > 0
    assert gw.verify()["ok"] is True
