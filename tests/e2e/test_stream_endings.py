"""Streams that end early still settle exactly once: client gone, provider error mid-stream, cut connection."""

from __future__ import annotations

import json
import socket
import time
from decimal import Decimal

import httpx

from conftest import Gateway, wait_until


def _post_stream(gateway: Gateway, key: str, content: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={
            "model": "openai/gpt-4o-mini",
            "stream": True,
            "messages": [{"role": "user", "content": content}],
        },
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def _record(gateway: Gateway, key: str, request_id: str) -> dict:
    response = httpx.get(
        f"{gateway.url}/v1/generation", params={"id": request_id}, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_provider_error_mid_stream_is_sent_in_the_stream_and_output_is_charged(gateway: Gateway) -> None:
    account = gateway.account("1.00")
    key = gateway.key(account)
    response = _post_stream(gateway, key, "Fail after a few words [sim:tokens=20,error_after=4]")
    assert response.status_code == 200
    frames = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert "[DONE]" not in frames  # CONTRACT: after a stream has started, an error is the final chunk
    chunks = [json.loads(f, parse_float=Decimal) for f in frames]
    errors = [c for c in chunks if "error" in c]
    assert errors == [chunks[-1]] and errors[0]["choices"][0]["finish_reason"] == "error"
    assert errors[0]["error"]["type"] == "upstream_error"
    usage = chunks[-2]["usage"]  # the usage chunk comes just before the error, so SDKs see it
    assert chunks[-2]["choices"] == []
    assert usage["completion_tokens"] == 4  # four words reached the client, no usage came from the provider
    record = _record(gateway, key, response.headers["x-nemo-request-id"])
    assert record["status"] == "partial" and record["finish_reason"] == "error"
    assert Decimal(str(record["total_cost"])) == usage["cost"] > 0
    assert Decimal(str(gateway.balance(account)["total_usage"])) == usage["cost"]
    assert gateway.verify()["ok"] is True


def test_client_disconnect_mid_stream_settles_what_was_generated(gateway: Gateway) -> None:
    account = gateway.account("1.00")
    key = gateway.key(account)
    body = json.dumps(
        {
            "model": "openai/gpt-4o-mini",
            "stream": True,
            "messages": [{"role": "user", "content": "Talk slowly [sim:tokens=200,chunk_delay_ms=20]"}],
        }
    ).encode()
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(request)
        received = b""
        while received.count(b"data: ") < 5:
            received += sock.recv(65536)
    head = received.split(b"\r\n\r\n", 1)[0].decode()
    request_id = next(
        line.split(": ", 1)[1] for line in head.splitlines() if line.startswith("x-nemo-request-id")
    )

    def settled() -> bool:
        return _record(gateway, key, request_id)["status"] != "pending"

    assert wait_until(settled, timeout=10)
    record = _record(gateway, key, request_id)
    assert record["cancelled"] is True and record["status"] == "cancelled"
    assert 0 < record["tokens"]["completion"] < 200
    time.sleep(0.1)
    balance = gateway.balance(account)
    assert balance["held"] == 0
    assert Decimal(str(balance["total_usage"])) == Decimal(str(record["total_cost"]))
    assert gateway.verify()["ok"] is True


def test_a_stream_that_fails_before_any_output_is_an_http_error_and_free(gateway: Gateway) -> None:
    account = gateway.account("1.00")
    key = gateway.key(account)
    response = _post_stream(gateway, key, "no luck [sim:status=503]")
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "upstream_error"
    balance = gateway.balance(account)
    assert balance["total_usage"] == 0 and balance["held"] == 0
    assert gateway.verify()["ok"] is True
