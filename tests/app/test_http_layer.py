"""The HTTP pieces the hot routes and the framework's share, each alone: the bounded body reader,
error rendering, and the authentication gate over the throttle (with a fake clock)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nemorouter.app.auth_gate import AuthGate, client_address
from nemorouter.app.error_replies import error_headers, error_json
from nemorouter.errors import AuthError, NemoError, PaymentRequired, RateLimited, RequestTooLarge
from nemorouter.frontdoors.anthropic_messages.serve import anthropic_error_body
from nemorouter.web.body import declared_length, receive_body
from nemorouter.web.throttle import AuthThrottle


def receiver(*messages: dict[str, Any]) -> Any:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    return receive


def part(body: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.request", "body": body, "more_body": more}


async def test_a_body_in_one_or_many_parts() -> None:
    assert await receive_body(receiver(part(b"abc")), b"3", 10) == b"abc"
    assert await receive_body(receiver(part(b"ab", True), part(b"", True), part(b"cd")), None, 4) == b"abcd"


async def test_a_body_over_the_limit_is_refused_before_it_is_read_whole() -> None:
    with pytest.raises(RequestTooLarge, match="limit of 4 bytes"):
        await receive_body(receiver(), b"5", 4)  # by its Content-Length: nothing read
    with pytest.raises(RequestTooLarge, match="limit of 4 bytes"):
        await receive_body(receiver(part(b"abc", True), part(b"de", True)), None, 4)  # a lying length
    with pytest.raises(RequestTooLarge, match="went away"):
        await receive_body(receiver(part(b"ab", True), {"type": "http.disconnect"}), b"4", 4)


def test_declared_length() -> None:
    assert declared_length([(b"host", b"x"), (b"content-length", b"12")]) == b"12"
    assert declared_length([(b"host", b"x")]) is None


def test_errors_render_in_the_contract_shape_or_the_doors() -> None:
    error = PaymentRequired("not enough credit", needed="0.01")
    assert json.loads(error_json(error)) == {
        "error": {
            "code": 402,
            "type": "insufficient_credits",
            "message": "not enough credit",
            "needed": "0.01",
        }
    }
    anthropic = json.loads(error_json(error, anthropic_error_body))
    assert anthropic["type"] == "error" and anthropic["error"]["type"] == "billing_error"


def test_error_headers_keep_the_errors_own_over_the_defaults() -> None:
    refused = RateLimited("slow down", retry_after=3)
    assert error_headers(refused, {"x-nemo-request-id": "gen-new"}) == {
        "x-nemo-request-id": "gen-new",
        "retry-after": "3",
    }
    failed = NemoError("upstream failed")
    failed.headers["x-nemo-request-id"] = "gen-held"  # the request whose hold was released
    assert error_headers(failed, {"x-nemo-request-id": "gen-new"}) == {"x-nemo-request-id": "gen-held"}
    assert error_headers(refused) == {"retry-after": "3"} and error_headers(refused) is not refused.headers


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def scope(*headers: tuple[bytes, bytes], client: tuple[str, int] | None = ("10.0.0.1", 5)) -> dict[str, Any]:
    return {"type": "http", "headers": list(headers), "client": client}


def test_the_gate_counts_401s_and_refuses_only_requests_with_credentials() -> None:
    clock = Clock()
    gate = AuthGate(AuthThrottle(per_minute=2, clock=clock))  # 2 failures in a burst, then one every 30 s
    with_key = scope((b"authorization", b"Bearer sk-nemo-x"))
    address = client_address(with_key)
    for status in (200, 402, 403, 429, 500):
        gate.answered(address, status)
    assert gate.refusal(with_key, address) is None  # only a failed authentication counts
    gate.answered(address, 401)
    assert gate.refusal(with_key, address) is None  # within the burst
    gate.answered(address, 401)
    refused = gate.refusal(with_key, address)
    assert isinstance(refused, RateLimited) and refused.status == 429
    assert refused.headers["retry-after"] == "30"
    assert gate.refusal(scope((b"x-api-key", b"sk-nemo-x")), address) is not None
    assert gate.refusal(scope((b"host", b"x")), address) is None  # no credentials: nothing to guess
    assert gate.refusal(with_key, "10.0.0.2") is None  # another address
    clock.now += 30
    assert gate.refusal(with_key, address) is None  # drained
    assert client_address(scope(client=None)) == "unknown"


async def test_the_gate_watches_a_framework_response() -> None:
    clock = Clock()
    gate = AuthGate(AuthThrottle(per_minute=1, clock=clock))
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    watched = gate.watching(send, "10.0.0.3")
    start = {"type": "http.response.start", "status": AuthError.status, "headers": []}
    for _ in range(2):
        await watched(start)
        await watched({"type": "http.response.body", "body": b"{}"})
    assert len(sent) == 4  # passed on unchanged
    assert gate.refusal(scope((b"authorization", b"Bearer x")), "10.0.0.3") is not None
