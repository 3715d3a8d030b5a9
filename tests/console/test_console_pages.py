"""The console's forms over plain HTTP: keys (limits, disable, rotate), alert settings and
management keys, statement downloads, and the operator's vault keys. Each change is checked
through the APIs, which share the console's services."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

import httpx
import openai
import pytest
from console_client import Browser, csrf_of, new_user

from conftest import Gateway

MINI = "openai/gpt-4o-mini"
SECRET = re.compile(r'id="new-secret" class="secretvalue">([^<]+)<')


def secret_on(page: str) -> str:
    found = SECRET.search(page)
    assert found, "no secret shown"
    return found.group(1)


def works(gw: Gateway, key: str) -> bool:
    try:
        gw.openai(key).chat.completions.create(model=MINI, messages=[{"role": "user", "content": "hi"}])
    except openai.AuthenticationError:
        return False
    return True


def test_key_forms(gateway: Gateway) -> None:
    account_id, _, browser = new_user(gateway)
    bad = browser.post("/console/keys", {"name": "x", "limit": "lots"}, csrf_from="/console/keys")
    assert bad.status_code == 400 and "limit" in bad.text
    assert gateway.admin("GET", f"/accounts/{account_id}/keys").json()["data"] == []
    form = {
        "name": "batch",
        "limit": "$2.5",
        "limit_reset": "weekly",
        "rpm": "30",
        "allowed_models": f"{MINI}, openai/gpt-4o",
    }
    made = browser.post("/console/keys", form, csrf_from="/console/keys")
    assert made.status_code == 201
    secret = secret_on(made.text)
    (key,) = gateway.admin("GET", f"/accounts/{account_id}/keys").json()["data"]
    assert (key["limit"], key["limit_reset"], key["rate_limit"]["rpm"]) == (2.5, "weekly", 30)
    assert key["allowed_models"] == [MINI, "openai/gpt-4o"]
    assert secret not in browser.get("/console/keys").text  # shown once
    path = f"/console/keys/{key['id']}"
    assert browser.post(f"{path}/disable", {}, csrf_from="/console/keys").status_code == 303
    assert not works(gateway, secret)
    assert browser.post(f"{path}/enable", {}, csrf_from="/console/keys").status_code == 303
    assert works(gateway, secret)
    rotated = browser.post(f"{path}/rotate", {}, csrf_from="/console/keys")
    assert rotated.status_code == 201
    fresh = secret_on(rotated.text)
    assert fresh != secret and works(gateway, fresh) and not works(gateway, secret)
    assert browser.post(f"{path}/launch", {}, csrf_from="/console/keys").status_code == 404


def test_alert_settings_and_management_keys(gateway: Gateway) -> None:
    account_id, _, browser = new_user(gateway)
    refused = browser.post("/console/settings", {"url": "not a url"}, csrf_from="/console/settings")
    assert refused.status_code == 400 and "url" in refused.text
    inside = browser.post(
        "/console/settings", {"url": "http://127.0.0.1:9/hook"}, csrf_from="/console/settings"
    )
    assert inside.status_code == 400 and "not a public address" in inside.text  # no SSRF
    form = {"url": "https://hooks.example.com/nemo", "low_balance_threshold": "1.50"}
    saved = browser.post("/console/settings", form, csrf_from="/console/settings")
    assert saved.status_code == 200 and secret_on(saved.text).startswith("whsec_")
    again = browser.post(
        "/console/settings", {**form, "low_balance_threshold": ""}, csrf_from="/console/settings"
    )
    assert again.status_code == 303  # the signing secret is shown only the first time
    page = browser.get("/console/settings").text
    assert "https://hooks.example.com/nemo" in page

    made = browser.post("/console/settings/management-keys", {"name": "ci"}, csrf_from="/console/settings")
    assert made.status_code == 201
    mgmt = secret_on(made.text)
    seen = httpx.get(f"{gateway.url}/v1/credits", headers={"Authorization": f"Bearer {mgmt}"})
    assert seen.status_code == 200 and seen.json()["data"]["balance"] == 5
    (key,) = [
        k for k in gateway.admin("GET", f"/accounts/{account_id}/keys").json()["data"] if k["name"] == "ci"
    ]
    revoked = browser.post(
        f"/console/settings/management-keys/{key['id']}/revoke", {}, csrf_from="/console/settings"
    )
    assert revoked.status_code == 303
    assert (
        httpx.get(f"{gateway.url}/v1/credits", headers={"Authorization": f"Bearer {mgmt}"}).status_code == 401
    )


def test_statement_downloads(gateway: Gateway) -> None:
    account_id, _, browser = new_user(gateway)
    key = gateway.key(account_id)
    assert works(gateway, key)
    now = datetime.now(UTC)
    month = f"{now.year:04d}-{now.month:02d}"
    assert f"/console/billing/statements/{month}.pdf" in browser.get("/console/billing").text
    csv = browser.get(f"/console/billing/statements/{month}.csv")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in csv.headers["content-disposition"] and "usage" in csv.text
    pdf = browser.get(f"/console/billing/statements/{month}.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    html = browser.get(f"/console/billing/statements/{month}.html")
    assert html.status_code == 200 and "script-src" not in html.headers["content-security-policy"]
    assert browser.get(f"/console/billing/statements/{now.year + 1}-01.pdf").status_code == 400
    assert browser.get(f"/console/billing/statements/{month}.exe").status_code == 400


@pytest.fixture
def operator(gateway: Gateway) -> Browser:
    browser = Browser(gateway)
    assert browser.sign_in_operator(gateway.admin_token).status_code == 303
    return browser


def test_the_operators_vault_keys(gateway: Gateway, operator: Browser) -> None:
    name = f"spare-{secrets.token_hex(3)}"
    made = gateway.admin(
        "POST", "/providers", {"name": name, "kind": "openai", "base_url": "http://127.0.0.1:9/v1"}
    )
    assert made.status_code == 201
    secret = "sk-spare-" + secrets.token_hex(12)
    added = operator.post(
        f"/console/admin/providers/{name}/keys",
        {"label": "first", "secret": secret},
        csrf_from="/console/admin/providers",
    )
    assert added.status_code == 303
    page = operator.get("/console/admin/providers").text
    assert secret not in page and "sha256:" in page
    (key,) = gateway.admin("GET", f"/providers/{name}").json()["data"]["keys"]
    base = f"/console/admin/providers/{name}/keys/{key['id']}"
    for action, field, value in (
        ("quarantine", "quarantined_at", True),
        ("release", "quarantined_at", False),
        ("disable", "disabled", True),
        ("enable", "disabled", False),
    ):
        assert operator.post(f"{base}/{action}", {}, csrf_from="/console/admin/providers").status_code == 303
        (now,) = gateway.admin("GET", f"/providers/{name}").json()["data"]["keys"]
        assert bool(now[field]) is value, action
    rotated = operator.post(
        f"{base}/rotate",
        {"secret": "sk-spare-new-" + secrets.token_hex(8)},
        csrf_from="/console/admin/providers",
    )
    assert rotated.status_code == 303
    keys = gateway.admin("GET", f"/providers/{name}").json()["data"]["keys"]
    assert len(keys) == 2 and {k["label"] for k in keys} == {"first"}
    assert [k["disabled"] for k in sorted(keys, key=lambda k: k["id"] != key["id"])] == [True, False]
    # The admin API quarantines by hand too (the console's own call); a non-boolean is refused.
    assert (
        gateway.admin("PATCH", f"/providers/{name}/keys/{key['id']}", {"quarantined": "yes"}).status_code
        == 400
    )
    manual = gateway.admin("PATCH", f"/providers/{name}/keys/{key['id']}", {"quarantined": True})
    assert manual.status_code == 200 and manual.json()["data"]["quarantined_at"]


def test_the_operators_read_pages(gateway: Gateway, operator: Browser) -> None:
    for path in ("models", "reconciliation", "ledger", "accounts"):
        page = operator.get(f"/console/admin/{path}")
        assert page.status_code == 200, path
    assert "openai/gpt-4o-mini" in operator.get("/console/admin/models").text
    assert operator.get("/console/admin/reconciliation?provider=sim&month=2026-13").status_code == 400
    assert operator.get("/console/admin/reconciliation?provider=nope").status_code == 400
    assert "Every invariant holds" in operator.get("/console/admin/ledger").text
    # An invite from the accounts page shows the link once.
    account_id = gateway.account("0", name="invitee")
    made = operator.post(
        f"/console/admin/accounts/{account_id}/invites",
        {"email": f"new-{secrets.token_hex(3)}@example.com"},
        csrf_from="/console/admin/accounts",
    )
    assert made.status_code == 201 and f"{gateway.url}/console/invite/" in made.text
    assert csrf_of(made.text)
