"""Security headers on every non-inference response (app/headers.py), the CSP on HTML, and the
served API docs page (/docs: the OpenAPI document as plain HTML, nothing loaded from elsewhere)."""

from __future__ import annotations

import base64
import hashlib
import html
import re

import httpx

from conftest import Gateway
from nemorouter.app.headers import CSP


def assert_common(resp: httpx.Response) -> None:
    assert resp.headers["x-content-type-options"] == "nosniff", resp.request.url
    assert resp.headers["referrer-policy"] == "no-referrer", resp.request.url


def test_every_framework_response_carries_the_headers(gateway: Gateway) -> None:
    account = gateway.account("1.00", name="headers")
    mgmt = gateway.management_key(account)
    answers = [
        httpx.get(f"{gateway.url}/healthz"),
        httpx.get(f"{gateway.url}/readyz"),
        httpx.get(f"{gateway.url}/openapi.json"),
        httpx.get(f"{gateway.url}/metrics"),
        httpx.get(f"{gateway.url}/v1/models"),
        httpx.get(f"{gateway.url}/v1/credits", headers={"Authorization": f"Bearer {mgmt}"}),
        httpx.get(f"{gateway.url}/v1/credits"),  # 401
        httpx.get(f"{gateway.url}/admin/v1/accounts"),  # 401
        httpx.get(f"{gateway.url}/nowhere"),  # 404
        httpx.delete(f"{gateway.url}/v1/credits"),  # 405
        gateway.admin("GET", f"/accounts/{account}"),
    ]
    for resp in answers:
        assert_common(resp)
        if not resp.headers["content-type"].startswith("text/html"):
            assert "content-security-policy" not in resp.headers


def test_html_gets_the_csp_and_no_framing(gateway: Gateway) -> None:
    docs = httpx.get(f"{gateway.url}/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert_common(docs)
    assert docs.headers["content-security-policy"] == CSP
    assert docs.headers["x-frame-options"] == "DENY"


def test_the_docs_page_lists_every_operation_and_loads_nothing(gateway: Gateway) -> None:
    page = httpx.get(f"{gateway.url}/docs").text
    document = httpx.get(f"{gateway.url}/openapi.json").json()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            row = f"<code>{method.upper()}</code></td><td><code>{path}</code>"
            assert row in page, (method, path)
            assert html.escape(operation["summary"]) in page
    lowered = page.lower()
    assert "<script" not in lowered and "<style" not in lowered and " style=" not in lowered
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", lowered)  # nothing from another host


def test_a_statement_page_allows_exactly_its_own_stylesheet(gateway: Gateway) -> None:
    account = gateway.account("1.00", name="statement-csp")
    mgmt = gateway.management_key(account)
    resp = httpx.get(
        f"{gateway.url}/v1/statements/2026-01",
        params={"format": "html"},
        headers={"Authorization": f"Bearer {mgmt}"},
    )
    assert resp.status_code == 200, resp.text
    assert_common(resp)
    policy = resp.headers["content-security-policy"]
    assert policy.startswith(CSP + "; style-src 'sha256-")
    styles = re.findall(r"<style>(.*?)</style>", resp.text, re.S)
    assert len(styles) == 1
    digest = base64.b64encode(hashlib.sha256(styles[0].encode()).digest()).decode()
    assert policy.endswith(f"style-src 'sha256-{digest}'")
    assert "<script" not in resp.text.lower()


def test_the_hot_inference_routes_are_left_alone(gateway: Gateway) -> None:
    """The fast path (app/fast.py) does not pass through the middleware: no cost there."""
    account = gateway.account("1.00", name="fast")
    resp = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {gateway.key(account)}"},
        timeout=30,
    )
    assert resp.status_code == 200
    assert "x-content-type-options" not in resp.headers
