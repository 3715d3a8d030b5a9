"""Hard-cap stress: 500 concurrent requests, half streaming, some clients leaving mid-stream, against a
key limit and an account balance that afford a fraction of them. Repeated five times each."""

from __future__ import annotations

import asyncio
import json
import random
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from conftest import Gateway, wait_until

CONCURRENT = 500
PROMPT = "Stress [sim:tokens=20,latency_ms=50,chunk_delay_ms=5]"


def body(stream: bool) -> dict[str, Any]:
    return {
        "model": "openai/gpt-4o-mini",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 40,
        "stream": stream,
    }


async def one(
    session: aiohttp.ClientSession, url: str, key: str, stream: bool, leave_after: int | None
) -> str:
    """Returns `ok`, `refused` (402) or `left` (the client closed mid-stream)."""
    headers = {"Authorization": f"Bearer {key}"}
    async with session.post(f"{url}/v1/chat/completions", json=body(stream), headers=headers) as resp:
        if resp.status == 402:
            return "refused"
        assert resp.status == 200, await resp.text()
        if not stream:
            await resp.read()
            return "ok"
        seen = 0
        async for line in resp.content:
            if line.startswith(b"data: "):
                seen += 1
                if leave_after is not None and seen >= leave_after:
                    resp.close()  # the client goes away mid-stream
                    return "left"
        return "ok"


async def storm(url: str, key: str, seed: int) -> list[str]:
    rng = random.Random(seed)
    connector = aiohttp.TCPConnector(limit=CONCURRENT)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    ) as session:
        jobs = []
        for i in range(CONCURRENT):
            stream = i % 2 == 0
            leave = rng.choice([None, None, 3, 8]) if stream else None
            jobs.append(one(session, url, key, stream, leave))
        return list(await asyncio.gather(*jobs))


def hold_of(gateway: Gateway) -> Decimal:
    probe = gateway.key(gateway.account("1.00"), limit="0.000000000001")
    import httpx

    refused = httpx.post(
        f"{gateway.url}/v1/chat/completions", json=body(False), headers={"Authorization": f"Bearer {probe}"}
    )
    assert refused.status_code == 402
    needed: Decimal = json.loads(refused.text, parse_float=Decimal)["error"]["needed"]
    return needed


def settle_down(gateway: Gateway, account: str) -> dict[str, Any]:
    assert wait_until(lambda: gateway.balance(account)["held"] == 0, timeout=20), (
        "a hold outlived its request"
    )
    return gateway.balance(account)


@pytest.mark.parametrize("round_", range(5))
def test_key_limit_under_500_mixed_requests(gateway: Gateway, round_: int) -> None:
    cap = hold_of(gateway) * 60
    account = gateway.account("100.00")
    key = gateway.key(account, limit=str(cap))
    outcomes = asyncio.run(storm(gateway.url, key, seed=round_))
    served = len(outcomes) - outcomes.count("refused")
    assert outcomes.count("refused") > 0 and served >= 60 and outcomes.count("left") > 0
    balance = settle_down(gateway, account)
    assert Decimal(str(balance["total_usage"])) <= cap
    report = gateway.verify()
    assert report["ok"] is True and report["overruns"] == 0, report


@pytest.mark.parametrize("round_", range(5))
def test_account_balance_under_500_mixed_requests(gateway: Gateway, round_: int) -> None:
    credits = hold_of(gateway) * 60
    account = gateway.account(str(credits))
    key = gateway.key(account)
    outcomes = asyncio.run(storm(gateway.url, key, seed=100 + round_))
    served = len(outcomes) - outcomes.count("refused")
    assert outcomes.count("refused") > 0 and served >= 60 and outcomes.count("left") > 0
    balance = settle_down(gateway, account)
    assert Decimal(str(balance["total_usage"])) <= credits
    assert Decimal(str(balance["balance"])) >= 0
    report = gateway.verify()
    assert report["ok"] is True and report["overruns"] == 0, report
