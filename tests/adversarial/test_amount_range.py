"""Issue 20, item 7: every way money enters refuses an amount the ledger cannot hold, and no total
overflows. Before: credits past $9,223,372.04 in total silently turned a SQLite total into a
float, after which `GET /admin/v1/accounts` and `ledger verify` answered 500 for everyone.

Driven through the real gateway (SQLite and PostgreSQL), the real CLI and the simulator: an
amount past MAX_AMOUNT (2**63 - 1 pico-USD, $9,223,372.036854775807), alone or in an account's
total, is a 400 `invalid_request` naming the maximum (the CLI: one `error:` line, exit 1), and
afterwards the admin list and `ledger verify` still answer 200, ok.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from conftest import SIM_PROVIDER_SECRET, Gateway, Sim, new_gateway, postgres_database
from secret_scan import SESSION as SECRET_SCAN

MAX = "9223372.036854775807"  # MAX_AMOUNT in USD
PAST_MAX = "9223372.036854775808"
STRIPE_SECRET = "whsec_" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def sqlite_gateway(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gw = new_gateway(tmp_path_factory.mktemp("amounts"), sim)
    gw.env["NEMO_STRIPE_WEBHOOK_SECRET"] = STRIPE_SECRET
    gw.start()
    yield gw
    assert gw.stop() == 0


@pytest.fixture(scope="module")
def postgres_gateway(workdir: Path, sim: Sim) -> Iterator[Gateway]:
    with postgres_database() as url:
        name = url.rsplit("/", 1)[-1]
        logs = workdir / f"logs-{name}"
        logs.mkdir()
        token = "test-admin-" + secrets.token_hex(8)
        SECRET_SCAN.registry.add(token, "an admin token")
        env = {
            **os.environ,
            "NEMO_DATA_DIR": str(workdir / f"empty-{name}"),
            "NEMO_DATABASE_URL": url,
            "NEMO_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
            "NEMO_ADMIN_TOKEN": token,
            "NEMO_AUTH_FAILURES_PER_MINUTE": "100000",
        }
        gw = Gateway(data_dir=logs, admin_token=token, env=env)
        try:
            gw.cli("init")
            gw.cli("providers", "add", "sim", "--kind", "openai", "--base-url", f"{sim.url}/v1")
            gw.cli("providers", "add-key", "sim", "--label", "main", input=SIM_PROVIDER_SECRET + "\n")
            gw.cli("models", "import", "--vendor", "openai", "--provider", "sim")
            gw.start()
            yield gw
            assert gw.stop() == 0
        finally:
            gw.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def gw(request: pytest.FixtureRequest) -> Gateway:
    found: Gateway = request.getfixturevalue(f"{request.param}_gateway")
    return found


def exact(resp: httpx.Response) -> Any:
    return json.loads(resp.text, parse_float=Decimal)


def assert_refused(resp: httpx.Response, field: str) -> None:
    """A 400 `invalid_request` in the contract's shape, naming the field and the maximum."""
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request", error
    assert f"`{field}`" in error["message"] and MAX in error["message"], error["message"]


def assert_books_readable(gw: Gateway) -> None:
    listed = gw.admin("GET", "/accounts")
    assert listed.status_code == 200, listed.text
    report = gw.admin("GET", "/ledger/verify")
    assert report.status_code == 200, report.text
    assert report.json()["ok"] is True, report.text


def credit(gw: Gateway, account_id: str, amount: str) -> httpx.Response:
    return gw.admin("POST", f"/accounts/{account_id}/credits", {"amount": amount, "reason": "range test"})


def test_credits_past_the_range_in_total_are_refused_and_the_books_stay_readable(gw: Gateway) -> None:
    account = gw.account("9000000")
    assert_refused(credit(gw, account, "300000"), "amount")  # 9.3 million in total
    assert_refused(credit(gw, account, "223372.036854775808"), "amount")  # one pico-dollar past
    assert credit(gw, account, "223372.036854775807").status_code == 201  # exactly to the maximum
    assert_refused(credit(gw, account, "0.000000000001"), "amount")
    found = exact(gw.admin("GET", f"/accounts/{account}"))["data"]
    assert found["total_credits"] == Decimal(MAX) and found["balance"] == Decimal(MAX)
    assert_books_readable(gw)


def test_one_credit_past_the_range_is_refused(gw: Gateway) -> None:
    account = gw.account("0")
    for amount in (PAST_MAX, "99999999999999999999999999", "10000000"):
        assert_refused(credit(gw, account, amount), "amount")
    assert exact(gw.admin("GET", f"/accounts/{account}"))["data"]["total_credits"] == 0
    assert_books_readable(gw)


def test_an_account_at_the_maximum_is_served_and_charged_exactly(gw: Gateway) -> None:
    account = gw.account(MAX)
    key = gw.key(account)
    reply = gw.openai(key).chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "Hello at the top"}], max_tokens=20
    )
    cost = Decimal(str(json.loads(reply.text, parse_float=Decimal)["usage"]["cost"]))
    assert cost > 0
    found = exact(gw.admin("GET", f"/accounts/{account}"))["data"]
    assert (found["total_credits"], found["total_usage"]) == (Decimal(MAX), cost)
    assert found["balance"] == Decimal(MAX) - cost
    assert_books_readable(gw)


def test_a_key_limit_past_the_range_is_refused(gw: Gateway) -> None:
    account = gw.account("1")
    refused = gw.admin("POST", f"/accounts/{account}/keys", {"name": "big", "limit": PAST_MAX})
    assert_refused(refused, "limit")
    created = gw.admin("POST", f"/accounts/{account}/keys", {"name": "top", "limit": MAX})
    assert created.status_code == 201, created.text
    key_id = created.json()["data"]["id"]
    assert_refused(gw.admin("PATCH", f"/keys/{key_id}", {"limit": "1" + "0" * 30}), "limit")
    # the customer's management API: POST and PATCH /v1/keys
    headers = {"Authorization": f"Bearer {gw.management_key(account)}"}
    made = httpx.post(f"{gw.url}/v1/keys", json={"name": "x", "limit": PAST_MAX}, headers=headers, timeout=30)
    assert_refused(made, "limit")
    patched = httpx.patch(
        f"{gw.url}/v1/keys/{key_id}", json={"limit": "10000000"}, headers=headers, timeout=30
    )
    assert_refused(patched, "limit")


def test_an_alert_threshold_past_the_range_is_refused(gw: Gateway) -> None:
    account = gw.account("1")
    headers = {"Authorization": f"Bearer {gw.management_key(account)}"}
    body = {"url": "https://example.com/hooks/nemo", "low_balance_threshold": PAST_MAX}
    assert_refused(
        httpx.put(f"{gw.url}/v1/alerts", json=body, headers=headers, timeout=30), "low_balance_threshold"
    )


def test_a_price_past_the_range_is_refused(gw: Gateway) -> None:
    body = {
        "id": f"test/too-dear-{secrets.token_hex(3)}",
        "name": "too dear",
        "context_length": 1000,
        "max_output": 100,
        "pricing": {"input": "1", "output": "10000000"},
        "deployments": [{"provider": "sim", "upstream_model": "gpt-4o-mini"}],
    }
    refused = gw.admin("POST", "/models", body)
    assert refused.status_code == 400 and refused.json()["error"]["type"] == "invalid_request", refused.text
    assert MAX in refused.json()["error"]["message"]
    priced = {**body, "pricing": {"input": "1", "output": "1"}}
    priced["deployments"] = [{**body["deployments"][0], "pricing": {"input": PAST_MAX, "output": "1"}}]
    refused = gw.admin("POST", "/models", priced)
    assert refused.status_code == 400 and MAX in refused.json()["error"]["message"], refused.text


def test_a_max_price_past_the_range_is_refused(gw: Gateway) -> None:
    key = gw.key(gw.account("1"))
    body = {
        "model": "openai/gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "provider": {"max_price": {"prompt": PAST_MAX}},
    }
    refused = httpx.post(
        f"{gw.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert_refused(refused, "provider.max_price.prompt")


def test_the_cli_refuses_with_one_error_line(gw: Gateway) -> None:
    account = gw.account("9223372")
    for args in (
        ("credits", "add", account, PAST_MAX),
        ("credits", "add", account, "1"),  # past the maximum in total
        ("keys", "create", account, "--name", "big", "--limit", PAST_MAX),
    ):
        result = gw.cli(*args, check=False)
        assert result.returncode != 0, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and MAX in lines[0], result.stderr
        assert "Traceback" not in result.stderr
    assert exact(gw.admin("GET", f"/accounts/{account}"))["data"]["total_credits"] == Decimal("9223372")
    assert_books_readable(gw)


def _checkout(gw: Gateway, account_id: str, cents: int) -> httpx.Response:
    body = {
        "id": "evt_" + secrets.token_hex(12),
        "object": "event",
        "created": int(time.time()),
        "type": "checkout.session.completed",
        "data": {
            "object": {
                "id": "cs_test_" + secrets.token_hex(12),
                "object": "checkout.session",
                "amount_total": cents,
                "currency": "usd",
                "payment_status": "paid",
                "metadata": {"nemo_account_id": account_id},
            }
        },
    }
    payload = json.dumps(body)
    header = stripe.WebhookSignature.generate_signature_header(payload, STRIPE_SECRET)
    return httpx.post(
        f"{gw.url}/webhooks/stripe",
        content=payload,
        headers={"content-type": "application/json", "stripe-signature": header},
        timeout=30,
    )


def test_a_stripe_top_up_past_the_range_is_refused(sqlite_gateway: Gateway) -> None:
    gw = sqlite_gateway
    account = gw.account("0")
    assert_refused(_checkout(gw, account, 2**63), "amount_total")  # one amount past the range
    assert _checkout(gw, account, 900_000_000).status_code == 200  # $9,000,000.00
    assert_refused(_checkout(gw, account, 30_000_000), "amount_total")  # past the range in total
    assert exact(gw.admin("GET", f"/accounts/{account}"))["data"]["total_credits"] == Decimal("9000000")
    assert_books_readable(gw)


def test_the_console_forms_refuse_amounts_past_the_range(sqlite_gateway: Gateway) -> None:
    from console.console_client import Browser, new_user  # tests/console: the console over plain HTTP

    gw = sqlite_gateway
    operator = Browser(gw)
    try:
        assert operator.sign_in_operator(gw.admin_token).status_code == 303
        account = gw.account("9223372")
        granted = operator.post(
            f"/console/admin/accounts/{account}/credits",
            {"amount": "$1", "reason": "goodwill"},  # past the maximum in total
            csrf_from="/console/admin/accounts",
        )
        assert granted.status_code == 400 and MAX in granted.text, granted.text[:500]
        assert exact(gw.admin("GET", f"/accounts/{account}"))["data"]["total_credits"] == Decimal("9223372")
    finally:
        operator.close()
    _, _, customer = new_user(gw)
    try:
        made = customer.post("/console/keys", {"name": "big", "limit": PAST_MAX}, csrf_from="/console/keys")
        assert made.status_code == 400 and MAX in made.text, made.text[:500]
    finally:
        customer.close()
    assert_books_readable(gw)


def test_counts_past_64_bits_are_a_400_not_a_500(sqlite_gateway: Gateway) -> None:
    """Not money, but the same columns: a rate limit or a model size past 64 bits is refused."""
    gw = sqlite_gateway
    account = gw.account("1")
    for path, body in (
        (f"/accounts/{account}", {"rpm": 2**64}),
        (f"/accounts/{account}/keys", {"name": "k", "tpm": 2**70}),
    ):
        resp = gw.admin("PATCH" if path.endswith(account) else "POST", path, body)
        assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request", resp.text
    model = {
        "id": f"test/huge-{secrets.token_hex(3)}",
        "name": "huge",
        "context_length": 2**64,
        "max_output": 10,
        "pricing": {"input": "1", "output": "1"},
        "deployments": [{"provider": "sim", "upstream_model": "gpt-4o-mini"}],
    }
    for change in ({}, {"context_length": 1000, "max_output": 2**63}):
        resp = gw.admin("POST", "/models", {**model, **change})
        assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request", resp.text
    assert gw.admin("GET", "/accounts").status_code == 200
