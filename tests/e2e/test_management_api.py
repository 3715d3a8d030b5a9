"""The account management API (management key): credits, the account's keys, rotation, key and
generation views, and isolation between accounts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from conftest import Gateway
from nemorouter.service.keyformat import key_scope

MINI = "openai/gpt-4o-mini"
CHAT = "/v1/chat/completions"
MONEY_KEY_FIELDS = ("limit", "limit_remaining", "usage", "usage_daily", "usage_weekly", "usage_monthly")
CONTRACT_KEY_FIELDS = {
    "id",
    "label",
    "limit",
    "limit_reset",
    "limit_remaining",
    "usage",
    "usage_daily",
    "usage_weekly",
    "usage_monthly",
    "expires_at",
    "disabled",
    "rate_limit",
    "allowed_models",
}


# One pooled client for the module: a fresh `httpx.request` per call costs ~25 ms of TLS setup.
HTTP = httpx.Client(timeout=30)


@pytest.fixture(scope="module", autouse=True)
def _close_client() -> Iterator[None]:
    yield
    HTTP.close()


def exact(resp: httpx.Response) -> Any:
    return json.loads(resp.text, parse_float=Decimal)


def call(
    gw: Gateway, method: str, path: str, key: str, body: Any = None, content: bytes | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if content is not None:
        headers["content-type"] = "application/json"
    return HTTP.request(method, f"{gw.url}{path}", json=body, content=content, headers=headers)


def admin(gw: Gateway, method: str, path: str, body: Any = None) -> httpx.Response:
    return HTTP.request(
        method, f"{gw.url}/admin/v1{path}", json=body, headers={"Authorization": f"Bearer {gw.admin_token}"}
    )


def verify(gw: Gateway) -> dict[str, Any]:
    report: dict[str, Any] = admin(gw, "GET", "/ledger/verify").json()
    return report


def chat(gw: Gateway, key: str, text: str = "Hello there") -> httpx.Response:
    body = {"model": MINI, "messages": [{"role": "user", "content": text}]}
    return call(gw, "POST", CHAT, key, body)


def assert_error(resp: httpx.Response, status: int, type_: str) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert list(body) == ["error"], body
    assert set(body["error"]) == {"code", "type", "message"}, body
    assert body["error"]["code"] == status
    assert body["error"]["type"] == type_, body
    assert body["error"]["message"]


def is_money(value: Any) -> bool:
    """A JSON number literal (parsed exactly), never a string or a boolean."""
    return isinstance(value, (int, Decimal)) and not isinstance(value, bool)


class Tenant:
    """An account with a management key."""

    def __init__(self, gw: Gateway, credits: str = "5.00") -> None:
        self.gw = gw
        made = admin(gw, "POST", "/accounts", {"name": "mgmt-api", "email": "mgmt@example.com"})
        assert made.status_code == 201, made.text
        self.id: str = made.json()["data"]["id"]
        credited = admin(gw, "POST", f"/accounts/{self.id}/credits", {"amount": credits, "reason": "test"})
        assert credited.status_code == 201, credited.text
        created = admin(gw, "POST", f"/accounts/{self.id}/management-keys", {"name": "mgmt"})
        assert created.status_code == 201, created.text
        self.mgmt: str = created.json()["key"]
        self.mgmt_id: str = created.json()["data"]["id"]

    def m(self, method: str, path: str, body: Any = None, content: bytes | None = None) -> httpx.Response:
        return call(self.gw, method, path, self.mgmt, body, content)

    def create_key(self, **fields: Any) -> tuple[str, dict[str, Any]]:
        resp = self.m("POST", "/v1/keys", {"name": "k", **fields})
        assert resp.status_code == 201, resp.text
        body = exact(resp)
        return body["key"], body["data"]

    def admin_key(self, key_id: str) -> dict[str, Any]:
        found: dict[str, Any] = exact(admin(self.gw, "GET", f"/keys/{key_id}"))["data"]
        return found


def until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


# -- credits --------------------------------------------------------------------------------


def test_credits_shows_exact_money(gateway: Gateway) -> None:
    tenant = Tenant(gateway, credits="7.123456789")
    resp = tenant.m("GET", "/v1/credits")
    assert resp.status_code == 200, resp.text
    data = exact(resp)["data"]
    assert set(data) >= {"total_credits", "total_usage", "balance", "held"}
    assert all(is_money(data[f]) for f in ("total_credits", "total_usage", "balance", "held")), resp.text
    assert data["total_credits"] == Decimal("7.123456789")
    assert data["balance"] == Decimal("7.123456789")
    assert data["total_usage"] == 0 and data["held"] == 0

    secret, _ = tenant.create_key()
    served = chat(gateway, secret)
    assert served.status_code == 200, served.text
    cost = Decimal(served.headers["x-nemo-cost"])
    assert cost > 0
    data = exact(tenant.m("GET", "/v1/credits"))["data"]
    assert data["total_usage"] == cost
    assert data["balance"] == Decimal("7.123456789") - cost
    assert data["total_credits"] - data["total_usage"] == data["balance"]
    assert data["held"] == 0


# -- creating keys ----------------------------------------------------------------------------


def test_create_key_returns_secret_once_and_echoes_fields(gateway: Gateway) -> None:
    tenant = Tenant(gateway)
    expires = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    expires_text = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    fields = {
        "name": "ci-bot",
        "limit": "2.5",
        "limit_reset": "monthly",
        "expires_at": expires_text,
        "rpm": 100,
        "tpm": 100000,
        "max_concurrency": 5,
        "allowed_models": [MINI],
    }
    resp = tenant.m("POST", "/v1/keys", fields)
    assert resp.status_code == 201, resp.text
    body = exact(resp)
    assert set(body) == {"key", "data"}
    secret = body["key"]
    assert secret.startswith("sk-nemo-v1-") and key_scope(secret) == "inference"
    data = body["data"]
    assert set(data) >= CONTRACT_KEY_FIELDS, set(data)
    assert data["limit"] == Decimal("2.5")
    assert data["limit_reset"] == "monthly"
    assert data["limit_remaining"] == Decimal("2.5")
    assert data["usage"] == 0
    assert data["expires_at"] == expires_text
    assert data["disabled"] is False
    assert data["rate_limit"] == {"rpm": 100, "tpm": 100000, "max_concurrency": 5}
    assert data["allowed_models"] == [MINI]
    assert all(is_money(data[f]) for f in MONEY_KEY_FIELDS), resp.text
    assert secret not in json.dumps(data, default=str)

    # Shown once: no later answer carries the secret.
    one = tenant.m("GET", f"/v1/keys/{data['id']}")
    listed = tenant.m("GET", "/v1/keys")
    assert one.status_code == 200 and listed.status_code == 200
    assert secret not in one.text and secret not in listed.text
    assert "key" not in one.json()
    assert exact(one)["data"] == data

    served = chat(gateway, secret)
    assert served.status_code == 200, served.text


def test_create_key_limit_number_literal_is_exact(gateway: Gateway) -> None:
    tenant = Tenant(gateway)
    resp = tenant.m("POST", "/v1/keys", content=b'{"name": "exact", "limit": 0.1}')
    assert resp.status_code == 201, resp.text
    assert exact(resp)["data"]["limit"] == Decimal("0.1")


@pytest.mark.parametrize(
    "body",
    [
        {"name": "old", "expires_at": "2020-01-01T00:00:00Z"},
        {"name": "unknown", "colour": "blue"},
        {"name": "unknown", "key": "sk-nemo-v1-mine"},
        {"limit": "1.00"},
        {"name": ""},
        {"name": "bad-reset", "limit_reset": "yearly"},
        {"name": "bad-limit", "limit": "-1"},
        {"name": "bad-limit", "limit": "lots"},
        {"name": "bad-rpm", "rpm": "10"},
        {"name": "bad-models", "allowed_models": MINI},
        {"name": "bad-expiry", "expires_at": "tomorrow"},
    ],
    ids=[
        "expires_in_past",
        "unknown_field",
        "unknown_field_key",
        "name_missing",
        "name_empty",
        "limit_reset_yearly",
        "limit_negative",
        "limit_garbage",
        "rpm_string",
        "allowed_models_string",
        "expires_garbage",
    ],
)
def test_create_key_bad_input_is_400(gateway: Gateway, body: dict[str, Any]) -> None:
    tenant = Tenant(gateway)
    assert_error(tenant.m("POST", "/v1/keys", body), 400, "invalid_request")
    assert tenant.m("GET", "/v1/keys").json()["data"] == []


def test_create_key_body_not_json_is_400(gateway: Gateway) -> None:
    tenant = Tenant(gateway)
    assert_error(tenant.m("POST", "/v1/keys", content=b"{name: x"), 400, "invalid_request")
    assert_error(tenant.m("POST", "/v1/keys", content=b'["k"]'), 400, "invalid_request")
    assert tenant.m("GET", "/v1/keys").json()["data"] == []


# -- listing, reading, changing, revoking -----------------------------------------------------


def test_list_keys_shows_only_this_accounts_inference_keys(gateway: Gateway) -> None:
    mine, other = Tenant(gateway), Tenant(gateway)
    _, first = mine.create_key(name="first")
    made = admin(gateway, "POST", f"/accounts/{mine.id}/keys", {"name": "second"})
    assert made.status_code == 201
    second_id = made.json()["data"]["id"]
    _, theirs = other.create_key(name="theirs")

    listed = mine.m("GET", "/v1/keys")
    assert listed.status_code == 200, listed.text
    found = exact(listed)["data"]
    assert sorted(k["id"] for k in found) == sorted([first["id"], second_id])
    assert mine.mgmt_id not in listed.text and theirs["id"] not in listed.text
    assert all(k["id"] != mine.mgmt_id for k in found)
    assert all(set(k) >= CONTRACT_KEY_FIELDS for k in found)
    assert [k["id"] for k in exact(other.m("GET", "/v1/keys"))["data"]] == [theirs["id"]]


def test_get_patch_delete_key(gateway: Gateway) -> None:
    tenant = Tenant(gateway)
    secret, data = tenant.create_key(name="before", limit="1.00")
    key_id = data["id"]

    got = tenant.m("GET", f"/v1/keys/{key_id}")
    assert got.status_code == 200, got.text
    assert exact(got)["data"]["name"] == "before"

    patched = tenant.m(
        "PATCH",
        f"/v1/keys/{key_id}",
        {"name": "after", "limit": "3.5", "limit_reset": "daily", "rpm": 60, "allowed_models": [MINI]},
    )
    assert patched.status_code == 200, patched.text
    view = exact(patched)["data"]
    assert view["id"] == key_id
    assert view["name"] == "after"
    assert view["limit"] == Decimal("3.5") and view["limit_remaining"] == Decimal("3.5")
    assert view["limit_reset"] == "daily"
    assert view["rate_limit"]["rpm"] == 60
    assert view["allowed_models"] == [MINI]
    assert exact(tenant.m("GET", f"/v1/keys/{key_id}"))["data"] == view

    cleared = tenant.m("PATCH", f"/v1/keys/{key_id}", {"limit": None, "allowed_models": None})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["data"]["limit"] is None and cleared.json()["data"]["limit_remaining"] is None
    assert cleared.json()["data"]["allowed_models"] is None

    assert_error(tenant.m("PATCH", f"/v1/keys/{key_id}", {"colour": "red"}), 400, "invalid_request")
    assert_error(tenant.m("PATCH", f"/v1/keys/{key_id}", {"disabled": "yes"}), 400, "invalid_request")
    assert_error(
        tenant.m("PATCH", f"/v1/keys/{key_id}", {"expires_at": "2001-01-01T00:00:00Z"}),
        400,
        "invalid_request",
    )

    assert chat(gateway, secret).status_code == 200
    deleted = tenant.m("DELETE", f"/v1/keys/{key_id}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["data"]["id"] == key_id
    assert deleted.json()["data"]["revoked"] is True
    assert_error(chat(gateway, secret), 401, "key_revoked")

    # Revoking is permanent: trying to re-enable it changes nothing.
    tenant.m("PATCH", f"/v1/keys/{key_id}", {"disabled": False})
    assert_error(chat(gateway, secret), 401, "key_revoked")
    assert tenant.admin_key(key_id)["revoked"] is True
    assert verify(gateway)["ok"] is True


def test_rotate_with_grace(gateway: Gateway) -> None:
    tenant = Tenant(gateway)
    old, data = tenant.create_key(name="rotating", limit="1.00", rpm=1000)
    key_id = data["id"]
    assert chat(gateway, old).status_code == 200
    usage_before = tenant.admin_key(key_id)["usage"]
    assert usage_before > 0

    rotated_at = time.monotonic()
    resp = tenant.m("POST", f"/v1/keys/{key_id}/rotate", {"grace_seconds": 4})
    assert resp.status_code == 201, resp.text
    body = exact(resp)
    new = body["key"]
    assert new != old and key_scope(new) == "inference"
    assert body["data"]["id"] == key_id
    assert body["data"]["name"] == "rotating"
    assert body["data"]["limit"] == Decimal("1.00")
    assert body["data"]["rate_limit"]["rpm"] == 1000
    assert body["data"]["usage"] == usage_before

    # Both work during the grace; the new one is the same key (same id, same usage).
    assert chat(gateway, new).status_code == 200
    during = chat(gateway, old)
    assert time.monotonic() - rotated_at < 3.8, "the grace check came too late to mean anything"
    assert during.status_code == 200, during.text
    current = exact(call(gateway, "GET", "/v1/key", new))["data"]
    assert current["id"] == key_id

    time.sleep(max(0.0, rotated_at + 4.4 - time.monotonic()))
    assert_error(chat(gateway, old), 401, "key_revoked")
    assert chat(gateway, new).status_code == 200
    assert verify(gateway)["ok"] is True


def test_rotate_without_grace_retires_the_old_secret_at_once(gateway: Gateway) -> None:
    """Rotation refreshes this server's key cache at once: the old secret's very next request fails."""
    tenant = Tenant(gateway)
    old, data = tenant.create_key(name="rotate-now")
    time.sleep(0.3)  # the server's config check is due: the next request loads and caches the key
    assert chat(gateway, old).status_code == 200
    resp = tenant.m("POST", f"/v1/keys/{data['id']}/rotate", {"grace_seconds": 0})
    assert resp.status_code == 201, resp.text
    assert_error(chat(gateway, old), 401, "key_revoked")


def test_rotate_without_grace_retires_the_old_secret(gateway: Gateway) -> None:
    """Eventually (within the cache interval) the old secret is refused; the new one works."""
    tenant = Tenant(gateway)
    old, data = tenant.create_key(name="rotate-now")
    resp = tenant.m("POST", f"/v1/keys/{data['id']}/rotate", {"grace_seconds": 0})
    assert resp.status_code == 201, resp.text
    assert until(lambda: chat(gateway, old).status_code == 401, 1.0)
    assert_error(chat(gateway, old), 401, "key_revoked")
    assert chat(gateway, resp.json()["key"]).status_code == 200


def test_rotate_bad_grace_is_400(gateway: Gateway) -> None:
    tenant = Tenant(gateway)
    old, data = tenant.create_key()
    for grace in (-1, "10", 1.5):
        resp = tenant.m("POST", f"/v1/keys/{data['id']}/rotate", {"grace_seconds": grace})
        assert_error(resp, 400, "invalid_request")
    assert chat(gateway, old).status_code == 200


def test_another_accounts_key_is_404_and_unchanged(gateway: Gateway) -> None:
    mine, other = Tenant(gateway), Tenant(gateway)
    their_secret, theirs = other.create_key(name="theirs", limit="1.00")
    their_id = theirs["id"]
    assert chat(gateway, their_secret).status_code == 200
    before = other.admin_key(their_id)

    assert_error(mine.m("GET", f"/v1/keys/{their_id}"), 404, "not_found")
    assert_error(mine.m("PATCH", f"/v1/keys/{their_id}", {"disabled": True}), 404, "not_found")
    assert_error(mine.m("PATCH", f"/v1/keys/{their_id}", {"limit": "0"}), 404, "not_found")
    assert_error(mine.m("DELETE", f"/v1/keys/{their_id}"), 404, "not_found")
    assert_error(mine.m("POST", f"/v1/keys/{their_id}/rotate", {"grace_seconds": 0}), 404, "not_found")
    # Nor through an id that names a management key (the other account's).
    assert_error(mine.m("DELETE", f"/v1/keys/{other.mgmt_id}"), 404, "not_found")
    # An id that exists nowhere is the same 404.
    assert_error(mine.m("GET", "/v1/keys/key_doesnotexist"), 404, "not_found")

    assert other.admin_key(their_id) == before
    assert chat(gateway, their_secret).status_code == 200
    assert other.m("GET", "/v1/credits").status_code == 200


# -- GET /v1/key --------------------------------------------------------------------------------


def test_current_key_shows_usage_and_limit(gateway: Gateway) -> None:
    tenant = Tenant(gateway)
    secret, data = tenant.create_key(name="viewer", limit="1.00", limit_reset="daily", rpm=50)
    served = chat(gateway, secret)
    assert served.status_code == 200, served.text
    cost = Decimal(served.headers["x-nemo-cost"])

    resp = call(gateway, "GET", "/v1/key", secret)
    assert resp.status_code == 200, resp.text
    view = exact(resp)["data"]
    assert set(view) >= CONTRACT_KEY_FIELDS, set(view)
    assert all(is_money(view[f]) for f in MONEY_KEY_FIELDS), resp.text
    assert secret not in resp.text
    assert view["id"] == data["id"]
    assert view["limit"] == Decimal("1.00")
    assert view["limit_reset"] == "daily"
    assert view["usage"] == cost
    assert view["usage_daily"] == cost and view["usage_weekly"] == cost and view["usage_monthly"] == cost
    assert view["limit_remaining"] == view["limit"] - view["usage"] - view.get("held", 0)
    assert view["limit_remaining"] == Decimal("1.00") - cost
    assert view["disabled"] is False and view["expires_at"] is None
    assert view["rate_limit"] == {"rpm": 50, "tpm": None, "max_concurrency": None}
    assert view["allowed_models"] is None


def test_current_key_limit_remaining_counts_held_money(gateway: Gateway) -> None:
    """While a request is in flight its hold is subtracted: limit_remaining = limit - usage - held."""
    tenant = Tenant(gateway)
    secret, data = tenant.create_key(name="held", limit="2.00")
    served = chat(gateway, secret)
    assert served.status_code == 200
    cost = Decimal(served.headers["x-nemo-cost"])

    slow: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: slow.append(chat(gateway, secret, "take your time [sim:latency_ms=1500]"))
    )
    thread.start()
    try:
        assert until(lambda: tenant.admin_key(data["id"])["held"] > 0, 1.2)
        view = exact(call(gateway, "GET", "/v1/key", secret))["data"]
        held = tenant.admin_key(data["id"])["held"]
        assert held > 0
        assert view["usage"] == cost
        assert view["limit_remaining"] == Decimal("2.00") - cost - held
    finally:
        thread.join(10)
    assert slow and slow[0].status_code == 200
    view = exact(call(gateway, "GET", "/v1/key", secret))["data"]
    total = cost + Decimal(slow[0].headers["x-nemo-cost"])
    assert view["usage"] == total
    assert view["limit_remaining"] == Decimal("2.00") - total


# -- GET /v1/generation -------------------------------------------------------------------------


def test_generation_visibility(gateway: Gateway) -> None:
    mine, other = Tenant(gateway), Tenant(gateway)
    first, first_data = mine.create_key(name="first")
    second, _ = mine.create_key(name="second")
    outsider, _ = other.create_key(name="outsider")

    served = chat(gateway, first)
    assert served.status_code == 200, served.text
    gen_id = served.headers["x-nemo-request-id"]
    usage = exact(served)["usage"]
    path = f"/v1/generation?id={gen_id}"

    own = call(gateway, "GET", path, first)
    assert own.status_code == 200, own.text
    record = exact(own)["data"]
    assert record["id"] == gen_id
    assert record["model"] == MINI
    assert record["provider"] == "sim"
    assert record["upstream_model"] == "gpt-4o-mini"
    assert record["streamed"] is False and record["cancelled"] is False
    assert record["status"] == "success"
    assert record["finish_reason"] == "stop"
    assert record["tokens"]["prompt"] == usage["prompt_tokens"]
    assert record["tokens"]["completion"] == usage["completion_tokens"]
    assert record["tokens"]["cached"] == 0 and record["tokens"]["reasoning"] == 0
    assert record["total_cost"] == usage["cost"] == Decimal(served.headers["x-nemo-cost"])
    assert is_money(record["total_cost"])
    assert record["key_id"] == first_data["id"]
    assert isinstance(record["latency_ms"], int) and record["latency_ms"] >= 0
    assert record["created_at"].endswith("Z")

    by_mgmt = call(gateway, "GET", path, mine.mgmt)
    assert by_mgmt.status_code == 200, by_mgmt.text
    assert exact(by_mgmt)["data"] == record

    assert_error(call(gateway, "GET", path, second), 404, "not_found")  # same account, other key
    assert_error(call(gateway, "GET", path, outsider), 404, "not_found")
    assert_error(call(gateway, "GET", path, other.mgmt), 404, "not_found")
    assert_error(call(gateway, "GET", "/v1/generation?id=gen-nope", first), 404, "not_found")
    assert_error(call(gateway, "GET", "/v1/generation", first), 400, "invalid_request")

    # The other account's generation is as invisible to this account.
    theirs = chat(gateway, outsider)
    their_path = f"/v1/generation?id={theirs.headers['x-nemo-request-id']}"
    assert_error(call(gateway, "GET", their_path, mine.mgmt), 404, "not_found")
    assert_error(call(gateway, "GET", their_path, first), 404, "not_found")
    assert call(gateway, "GET", their_path, other.mgmt).status_code == 200


def test_management_endpoints_refuse_bad_keys(gateway: Gateway) -> None:
    tenant = Tenant(gateway)
    secret, _ = tenant.create_key()
    for method, path in (("GET", "/v1/credits"), ("GET", "/v1/keys"), ("POST", "/v1/keys")):
        assert_error(call(gateway, method, path, secret, {"name": "x"}), 403, "forbidden")
        assert_error(HTTP.request(method, f"{gateway.url}{path}", json={"name": "x"}), 401, "invalid_key")
        bad = tenant.mgmt[:-1] + ("a" if tenant.mgmt[-1] != "a" else "b")
        assert_error(call(gateway, method, path, bad, {"name": "x"}), 401, "invalid_key")
    assert len(tenant.m("GET", "/v1/keys").json()["data"]) == 1
