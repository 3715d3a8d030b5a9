"""Alerts out: signed Standard Webhooks for credits.low, key.limit_reached, key.revoked and
key.leaked (and the operator's provider_key.quarantined), delivered from a durable outbox:
retried with the same webhook-id until a 2xx, across a receiver outage and a gateway restart,
and never sent again once acknowledged.

The receiver is a plain HTTP server on loopback in this process; signatures are checked here
from the Standard Webhooks specification (HMAC-SHA256 of `id.timestamp.body` under the
base64-decoded secret after `whsec_`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Gateway, Sim, free_port, new_gateway, wait_until

# The receiver is on loopback, which customers' webhooks may not reach unless the operator allows
# it (service/alerting/destinations.py; tests/adversarial/test_webhook_destinations.py).
FAST_RETRIES = {
    "NEMO_ALERT_RETRY_BASE": "0.2",
    "NEMO_ALERT_RETRY_CAP": "1",
    "NEMO_WEBHOOKS_ALLOW_PRIVATE": "true",
}
OPERATOR_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def event(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.body)
        return found


class Receiver:
    """Records every POST; answers 500 to the first `fail_first`, then 200."""

    def __init__(self, port: int | None = None, fail_first: int = 0) -> None:
        self.port = port or free_port()
        self.fail_first = fail_first
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver._lock:
                    status = 500 if receiver.fail_first > 0 else 200
                    receiver.fail_first -= status == 500
                    receiver.deliveries.append(
                        Delivery(self.path, {k.lower(): v for k, v in self.headers.items()}, body, status)
                    )
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def all(self, path: str | None = None, type: str | None = None) -> list[Delivery]:
        with self._lock:
            found = list(self.deliveries)
        return [
            d for d in found if (path is None or d.path == path) and (type is None or d.event["type"] == type)
        ]

    def acknowledged(self, path: str | None = None, type: str | None = None) -> list[Delivery]:
        return [d for d in self.all(path, type) if 200 <= d.status < 300]


def check_signature(secret: str, delivery: Delivery) -> None:
    """Standard Webhooks: `v1,` + base64(HMAC-SHA256(b64decode(secret after whsec_), id.ts.body))."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id, stamp = delivery.headers["webhook-id"], delivery.headers["webhook-timestamp"]
    expected = hmac.new(key, f"{msg_id}.{stamp}.".encode() + delivery.body, hashlib.sha256).digest()
    offered = [
        base64.b64decode(sig.split(",", 1)[1])
        for sig in delivery.headers["webhook-signature"].split(" ")
        if sig.startswith("v1,")
    ]
    assert any(hmac.compare_digest(expected, sig) for sig in offered), delivery
    assert abs(int(stamp) - time.time()) < 300


def management(gw: Gateway, account: str) -> httpx.Client:
    return httpx.Client(
        base_url=gw.url, headers={"Authorization": f"Bearer {gw.management_key(account)}"}, timeout=30
    )


def chat(gw: Gateway, key: str, model: str = "openai/gpt-4o-mini", content: str = "hello") -> httpx.Response:
    return httpx.post(
        f"{gw.url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": content}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def key_id(gw: Gateway, secret: str) -> str:
    found: str = httpx.get(f"{gw.url}/v1/key", headers={"Authorization": f"Bearer {secret}"}).json()["data"][
        "id"
    ]
    return found


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sim: Sim, receiver: Receiver) -> Iterator[Gateway]:
    gateway = new_gateway(tmp_path_factory.mktemp("alerts"), sim)
    gateway.env.update(
        FAST_RETRIES,
        NEMO_OPERATOR_ALERT_URL=receiver.url("/operator"),
        NEMO_OPERATOR_ALERT_SECRET=OPERATOR_SECRET,
    )
    gateway.start()
    yield gateway
    assert gateway.stop() == 0


def subscribe(gw: Gateway, account: str, url: str, threshold: str | None = None) -> tuple[httpx.Client, str]:
    client = management(gw, account)
    answer = client.put("/v1/alerts", json={"url": url, "low_balance_threshold": threshold})
    assert answer.status_code == 200, answer.text
    secret: str = answer.json()["signing_secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    return client, secret


def test_every_event_arrives_once_signed(gw: Gateway, receiver: Receiver) -> None:
    account = gw.account("1.00")
    path = f"/hooks/{account}"
    client, secret = subscribe(gw, account, receiver.url(path), "1.00")
    # credits.low: the balance is at the threshold, then one request takes it below.
    key = gw.key(account)
    assert chat(gw, key).status_code == 200
    assert wait_until(lambda: receiver.acknowledged(path, "credits.low"), timeout=5)
    low = receiver.acknowledged(path, "credits.low")[0].event
    assert low["data"]["account_id"] == account and low["data"]["low_balance_threshold"] == 1
    assert 0 < low["data"]["balance"] < 1
    # key.limit_reached: a 402 for the key's limit (twice: one alert).
    capped = gw.key(account, limit="0.000001")
    for _ in range(2):
        refused = chat(gw, capped)
        assert refused.status_code == 402 and refused.json()["error"]["type"] == "key_limit_exceeded"
    assert wait_until(lambda: receiver.acknowledged(path, "key.limit_reached"), timeout=5)
    reached = receiver.acknowledged(path, "key.limit_reached")[0].event["data"]
    assert reached["key_id"] == key_id(gw, capped) and reached["limit"] == 0.000001
    # key.revoked by the API; key.leaked (+ key.revoked) by a leak report.
    revoked_id = key_id(gw, gw.key(account))
    assert client.delete(f"/v1/keys/{revoked_id}").status_code == 200
    leaked = gw.key(account)
    leaked_id = key_id(gw, leaked)
    report = httpx.post(
        f"{gw.url}/v1/leaks", json={"items": [{"token": leaked, "url": "https://x.example/a"}]}
    )
    assert report.status_code == 202
    assert wait_until(lambda: len(receiver.acknowledged(path)) == 5, timeout=5)
    time.sleep(1.5)  # a second request over the threshold, the second 402: nothing more comes
    assert chat(gw, key).status_code == 200
    time.sleep(1.5)
    got = receiver.acknowledged(path)
    assert sorted(d.event["type"] for d in got) == [
        "credits.low",
        "key.leaked",
        "key.limit_reached",
        "key.revoked",
        "key.revoked",
    ]
    assert len({d.headers["webhook-id"] for d in got}) == 5
    causes = {
        d.event["data"]["key_id"]: d.event["data"]["cause"] for d in got if d.event["type"] == "key.revoked"
    }
    assert causes == {revoked_id: "api", leaked_id: "leak"}
    (leak,) = [d.event["data"] for d in got if d.event["type"] == "key.leaked"]
    assert leak["key_id"] == leaked_id and leak["url"] == "https://x.example/a"
    for delivery in got:
        check_signature(secret, delivery)
        assert delivery.headers["content-type"] == "application/json"
        assert delivery.event["timestamp"].endswith("Z")
    states = client.get("/v1/alerts").json()["data"]
    assert states["url"] == receiver.url(path) and states["low_balance"] is True
    assert {r["status"] for r in states["recent"]} == {"delivered"}


def test_the_secret_is_shown_once_and_kept_sealed(gw: Gateway, receiver: Receiver) -> None:
    account = gw.account("1.00")
    client, secret = subscribe(gw, account, receiver.url("/first"))
    again = client.put("/v1/alerts", json={"url": receiver.url(f"/second/{account}")})
    assert again.status_code == 200
    assert "signing_secret" not in again.json() and again.json()["url"] == receiver.url(f"/second/{account}")
    assert again.json()["low_balance_threshold"] is None
    # Still signed with the first secret, to the new URL.
    key = gw.key(account)
    assert client.delete(f"/v1/keys/{key_id(gw, key)}").status_code == 200
    assert wait_until(lambda: receiver.acknowledged(f"/second/{account}"), timeout=5)
    check_signature(secret, receiver.acknowledged(f"/second/{account}")[0])
    stored = b"".join(p.read_bytes() for p in gw.data_dir.glob("nemorouter.db*"))
    assert secret.encode() not in stored and secret[6:].encode() not in stored


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://example.com/x"},
        {"url": 5},
        {},
        {"url": "https://example.com", "low_balance_threshold": "-1"},
        {"url": "https://example.com", "other": 1},
    ],
)
def test_bad_alert_settings_are_400(gw: Gateway, body: dict[str, Any]) -> None:
    client = management(gw, gw.account("1.00"))
    answer = client.put("/v1/alerts", json=body)
    assert answer.status_code == 400 and answer.json()["error"]["type"] == "invalid_request"
    assert client.get("/v1/alerts").status_code == 404


def test_a_quarantined_provider_key_alerts_the_operator(gw: Gateway, receiver: Receiver, sim: Sim) -> None:
    assert (
        gw.admin(
            "POST", "/providers", {"name": "flaky", "kind": "openai", "base_url": f"{sim.url}/v1"}
        ).status_code
        == 201
    )
    added = gw.admin(
        "POST", "/providers/flaky/keys", {"secret": "sk-flaky-" + secrets.token_hex(8), "label": "bad"}
    )
    assert added.status_code == 201
    model = {
        "id": "test/flaky",
        "name": "flaky",
        "context_length": 8000,
        "max_output": 100,
        "pricing": {"input": "1", "output": "1"},
        "deployments": [{"provider": "flaky", "upstream_model": "gpt-4o-mini"}],
    }
    assert gw.admin("POST", "/models", model).status_code == 201
    account = gw.account("1.00")
    assert chat(gw, gw.key(account), "test/flaky", "hi [sim:status=401]").status_code >= 400
    assert wait_until(lambda: receiver.acknowledged("/operator", "provider_key.quarantined"), timeout=5)
    (alert,) = receiver.acknowledged("/operator", "provider_key.quarantined")
    check_signature(OPERATOR_SECRET, alert)
    data = alert.event["data"]
    assert data["provider"] == "flaky" and data["provider_key_id"] == added.json()["data"]["id"]
    assert b"sk-flaky" not in alert.body


def test_an_operator_overrun_alerts_the_operator(gw: Gateway, receiver: Receiver) -> None:
    """A provider reporting 10M output tokens for max_tokens 10: the customer pays within the hold,
    the operator hears about the difference, once, signed."""
    account = gw.account("1.00")
    answer = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json={
            "model": "openai/gpt-4o",
            "messages": [{"role": "user", "content": "hi [sim:report_output=10000000]"}],
            "max_tokens": 10,
        },
        headers={"Authorization": f"Bearer {gw.key(account)}"},
    )
    assert answer.status_code == 200, answer.text
    request_id = answer.headers["x-nemo-request-id"]

    def arrived() -> list[Any]:
        return [
            a
            for a in receiver.acknowledged("/operator", "provider.overrun")
            if a.event["data"]["request_id"] == request_id
        ]

    assert wait_until(arrived, timeout=5)
    (alert,) = arrived()
    check_signature(OPERATOR_SECRET, alert)
    data = alert.event["data"]
    assert data["provider"] == "sim" and data["reason"] == "10000000 output tokens reported for a limit of 10"
    charged = json.loads(answer.text, parse_float=Decimal)["usage"]["cost"]
    assert Decimal(str(data["charged"])) == charged
    assert Decimal(str(data["reported_cost"])) > Decimal(100)  # 10M tokens at $10/1M
    assert Decimal(str(data["overrun"])) == Decimal(str(data["reported_cost"])) - charged


def test_an_alert_survives_a_receiver_outage_and_a_restart(tmp_path: Path, sim: Sim) -> None:
    gw = new_gateway(tmp_path, sim)
    gw.env.update(FAST_RETRIES)
    receiver = Receiver(fail_first=1)  # down at first; once up, its first answer is a 500
    gw.start()
    try:
        account = gw.account("1.00")
        client, secret = subscribe(gw, account, receiver.url("/hook"))
        key = gw.key(account)
        assert client.delete(f"/v1/keys/{key_id(gw, key)}").status_code == 200

        def attempts() -> int:
            recent = client.get("/v1/alerts").json()["data"]["recent"]
            return int(recent[0]["attempts"]) if recent else 0

        assert wait_until(lambda: attempts() >= 3, timeout=10)  # refused, retried, refused again
        assert client.get("/v1/alerts").json()["data"]["recent"][0]["status"] == "pending"
    finally:
        assert gw.stop() == 0
    receiver.start()
    gw.start()
    try:
        assert wait_until(lambda: receiver.acknowledged("/hook"), timeout=10)
        time.sleep(2)  # several retry periods: an acknowledged alert is not sent again
        seen = receiver.all("/hook")
        assert [d.status for d in seen] == [500, 200]
        assert len({d.headers["webhook-id"] for d in seen}) == 1
        assert seen[0].body == seen[1].body
        for delivery in seen:
            check_signature(secret, delivery)
        assert seen[1].event["type"] == "key.revoked" and seen[1].event["data"]["account_id"] == account
        recent = management(gw, account).get("/v1/alerts").json()["data"]["recent"]
        assert recent[0]["status"] == "delivered" and recent[0]["attempts"] >= 5
    finally:
        assert gw.stop() == 0
        receiver.stop()
