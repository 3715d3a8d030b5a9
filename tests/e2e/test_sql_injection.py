"""SQL injection, the class LiteLLM shipped in key verification: classic payloads as API keys, as
ids in paths and queries, as model names and as stored text. Every one gets the contract's error
(or, as stored text, comes back verbatim); afterwards every table is intact and the ledger
verifies. The stores bind every value as a parameter; these tests check it from the outside."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from conftest import Gateway

PAYLOADS = [
    "' OR '1'='1",
    "x'; DROP TABLE api_keys; --",
    "1 OR 1=1",
    '" OR ""="',
    "%' --",
    "sk-nemo-' OR 1=1 --",
    "key_') UNION SELECT hash, key_id, valid_until, created_at FROM key_secrets --",
]


def error_of(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()
    assert isinstance(body["error"]["message"], str) and body["error"]["type"]
    error: dict[str, Any] = body["error"]
    return error


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> dict[str, str]:
    account = gateway.account("1.00", name="sqli")
    return {"account": account, "key": gateway.key(account), "mgmt": gateway.management_key(account)}


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_as_keys_are_refused(gateway: Gateway, payload: str) -> None:
    headers = {"Authorization": f"Bearer {payload}"}
    chat = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    error_of(httpx.post(f"{gateway.url}/v1/chat/completions", json=chat, headers=headers), 401)
    error_of(httpx.get(f"{gateway.url}/v1/keys", headers=headers), 401)
    error_of(httpx.get(f"{gateway.url}/admin/v1/accounts", headers=headers), 401)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_as_ids_find_nothing(gateway: Gateway, tenant: dict[str, str], payload: str) -> None:
    mgmt = {"Authorization": f"Bearer {tenant['mgmt']}"}
    error_of(httpx.get(f"{gateway.url}/v1/keys/{payload}", headers=mgmt), 404)
    error_of(httpx.get(f"{gateway.url}/v1/generation", params={"id": payload}, headers=mgmt), 404)
    error_of(gateway.admin("GET", f"/accounts/{payload}"), 404)
    error_of(gateway.admin("GET", f"/keys/{payload}"), 404)
    chat = {"model": payload, "messages": [{"role": "user", "content": "hi"}]}
    inference = {"Authorization": f"Bearer {tenant['key']}"}
    assert (
        error_of(httpx.post(f"{gateway.url}/v1/chat/completions", json=chat, headers=inference), 404)["type"]
        == "model_not_found"
    )


def test_payloads_as_stored_text_come_back_verbatim_and_nothing_else_moves(
    gateway: Gateway, tenant: dict[str, str]
) -> None:
    mgmt = {"Authorization": f"Bearer {tenant['mgmt']}"}
    before = httpx.get(f"{gateway.url}/v1/keys", headers=mgmt).json()["data"]
    accounts_before = gateway.admin("GET", "/accounts").json()["data"]
    for payload in PAYLOADS:
        made = httpx.post(f"{gateway.url}/v1/keys", json={"name": payload}, headers=mgmt)
        assert made.status_code == 201, made.text
        shown = httpx.get(f"{gateway.url}/v1/keys/{made.json()['data']['id']}", headers=mgmt).json()["data"]
        assert shown["name"] == payload
    after = httpx.get(f"{gateway.url}/v1/keys", headers=mgmt).json()["data"]
    assert len(after) == len(before) + len(PAYLOADS)
    assert len(gateway.admin("GET", "/accounts").json()["data"]) == len(accounts_before)
    assert Decimal(str(gateway.balance(tenant["account"])["total_credits"])) == Decimal("1")
    assert gateway.verify()["ok"] is True
