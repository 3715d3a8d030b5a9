"""Console sign-in over plain HTTP: invites, passwords, sessions, CSRF, throttling, the operator."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest
from console_client import PASSWORD, Browser, csrf_of, invite_link, new_user

from conftest import Gateway, new_gateway


def test_an_invite_sets_a_password_once_and_signs_in(gateway: Gateway) -> None:
    account_id = gateway.account("5.00", name="invited")
    email = f"Ada-{secrets.token_hex(3)}@Example.com"
    link = invite_link(gateway, account_id, email)
    assert link.startswith(f"{gateway.url}/console/invite/")
    browser = Browser(gateway)
    page = browser.get(link.removeprefix(gateway.url))
    assert page.status_code == 200 and email.lower() in page.text
    short = browser.post(page.url.path, {"csrf": csrf_of(page.text), "password": "short", "confirm": "short"})
    assert short.status_code == 400 and "at least 12" in short.text
    done = browser.set_password(link)
    assert done.status_code == 303 and done.headers["location"] == "/console/overview"
    cookie = done.headers["set-cookie"]
    assert "nemo_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback; set when the request is HTTPS
    overview = browser.get("/console/overview")
    assert overview.status_code == 200 and "$5.00" in overview.text
    # The link is spent: a second use is refused, whoever tries it.
    assert Browser(gateway).get(link.removeprefix(gateway.url)).status_code == 404
    # Sign out ends the session for good, then sign in with the password.
    out = browser.post("/console/logout", {}, csrf_from="/console/overview")
    assert out.status_code == 303 and out.headers["location"] == "/console/login"
    assert browser.get("/console/overview").headers["location"] == "/console/login"
    assert browser.sign_in(email.lower(), "wrong password here").status_code == 401
    assert browser.sign_in(email, PASSWORD).status_code == 303
    assert browser.get("/console/overview").status_code == 200


def test_invites_from_the_cli_and_refusals(gateway: Gateway) -> None:
    account_id = gateway.account("1.00", name="cli-invite")
    email = f"cli-{secrets.token_hex(3)}@example.com"
    made = gateway.cli_json("accounts", "invite", account_id, "--email", email, "--base-url", gateway.url)
    link = made["data"]["link"]
    assert made["data"]["email"] == email and link.startswith(f"{gateway.url}/console/invite/")
    assert Browser(gateway).set_password(link).status_code == 303
    # The same email cannot belong to another account; an unknown account is a 404.
    other = gateway.account("0", name="other")
    taken = gateway.admin("POST", f"/accounts/{other}/invites", {"email": email})
    assert taken.status_code == 409
    assert gateway.admin("POST", "/accounts/acct_nope/invites", {"email": "x@example.com"}).status_code == 404
    assert gateway.admin("POST", f"/accounts/{other}/invites", {"email": "nope"}).status_code == 400
    failed = gateway.cli("accounts", "invite", "acct_nope", "--email", "a@example.com", check=False)
    assert failed.returncode == 1 and "no account" in failed.stderr


def test_forms_without_a_valid_csrf_token_are_refused(gateway: Gateway) -> None:
    account_id, _, browser = new_user(gateway)
    for token in (None, "forged-token-" + secrets.token_hex(8)):
        form = {"name": "sneaky"} if token is None else {"name": "sneaky", "csrf": token}
        refused = browser.post("/console/keys", form)
        assert refused.status_code == 403 and "security token" in refused.text
    assert gateway.admin("GET", f"/accounts/{account_id}/keys").json()["data"] == []
    # With the page's token the same form works.
    made = browser.post("/console/keys", {"name": "fine"}, csrf_from="/console/keys")
    assert made.status_code == 201 and "sk-nemo-v1-" in made.text
    # The sign-in form is protected too (double-submit token before a session exists).
    assert (
        Browser(gateway)
        .post("/console/login", {"mode": "user", "email": "a@b.c", "password": "x"})
        .status_code
        == 403
    )


def test_failed_sign_ins_are_throttled_per_email(gateway: Gateway) -> None:
    _, email, _ = new_user(gateway)
    browser = Browser(gateway)
    for _ in range(10):
        assert browser.sign_in(email, "not the password").status_code == 401
    throttled = browser.sign_in(email, PASSWORD)  # even the right password, for now
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1


def test_another_accounts_ids_are_not_found(gateway: Gateway) -> None:
    _, _, browser = new_user(gateway)
    other = gateway.account("1.00", name="victim")
    key = gateway.admin("POST", f"/accounts/{other}/keys", {"name": "theirs"}).json()
    client = gateway.openai(key["key"])
    done = client.chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    generation_id = done.headers["x-nemo-request-id"]
    assert browser.get(f"/console/activity/{generation_id}").status_code == 404
    for action in ("revoke", "disable", "rotate"):
        page = browser.post(f"/console/keys/{key['data']['id']}/{action}", {}, csrf_from="/console/keys")
        assert page.status_code == 404, action
    still = gateway.admin("GET", f"/keys/{key['data']['id']}").json()["data"]
    assert not still["revoked"] and not still["disabled"]
    assert browser.get("/console/activity/gen-nonexistent").status_code == 404
    theirs = gateway.admin("POST", f"/accounts/{other}/management-keys", {"name": "their-mgmt"}).json()
    path = f"/console/settings/management-keys/{theirs['data']['id']}/revoke"
    assert browser.post(path, {}, csrf_from="/console/settings").status_code == 404
    assert (
        httpx.get(f"{gateway.url}/v1/keys", headers={"Authorization": f"Bearer {theirs['key']}"}).status_code
        == 200
    )


def test_the_operator_signs_in_with_the_admin_token(gateway: Gateway) -> None:
    browser = Browser(gateway)
    assert browser.sign_in_operator("not-the-token").status_code == 401
    signed = browser.sign_in_operator(gateway.admin_token)
    assert signed.status_code == 303 and signed.headers["location"] == "/console/admin/accounts"
    account_id = gateway.account("0", name="granted")
    page = browser.get("/console/admin/accounts")
    assert page.status_code == 200 and account_id in page.text
    granted = browser.post(
        f"/console/admin/accounts/{account_id}/credits",
        {"amount": "12.345", "reason": "goodwill"},
        csrf_from="/console/admin/accounts",
    )
    assert granted.status_code == 303
    assert gateway.balance(account_id)["balance"] == pytest.approx(12.345)
    no_reason = browser.post(
        f"/console/admin/accounts/{account_id}/credits", {"amount": "1"}, csrf_from="/console/admin/accounts"
    )
    assert no_reason.status_code == 400
    # Customer pages are not the operator's, and the operator's are not a customer's.
    assert browser.get("/console/overview").headers["location"] == "/console/admin/accounts"
    _, _, customer = new_user(gateway)
    assert customer.get("/console/admin/providers").headers["location"] == "/console/overview"


def test_pages_carry_security_headers_and_static_files_are_ours(gateway: Gateway) -> None:
    _, _, browser = new_user(gateway)
    page = browser.get("/console/overview")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text and " style=" not in page.text and "<style" not in page.text
    css = browser.get("/console/static/console.css")
    assert css.status_code == 200 and css.headers["x-content-type-options"] == "nosniff"
    assert browser.get("/console/static/console.js").status_code == 200
    assert Browser(gateway).get("/").headers["location"] == "/console/"


def test_a_new_admin_token_ends_the_operators_sessions(tmp_path: Path) -> None:
    gw = new_gateway(tmp_path, None)
    gw.start()
    try:
        browser = Browser(gw)
        assert browser.sign_in_operator(gw.admin_token).status_code == 303
        assert browser.get("/console/admin/accounts").status_code == 200
        gw.stop()
        gw.admin_token = gw.env["NEMO_ADMIN_TOKEN"] = "test-admin-" + secrets.token_hex(8)
        gw.start()
        cookies = browser.http.cookies
        browser = Browser(gw)  # the new port; the same cookies (they do not depend on the port)
        browser.http.cookies = cookies
        assert browser.get("/console/admin/accounts").headers["location"] == "/console/login"
        assert browser.sign_in_operator(gw.admin_token).status_code == 303
        assert browser.get("/console/admin/accounts").status_code == 200
    finally:
        gw.stop()


def test_unknown_console_pages_are_html_404s(gateway: Gateway) -> None:
    page = Browser(gateway).get("/console/no/such/page")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")


def test_failed_sign_ins_are_throttled_per_address(tmp_path: Path) -> None:
    gw = new_gateway(tmp_path, None)  # its own gateway: this spends the loopback address's budget
    gw.start()
    try:
        browser = Browser(gw)
        statuses = []
        for i in range(45):  # a different email each time: only the address counts them all
            statuses.append(browser.sign_in(f"guess-{i}@example.com", "not the password").status_code)
            if statuses[-1] == 429:
                break
        # A burst of 30 (plus one per 2 s the attempts themselves took), then refused.
        assert statuses[-1] == 429 and 30 <= statuses.count(401) < 45
    finally:
        gw.stop()
