"""A leaked key reported by a secret scanner is revoked at once; the reporter learns nothing."""

from __future__ import annotations

import secrets
import string
from pathlib import Path

import httpx

from conftest import Gateway, new_gateway
from nemorouter.service.keyformat import new_key

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def _noise(count: int) -> list[dict[str, str]]:
    """Random strings, some of them well-formed keys that belong to no one."""
    alphabet = string.ascii_letters + string.digits
    items = [{"token": "".join(secrets.choice(alphabet) for _ in range(40))} for _ in range(count // 2)]
    items += [{"token": new_key("inference")} for _ in range(count - len(items))]
    return items


def _chat(gateway: Gateway, key: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"}
    )


def test_a_key_among_1000_strings_is_revoked_within_one_request(gateway: Gateway) -> None:
    account = gateway.account("1.00")
    key = gateway.key(account)
    assert _chat(gateway, key).status_code == 200
    items = _noise(1000)
    items.insert(
        437, {"token": key, "url": "https://github.com/acme/app/blob/main/.env", "source": "scanner"}
    )
    report = httpx.post(f"{gateway.url}/v1/leaks", json={"items": items}, timeout=30)
    assert report.status_code == 202
    assert report.json() == {"received": 1001}
    refused = _chat(gateway, key)
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "key_revoked"
    events = httpx.get(
        f"{gateway.url}/v1/leaks", headers={"Authorization": f"Bearer {gateway.management_key(account)}"}
    ).json()["data"]
    assert len(events) == 1
    assert (
        events[0]["url"] == "https://github.com/acme/app/blob/main/.env" and events[0]["source"] == "scanner"
    )
    assert gateway.verify()["ok"] is True


def test_the_answer_is_the_same_for_real_and_fake_strings(gateway: Gateway) -> None:
    real = gateway.key(gateway.account("1.00"))
    fake = new_key("inference")
    answers = [
        httpx.post(f"{gateway.url}/v1/leaks", json={"items": [{"token": token}]})
        for token in (real, fake, "nope")
    ]
    assert {(a.status_code, a.text) for a in answers} == {(202, '{"received":1}')}
    assert _chat(gateway, real).status_code == 401


def test_other_accounts_see_no_leak_events(gateway: Gateway) -> None:
    mine, theirs = gateway.account("1.00"), gateway.account("1.00")
    httpx.post(f"{gateway.url}/v1/leaks", json={"items": [{"token": gateway.key(theirs)}]})
    seen = httpx.get(
        f"{gateway.url}/v1/leaks", headers={"Authorization": f"Bearer {gateway.management_key(mine)}"}
    )
    assert seen.status_code == 200 and seen.json()["data"] == []


def test_malformed_reports_are_400(gateway: Gateway) -> None:
    for body in (
        b"not json",
        b"[]",
        b'{"items": "x"}',
        b'{"items": [{"url": "x"}]}',
        b'{"items": [{"token": 5}]}',
    ):
        answer = httpx.post(
            f"{gateway.url}/v1/leaks", content=body, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 400, body
        assert answer.json()["error"]["type"] == "invalid_request"


def test_reports_are_rate_limited_per_address(tmp_path: Path) -> None:
    gw = new_gateway(tmp_path, None)
    gw.start()
    try:
        # One client, kept alive: the 31 reports must all land within the bucket's 2 s interval
        # (a new client per request costs its TLS context, and on a busy machine that adds up).
        with httpx.Client(base_url=gw.url) as client:
            answers = [client.post("/v1/leaks", json={"items": []}) for _ in range(31)]
        assert [a.status_code for a in answers[:30]] == [202] * 30
        assert answers[30].status_code == 429
        assert int(answers[30].headers["retry-after"]) >= 1
    finally:
        assert gw.stop() == 0
