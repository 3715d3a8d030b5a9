"""Security headers on every response (app/headers.py), the hot routes' too, the CSP on HTML, and
the served API docs page (/docs: the OpenAPI document as plain HTML, nothing loaded from elsewhere)."""

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
    assert "server" not in resp.headers, resp.request.url  # the server software is not advertised


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


SECURITY = ("x-content-type-options", "referrer-policy", "content-security-policy", "x-frame-options")


def security_of(resp: httpx.Response) -> dict[str, str]:
    return {name: resp.headers[name] for name in SECURITY if name in resp.headers}


def test_the_hot_routes_send_the_framework_routes_headers(gateway: Gateway) -> None:
    """The front doors' routes (app/fast.py) skip the middleware but not its headers: every
    answer of theirs (JSON, stream, contract error, Anthropic error) carries exactly what a
    framework JSON answer does."""
    key = gateway.key(gateway.account("1.00", name="fast"))
    auth = {"Authorization": f"Bearer {key}"}
    chat = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    framework = security_of(httpx.get(f"{gateway.url}/v1/models"))
    assert framework == {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}
    assert security_of(httpx.get(f"{gateway.url}/v1/credits")) == framework  # a framework error

    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        answers = [
            client.post("/v1/chat/completions", json=chat, headers=auth),
            client.post("/v1/chat/completions", json={**chat, "messages": []}, headers=auth),  # 400
            client.post("/v1/chat/completions", json=chat),  # 401
            client.post("/v1/embeddings", json={"model": "openai/gpt-4o-mini"}, headers=auth),  # 400
            client.post("/v1/messages", json={"model": "openai/gpt-4o-mini"}, headers={"x-api-key": key}),
        ]
        with client.stream(
            "POST", "/v1/chat/completions", json={**chat, "stream": True}, headers=auth
        ) as streamed:
            assert streamed.status_code == 200 and streamed.headers["content-type"].startswith(
                "text/event-stream"
            )
            streamed.read()
            answers.append(streamed)
    assert [a.status_code for a in answers] == [200, 400, 401, 400, 400, 200]
    assert answers[4].json()["type"] == "error"  # the Messages door's own error shape
    for resp in answers:
        assert security_of(resp) == framework, resp.request.url
