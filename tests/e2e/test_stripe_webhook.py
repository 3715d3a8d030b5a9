"""Stripe top-ups: a signed, paid Checkout Session credits its account exactly once per event;
a bad signature, another currency or an unknown account changes nothing.

Events are signed with the stripe library's own helper (`WebhookSignature.generate_signature_
header`, Stripe's documented `t=...,v1=HMAC-SHA256(secret, f"{t}.{body}")`), and each header is
first checked with `stripe.Webhook.construct_event` in the test itself.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from conftest import Gateway, new_gateway

SECRET = "whsec_" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = new_gateway(tmp_path_factory.mktemp("stripe"), None)
    gateway.env["NEMO_STRIPE_WEBHOOK_SECRET"] = SECRET
    gateway.start()
    yield gateway
    assert gateway.stop() == 0


def checkout_event(account_id: str, cents: int, **session: Any) -> tuple[str, bytes]:
    event_id = "evt_" + secrets.token_hex(12)
    body = {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "type": session.pop("type", "checkout.session.completed"),
        "livemode": False,
        "data": {
            "object": {
                "id": "cs_test_" + secrets.token_hex(12),
                "object": "checkout.session",
                "amount_total": cents,
                "currency": "usd",
                "mode": "payment",
                "payment_status": "paid",
                "status": "complete",
                "metadata": {"nemo_account_id": account_id},
                **session,
            }
        },
    }
    return event_id, json.dumps(body).encode()


def signed(payload: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    header = stripe.WebhookSignature.generate_signature_header(payload.decode(), secret, timestamp)
    if secret == SECRET and timestamp is None:
        stripe.Webhook.construct_event(payload, header, SECRET)  # the header is what Stripe would send
    return header


def deliver(gw: Gateway, payload: bytes, header: str | None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if header is not None:
        headers["stripe-signature"] = header
    return httpx.post(f"{gw.url}/webhooks/stripe", content=payload, headers=headers, timeout=30)


def credited(gw: Gateway, account_id: str) -> Decimal:
    return Decimal(str(gw.balance(account_id)["total_credits"]))


def test_a_paid_session_credits_once_though_delivered_three_times(gw: Gateway) -> None:
    account = gw.account("0")
    _, payload = checkout_event(account, 1234)
    header = signed(payload)
    answers = [deliver(gw, payload, header) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json()["credited"] for a in answers] == [True, False, False]
    assert len({a.json()["credit_id"] for a in answers}) == 1
    assert credited(gw, account) == Decimal("12.34")
    assert gw.verify()["ok"] is True


def test_concurrent_redeliveries_credit_once(gw: Gateway) -> None:
    account = gw.account("0")
    _, payload = checkout_event(account, 500)
    header = signed(payload)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: deliver(gw, payload, header), range(8)))
    assert {a.status_code for a in answers} == {200}
    assert sum(a.json()["credited"] for a in answers) == 1
    assert credited(gw, account) == Decimal("5")


def test_cents_are_credited_exactly(gw: Gateway) -> None:
    account = gw.account("0")
    for cents in (1, 99, 100_001):
        _, payload = checkout_event(account, cents)
        assert deliver(gw, payload, signed(payload)).status_code == 200
    assert str(gw.balance(account)["total_credits"]).rstrip("0").rstrip(".") == "1001.01"


@pytest.mark.parametrize(
    "attack",
    ["tampered body", "wrong secret", "no header", "stale timestamp", "garbage header"],
)
def test_a_bad_signature_is_400_and_credits_nothing(gw: Gateway, attack: str) -> None:
    account = gw.account("0")
    _, payload = checkout_event(account, 10_000)
    header: str | None = signed(payload)
    if attack == "tampered body":
        payload = payload.replace(b'"amount_total": 10000', b'"amount_total": 99999')
        assert b"99999" in payload
    elif attack == "wrong secret":
        header = signed(payload, "whsec_" + secrets.token_hex(16))
    elif attack == "no header":
        header = None
    elif attack == "stale timestamp":
        header = signed(payload, SECRET, int(time.time()) - 3600)
    else:
        header = "t=abc,v1=nothing"
    answer = deliver(gw, payload, header)
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request"
    assert credited(gw, account) == 0


@pytest.mark.parametrize(
    "session",
    [
        {"type": "payment_intent.succeeded"},
        {"type": "checkout.session.expired"},
        {"payment_status": "unpaid"},
        {"amount_total": 0},
    ],
    ids=["other event", "expired session", "unpaid", "zero"],
)
def test_events_that_pay_nothing_are_acknowledged_and_ignored(gw: Gateway, session: dict[str, Any]) -> None:
    account = gw.account("0")
    _, payload = checkout_event(account, session.pop("amount_total", 700), **session)
    answer = deliver(gw, payload, signed(payload))
    assert answer.status_code == 200 and answer.json()["credited"] is False
    assert credited(gw, account) == 0


@pytest.mark.parametrize(
    "session",
    [{"currency": "eur"}, {"metadata": {}}, {"metadata": {"nemo_account_id": "acct_nobody"}}],
    ids=["not usd", "no account", "unknown account"],
)
def test_a_paid_session_that_cannot_be_credited_is_400(gw: Gateway, session: dict[str, Any]) -> None:
    account = gw.account("0")
    _, payload = checkout_event(account, 700, **session)
    answer = deliver(gw, payload, signed(payload))
    assert answer.status_code == 400 and answer.json()["error"]["type"] == "invalid_request"
    assert credited(gw, account) == 0


def test_without_a_secret_the_endpoint_is_503(tmp_path: Path) -> None:
    gateway = new_gateway(tmp_path, None)
    gateway.env.pop("NEMO_STRIPE_WEBHOOK_SECRET", None)
    gateway.start()
    try:
        account = gateway.account("0")
        _, payload = checkout_event(account, 100)
        answer = deliver(gateway, payload, signed(payload))
        assert answer.status_code == 503 and answer.json()["error"]["type"] == "not_configured"
        assert credited(gateway, account) == 0
    finally:
        assert gateway.stop() == 0
