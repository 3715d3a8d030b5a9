"""CORS on the public API over real HTTP, and a page on another origin in headless Chromium
calling the gateway with a bearer key (app/cors.py)."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from conftest import Gateway, Sim, new_gateway

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
ASKED = "authorization, content-type, x-api-key, anthropic-version, anthropic-beta, x-stainless-os"


def preflight(gw: Gateway, path: str, origin: str = "https://app.example") -> httpx.Response:
    return httpx.options(
        f"{gw.url}{path}",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": ASKED,
        },
    )


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/models", "/v1/key"])
def test_a_preflight_is_answered_without_a_key(gateway: Gateway, path: str) -> None:
    answer = preflight(gateway, path)
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "POST" in answer.headers["access-control-allow-methods"]
    assert answer.headers["access-control-allow-headers"] == ASKED
    assert int(answer.headers["access-control-max-age"]) > 0
    assert "access-control-allow-credentials" not in answer.headers


def test_answers_name_the_origin_and_expose_the_gateways_headers(gateway: Gateway) -> None:
    key = gateway.key(gateway.account("1.00"))
    answer = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json=CHAT,
        headers={"Authorization": f"Bearer {key}", "Origin": "https://app.example"},
        timeout=30,
    )
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "*"
    exposed = answer.headers["access-control-expose-headers"]
    for name in ("x-nemo-request-id", "x-nemo-cost", "x-ratelimit-remaining-requests"):
        assert name in exposed
    refused = httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT, headers={"Origin": "https://a.b"})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == "*"
    listed = httpx.get(f"{gateway.url}/v1/models", headers={"Origin": "https://a.b"})
    assert listed.headers["access-control-allow-origin"] == "*"


def test_no_origin_no_cors_headers_and_never_on_admin_or_console(gateway: Gateway) -> None:
    plain = httpx.get(f"{gateway.url}/v1/models")
    assert not any(name.startswith("access-control-") for name in plain.headers)
    for path in ("/admin/v1/models", "/console/login", "/healthz"):
        asked = preflight(gateway, path)
        assert "access-control-allow-origin" not in asked.headers, path
        assert asked.status_code != 204, path
        answered = httpx.get(f"{gateway.url}{path}", headers={"Origin": "https://app.example"})
        assert "access-control-allow-origin" not in answered.headers, path


@pytest.fixture(scope="module")
def listed_origins(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gw = new_gateway(tmp_path_factory.mktemp("cors"), sim)
    gw.env["NEMO_CORS_ORIGINS"] = "https://app.example, http://localhost:3000"
    gw.start()
    yield gw
    assert gw.stop() == 0


def test_a_listed_origin_is_echoed_with_vary_and_another_is_not(listed_origins: Gateway) -> None:
    allowed = preflight(listed_origins, "/v1/chat/completions", "http://localhost:3000")
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "origin" in allowed.headers["vary"].lower()
    other = preflight(listed_origins, "/v1/chat/completions", "https://evil.example")
    assert "access-control-allow-origin" not in other.headers
    answer = httpx.get(f"{listed_origins.url}/v1/models", headers={"Origin": "https://app.example"})
    assert answer.headers["access-control-allow-origin"] == "https://app.example"
    assert answer.headers["vary"].lower() == "origin"
    stranger = httpx.get(f"{listed_origins.url}/v1/models", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in stranger.headers


# -- a real browser ---------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def other_origin(tmp_path: Path) -> Iterator[str]:
    """A page served from another port of loopback: another origin than the gateway's."""
    (tmp_path / "index.html").write_text("<!doctype html><title>app</title><p>app</p>")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(
    shutil.which(CHROMIUM) is None and not os.environ.get("CI"), reason="Debian's chromium is not installed"
)
def test_a_page_on_another_origin_calls_the_gateway_with_a_bearer_key(
    gateway: Gateway, other_origin: str
) -> None:
    from playwright import sync_api

    key = gateway.key(gateway.account("1.00"))
    script = """async ([url, key, body]) => {
        const r = await fetch(url + "/v1/chat/completions", {method: "POST",
            headers: {"Authorization": "Bearer " + key, "Content-Type": "application/json",
                      "x-stainless-lang": "js"},
            body: JSON.stringify(body)});
        const json = await r.json();
        return {status: r.status, cost: r.headers.get("x-nemo-cost"), content: json.choices[0].message.content};
    }"""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto(other_origin + "/index.html")
            result = page.evaluate(script, [gateway.url, key, CHAT])
        finally:
            browser.close()
    assert result["status"] == 200
    assert result["content"]
    assert result["cost"] is not None  # an exposed header: readable by the page


@pytest.mark.skipif(
    shutil.which(CHROMIUM) is None and not os.environ.get("CI"), reason="Debian's chromium is not installed"
)
def test_a_page_on_an_origin_not_listed_is_blocked_by_the_browser(
    listed_origins: Gateway, other_origin: str
) -> None:
    from playwright import sync_api

    script = """async (url) => {
        try { await fetch(url + "/v1/models"); return "read"; } catch (e) { return "blocked"; }
    }"""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto(other_origin + "/index.html")
            outcome = page.evaluate(script, listed_origins.url)
        finally:
            browser.close()
    assert outcome == "blocked"
