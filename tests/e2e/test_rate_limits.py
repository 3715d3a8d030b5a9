"""Rate limits per key and per account: 429 with Retry-After and the x-ratelimit headers."""

from __future__ import annotations

import httpx

from conftest import Gateway

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def _chat(gateway: Gateway, key: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"}
    )


def test_rpm_5_refuses_the_sixth_request_with_a_correct_retry_after(gateway: Gateway) -> None:
    account = gateway.account("1.00")
    key = gateway.key(account, rpm=5)
    assert [_chat(gateway, key).status_code for _ in range(5)] == [200] * 5
    refused = _chat(gateway, key)
    assert refused.status_code == 429
    body = refused.json()["error"]
    assert body["type"] == "rate_limited" and body["code"] == 429
    # GCRA: one request every 60/5 = 12 s; the burst of 5 took well under a second.
    assert 10 <= int(refused.headers["retry-after"]) <= 12
    assert refused.headers["x-ratelimit-limit-requests"] == "5"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    usage = gateway.balance(account)
    assert usage["held"] == 0
    assert gateway.verify()["ok"] is True


def test_max_concurrency_refuses_beyond_the_limit_while_requests_are_in_flight(gateway: Gateway) -> None:
    import asyncio

    key = gateway.key(gateway.account("1.00"), max_concurrency=2)
    slow = {**CHAT, "messages": [{"role": "user", "content": "slow [sim:latency_ms=400]"}]}

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
            answers = await asyncio.gather(
                *(
                    client.post("/v1/chat/completions", json=slow, headers={"Authorization": f"Bearer {key}"})
                    for _ in range(5)
                )
            )
        return sorted(a.status_code for a in answers)

    assert asyncio.run(burst()) == [200, 200, 429, 429, 429]
    assert _chat(gateway, key).status_code == 200  # the slots came back


def test_an_account_wide_limit_binds_all_its_keys_together(gateway: Gateway) -> None:
    account = gateway.account("1.00")
    first, second = gateway.key(account), gateway.key(account)
    changed = gateway.admin("PATCH", f"/accounts/{account}", {"rpm": 3})
    assert changed.status_code == 200 and changed.json()["data"]["rate_limit"] == {"rpm": 3, "tpm": None}
    statuses = [_chat(gateway, k).status_code for k in (first, second, first)]
    assert statuses == [200, 200, 200]
    refused = _chat(gateway, second)
    assert refused.status_code == 429 and "account" in refused.json()["error"]["message"]
    lifted = gateway.admin("PATCH", f"/accounts/{account}", {"rpm": None})
    assert lifted.status_code == 200
    assert _chat(gateway, second).status_code == 200


def test_tpm_counts_tokens(gateway: Gateway) -> None:
    key = gateway.key(gateway.account("1.00"), tpm=60)
    # The estimate at admission is a quarter of the prompt bytes plus max_tokens; a 50-token
    # request is admitted, the next ones find the minute's tokens spent.
    big = {**CHAT, "max_tokens": 50}
    first = httpx.post(
        f"{gateway.url}/v1/chat/completions", json=big, headers={"Authorization": f"Bearer {key}"}
    )
    assert first.status_code == 200
    second = httpx.post(
        f"{gateway.url}/v1/chat/completions", json=big, headers={"Authorization": f"Bearer {key}"}
    )
    assert second.status_code == 429
    assert second.headers["x-ratelimit-limit-tokens"] == "60"
