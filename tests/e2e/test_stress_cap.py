"""Hard-cap stress: 500 concurrent requests, half streaming, some clients leaving mid-stream, against a
key limit and an account balance that afford a fraction of them. Repeated five times each.

A fifth of the requests meet a misbehaving provider that reports ten times the output limit sent
(`usage_scale=10` on 40 generated tokens for `max_tokens: 40`): the hold is the ceiling, so every
request is charged at most its hold and the caps still hold to the pico-dollar."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp
import httpx
import pytest

from conftest import Gateway, wait_until

CONCURRENT = 500
MAX_TOKENS = 40
PROMPT = "Stress [sim:tokens=20,latency_ms=50,chunk_delay_ms=5]"
# Generates the whole limit (40) and reports 400 output tokens.
LYING = "Stress [sim:tokens=40,latency_ms=50,chunk_delay_ms=5,usage_scale=10]"
LIAR_EVERY = 5  # requests 0, 5, 10, ...: both streams and not (every other request streams)


def body(stream: bool, lying: bool = False) -> dict[str, Any]:
    return {
        "model": "openai/gpt-4o-mini",
        "messages": [{"role": "user", "content": LYING if lying else PROMPT}],
        "max_tokens": MAX_TOKENS,
        "stream": stream,
    }


async def one(
    session: aiohttp.ClientSession, url: str, key: str, stream: bool, lying: bool, leave_after: int | None
) -> tuple[str, str | None]:
    """(`ok`, `refused` (402) or `left` (the client closed mid-stream); the request id when served)."""
    headers = {"Authorization": f"Bearer {key}"}
    async with session.post(f"{url}/v1/chat/completions", json=body(stream, lying), headers=headers) as resp:
        if resp.status == 402:
            return "refused", None
        assert resp.status == 200, await resp.text()
        request_id = resp.headers["x-nemo-request-id"]
        if not stream:
            await resp.read()
            return "ok", request_id
        seen = 0
        async for line in resp.content:
            if line.startswith(b"data: "):
                seen += 1
                if leave_after is not None and seen >= leave_after:
                    resp.close()  # the client goes away mid-stream
                    return "left", request_id
        return "ok", request_id


@dataclass
class Storm:
    outcomes: list[str]
    served: dict[str, bool]  # request id -> whether its provider lied about usage
    lies_read: set[str]  # lying requests read to their end: the inflated report reached settle


async def storm(url: str, key: str, seed: int) -> Storm:
    rng = random.Random(seed)
    connector = aiohttp.TCPConnector(limit=CONCURRENT)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    ) as session:
        jobs, lying = [], []
        for i in range(CONCURRENT):
            stream = i % 2 == 0
            leave = rng.choice([None, None, 3, 8]) if stream else None
            lying.append(i % LIAR_EVERY == 0)
            jobs.append(one(session, url, key, stream, lying[-1], leave))
        results = list(await asyncio.gather(*jobs))
    served = {rid: liar for (_, rid), liar in zip(results, lying, strict=True) if rid is not None}
    read = {rid for (outcome, rid), liar in zip(results, lying, strict=True) if liar and outcome == "ok"}
    return Storm([outcome for outcome, _ in results], served, {rid for rid in read if rid is not None})


def exact(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


def settle_down(gateway: Gateway, account: str) -> dict[str, Any]:
    assert wait_until(lambda: gateway.balance(account)["held"] == 0, timeout=20), (
        "a hold outlived its request"
    )
    found: dict[str, Any] = exact(gateway.admin("GET", f"/accounts/{account}").text)["data"]
    return found


def holds_of(gateway: Gateway) -> dict[bool, Decimal]:
    """The hold of an honest and of a lying request (each: the larger of stream and not)."""
    return {lying: max(gateway.hold_of(body(s, lying)) for s in (False, True)) for lying in (False, True)}


def assert_each_charged_at_most_its_hold(
    gateway: Gateway, key: str, run: Storm, holds: dict[bool, Decimal], total_usage: Decimal
) -> None:
    """Every served request's charge is at most its hold; together they are the account's usage."""
    listed = httpx.get(
        f"{gateway.url}/v1/generations", params={"limit": 500}, headers={"Authorization": f"Bearer {key}"}
    )
    assert listed.status_code == 200, listed.text
    costs = {g["id"]: Decimal(str(g["total_cost"])) for g in exact(listed.text)["data"]}
    assert set(run.served) <= set(costs)
    for request_id, lying in run.served.items():
        assert 0 <= costs[request_id] <= holds[lying], (request_id, lying, costs[request_id], holds[lying])
    assert sum(costs.values(), Decimal(0)) == total_usage


def assert_overruns_are_the_lies(gateway: Gateway, run: Storm) -> None:
    """Verify is ok; every lie read to its end is an operator overrun, and no honest request is."""
    report = gateway.verify()
    assert report["ok"] is True, report
    overruns = {o["request_id"] for o in report["overrun_requests"]}
    assert run.lies_read <= overruns
    assert not {rid for rid, lying in run.served.items() if not lying} & overruns


@pytest.mark.parametrize("round_", range(5))
def test_key_limit_under_500_mixed_requests(gateway: Gateway, round_: int) -> None:
    holds = holds_of(gateway)
    cap = max(holds.values()) * 60  # room for 60 requests, whichever they are
    account = gateway.account("100.00")
    key = gateway.key(account, limit=str(cap))
    run = asyncio.run(storm(gateway.url, key, seed=round_))
    outcomes = run.outcomes
    served = len(outcomes) - outcomes.count("refused")
    assert outcomes.count("refused") > 0 and served >= 60 and outcomes.count("left") > 0
    assert run.lies_read
    balance = settle_down(gateway, account)
    assert balance["total_usage"] <= cap
    assert balance["balance"] == Decimal("100") - balance["total_usage"]
    assert_each_charged_at_most_its_hold(gateway, key, run, holds, balance["total_usage"])
    assert_overruns_are_the_lies(gateway, run)


@pytest.mark.parametrize("round_", range(5))
def test_account_balance_under_500_mixed_requests(gateway: Gateway, round_: int) -> None:
    holds = holds_of(gateway)
    credits = max(holds.values()) * 60
    account = gateway.account(str(credits))
    key = gateway.key(account)
    run = asyncio.run(storm(gateway.url, key, seed=100 + round_))
    outcomes = run.outcomes
    served = len(outcomes) - outcomes.count("refused")
    assert outcomes.count("refused") > 0 and served >= 60 and outcomes.count("left") > 0
    assert run.lies_read
    balance = settle_down(gateway, account)
    assert balance["total_usage"] <= credits
    assert balance["balance"] >= 0
    assert balance["balance"] == credits - balance["total_usage"]
    assert_each_charged_at_most_its_hold(gateway, key, run, holds, balance["total_usage"])
    assert_overruns_are_the_lies(gateway, run)
