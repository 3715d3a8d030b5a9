"""The hard cap: no amount of concurrency spends past a key's limit or an account's balance."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import httpx
import pytest

from conftest import Gateway

BODY = {
    "model": "openai/gpt-4o-mini",
    # The simulator sleeps 300 ms, so all 200 requests are in flight together.
    "messages": [{"role": "user", "content": "Cap me [sim:latency_ms=300]"}],
    "max_tokens": 50,
}


async def fire(gateway: Gateway, key: str, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=gateway.url, limits=limits, timeout=60) as client:
        return await asyncio.gather(
            *(
                client.post("/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {key}"})
                for _ in range(count)
            )
        )


def money(response: httpx.Response, *path: str) -> Decimal:
    value: Any = json.loads(response.text, parse_float=Decimal)
    for part in path:
        value = value[part]
    return Decimal(value)


def check_outcome(
    gateway: Gateway, account: str, responses: list[httpx.Response], cap: Decimal, kind: str
) -> None:
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert len(ok) >= 10, f"only {len(ok)} requests were served"
    assert {r.status_code for r in refused} == {402}
    assert {r.json()["error"]["type"] for r in refused} == {kind}
    charged = sum((money(r, "usage", "cost") for r in ok), Decimal(0))
    balance = gateway.balance(account)
    assert Decimal(str(balance["total_usage"])) == charged
    assert charged <= cap
    assert balance["held"] == 0
    report = gateway.verify()  # the session's gateway: other tests' overruns may be listed, not ours
    assert report["ok"] is True and not [o for o in report["overrun_requests"] if o["account_id"] == account]


@pytest.mark.parametrize("round_", range(2))
def test_key_limit_holds_under_200_concurrent_requests(gateway: Gateway, round_: int) -> None:
    hold = gateway.hold_of(BODY)
    limit = hold * 10
    account = gateway.account("100.00")
    key = gateway.key(account, limit=str(limit))
    responses = asyncio.run(fire(gateway, key, 200))
    check_outcome(gateway, account, responses, limit, "key_limit_exceeded")
    usage = httpx.get(f"{gateway.url}/v1/key", headers={"Authorization": f"Bearer {key}"})
    assert money(usage, "data", "usage") <= limit


@pytest.mark.parametrize("round_", range(2))
def test_account_balance_holds_under_200_concurrent_requests(gateway: Gateway, round_: int) -> None:
    hold = gateway.hold_of(BODY)
    credits = hold * 10
    account = gateway.account(str(credits))
    key = gateway.key(account)
    responses = asyncio.run(fire(gateway, key, 200))
    check_outcome(gateway, account, responses, credits, "insufficient_credits")
    assert Decimal(str(gateway.balance(account)["balance"])) >= 0


def test_a_revoked_key_fails_on_its_very_next_request(gateway: Gateway) -> None:
    account = gateway.account("1.00")
    key = gateway.key(account)
    client = gateway.openai(key)
    client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    key_id = httpx.get(f"{gateway.url}/v1/key", headers={"Authorization": f"Bearer {key}"}).json()["data"][
        "id"
    ]
    assert gateway.admin("DELETE", f"/keys/{key_id}").status_code == 200
    after = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert after.status_code == 401
    assert after.json()["error"]["type"] == "key_revoked"
