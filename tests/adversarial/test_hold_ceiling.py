"""The hold is the ceiling (issue 20, rule 1 and rule 6), through the real gateway and simulator.

A provider that reports more than a request allowed never makes the customer pay past the hold:
the excess is an operator overrun, visible in the ledger's verification, reconciliation, metrics
and the request's own record; and `ledger verify` judges every account and key on its own.
"""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest

from conftest import Gateway

MODEL = "openai/gpt-4o"  # $2.50 in, $10 out per 1M: 10M output tokens would be $100
LIMIT = Decimal("0.05")


def exact(response: httpx.Response) -> Any:
    return json.loads(response.text, parse_float=Decimal)


def body(content: str, stream: bool = False) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 10,
        "stream": stream,
        **({"stream_options": {"include_usage": True}} if stream else {}),
    }


def send(gateway: Gateway, key: str, request: dict[str, Any]) -> tuple[Decimal, str]:
    """The charge and request id of one request (stream or not)."""
    headers = {"Authorization": f"Bearer {key}"}
    if not request.get("stream"):
        answer = httpx.post(f"{gateway.url}/v1/chat/completions", json=request, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        cost: Decimal = exact(answer)["usage"]["cost"]
        assert Decimal(answer.headers["x-nemo-cost"]) == cost
        return cost, answer.headers["x-nemo-request-id"]
    with httpx.stream(
        "POST", f"{gateway.url}/v1/chat/completions", json=request, headers=headers, timeout=30
    ) as answer:
        assert answer.status_code == 200
        frames = [line[6:] for line in answer.iter_lines() if line.startswith("data: ")]
        request_id = answer.headers["x-nemo-request-id"]
    assert frames[-1] == "[DONE]"
    last = json.loads(frames[-2], parse_float=Decimal)
    return last["usage"]["cost"], request_id


def key_data(gateway: Gateway, key: str) -> dict[str, Any]:
    found: dict[str, Any] = exact(
        httpx.get(f"{gateway.url}/v1/key", headers={"Authorization": f"Bearer {key}"})
    )["data"]
    return found


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_ten_million_tokens_for_max_tokens_10_is_charged_within_the_hold(
    gateway: Gateway, stream: bool
) -> None:
    """The reproduction: a $0.05 key spent $100.00 and its account went to -$99.90."""
    request = body("Lie about it [sim:report_output=10000000]", stream)
    hold = gateway.hold_of(request)
    account = gateway.account("0.10")
    key = gateway.key(account, limit=str(LIMIT))
    cost, request_id = send(gateway, key, request)

    assert 0 < cost <= hold
    usage = key_data(gateway, key)["usage"]
    assert usage == cost and usage <= LIMIT
    balance = gateway.balance(account)
    assert Decimal(str(balance["balance"])) == Decimal("0.10") - cost >= 0
    assert balance["held"] == 0
    # the record shows what was billed: at most the 10 output tokens that could have been made
    record = exact(
        httpx.get(
            f"{gateway.url}/v1/generation",
            params={"id": request_id},
            headers={"Authorization": f"Bearer {key}"},
        )
    )["data"]
    assert record["total_cost"] == cost and record["tokens"]["completion"] <= 10
    # the operator's overrun: listed by request, account and provider key; the books still balance
    report = gateway.verify()
    assert report["ok"] is True, report
    [listed] = [o for o in report["overrun_requests"] if o["request_id"] == request_id]
    assert listed["account_id"] == account and listed["provider"] == "sim" and listed["provider_key_id"]
    assert Decimal(str(listed["charged"])) == cost
    reported = Decimal(str(listed["reported_cost"]))
    assert reported >= Decimal(100)  # 10M output tokens at $10 per 1M
    assert Decimal(str(listed["overrun"])) == reported - cost
    # reconciliation counts it against the provider key that served
    month = time.strftime("%Y-%m", time.gmtime())
    recon = exact(gateway.admin("GET", f"/reconciliation?provider=sim&month={month}"))
    [per_key] = [o for o in recon["overruns"] if o["provider_key_id"] == listed["provider_key_id"]]
    assert per_key["requests"] >= 1 and per_key["overrun"] >= Decimal(str(listed["overrun"]))
    # and /metrics counts it
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert any(
        line.startswith("nemo_operator_overruns_total{") and 'provider="sim"' in line
        for line in metrics.splitlines()
    ), metrics


def test_forty_concurrent_lies_cannot_take_a_balance_below_zero(gateway: Gateway) -> None:
    """40 copies at once, each reporting 10x the output limit sent: the account never goes negative."""
    request = body("Ten times over [sim:usage_scale=10,tokens=10]")
    hold = gateway.hold_of(request)
    account = gateway.account("0.01")
    key = gateway.key(account)

    async def storm() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        "/v1/chat/completions", json=request, headers={"Authorization": f"Bearer {key}"}
                    )
                    for _ in range(40)
                )
            )

    answers = asyncio.run(storm())
    assert {a.status_code for a in answers} <= {200, 402}
    charged = sum((exact(a)["usage"]["cost"] for a in answers if a.status_code == 200), Decimal(0))
    assert all(exact(a)["usage"]["cost"] <= hold for a in answers if a.status_code == 200)
    balance = gateway.balance(account)
    assert Decimal(str(balance["total_usage"])) == charged <= Decimal("0.01")
    assert Decimal(str(balance["balance"])) >= 0 and balance["held"] == 0
    assert gateway.verify()["ok"] is True


@pytest.mark.parametrize("spoil", ["negative", "float", "string"])
def test_an_unreadable_usage_report_is_billed_an_estimate_within_the_hold(
    gateway: Gateway, spoil: str
) -> None:
    request = body(f"Garbled usage [sim:bad_usage={spoil}]")
    hold = gateway.hold_of(request)
    account = gateway.account("1.00")
    cost, _ = send(gateway, gateway.key(account), request)
    assert 0 < cost <= hold  # neither believed nor read as zero
    assert gateway.verify()["ok"] is True


def test_an_absurd_report_leaves_every_other_tenant_served(gateway: Gateway) -> None:
    """A report whose cost exceeds any 64-bit amount once wedged the SQLite store for everyone."""
    absurd = body(
        "Absurd [sim:report_output=1000000000000000000000000000000,report_prompt=1000000000000000000000000000000]"
    )
    victim = gateway.key(gateway.account("1.00"))
    other = gateway.key(gateway.account("1.00"))
    cost, _ = send(gateway, victim, absurd)
    assert cost <= gateway.hold_of(absurd)
    started = time.monotonic()
    answer = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "still there?"}]},
        headers={"Authorization": f"Bearer {other}"},
        timeout=5,
    )
    assert answer.status_code == 200 and time.monotonic() - started < 1
    assert httpx.get(f"{gateway.url}/readyz").status_code == 200
    assert gateway.verify()["ok"] is True


def test_a_limit_lowered_below_its_spend_is_reported_as_that(gateway: Gateway) -> None:
    account = gateway.account("5.00")
    key = gateway.key(account, limit="1.00")
    cost, _ = send(gateway, key, body("spend a little"))
    key_id = key_data(gateway, key)["id"]
    lowered = gateway.admin("PATCH", f"/keys/{key_id}", {"limit": "0.000000000001"})
    assert lowered.status_code == 200, lowered.text
    report = gateway.verify()
    assert report["ok"] is True and not any(key_id in p for p in report["problems"]), report
    assert any(n.startswith(f"key {key_id}:") and "lowered" in n for n in report["notes"]), report["notes"]
    refused = httpx.post(
        f"{gateway.url}/v1/chat/completions", json=body("more"), headers={"Authorization": f"Bearer {key}"}
    )
    assert refused.status_code == 402 and refused.json()["error"]["type"] == "key_limit_exceeded"
    assert key_data(gateway, key)["usage"] == cost
