"""The hard cap on the native Responses path (issue 24 scope 1): the official `openai` SDK's
`client.responses` -> the gateway -> an OpenAI provider flagged `responses_api` -> the sim's
`POST /v1/responses`, lying about usage (`[sim:usage_scale=10]`, absurd counts: docs/simulator.md),
failing mid-stream, or left by its client after the first event.

Whatever the upstream reports, a request is charged at most the hold admitted for it (the operator
eats the rest as a listed overrun; output is believed up to the limit sent, no further); an unreadable report is billed an estimate within the hold; a
stream the client leaves after the first byte pays at least the prompt; the key and the account
stay within their limits to the pico-dollar and `ledger verify` stays ok.
"""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from conftest import SIM_PROVIDER_SECRET, Gateway, Sim, new_gateway, wait_until

GPT = "openai/gpt-4o-mini"
GPT_IN = Decimal("0.15")  # USD per 1M input tokens, the bundled list price
M = Decimal(10**6)
LIMIT = Decimal("0.05")
STREAM = pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
ABSURD = [
    "report_output=" + str(10**30),
    "report_prompt=" + str(10**30),
    "bad_usage=negative",
    "bad_prompt=negative",
    "bad_usage=float",
    "bad_usage=string",
    "report_output=" + str(2**63 - 1),
]


@dataclass
class Tenant:
    account: str
    key: str
    key_id: str


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gateway = new_gateway(tmp_path_factory.mktemp("responses-native-cap"), sim=None)
    gateway.start()
    added = gateway.admin(
        "POST",
        "/providers",
        {"name": "oai", "kind": "openai", "base_url": f"{sim.url}/v1", "config": {"responses_api": True}},
    )
    assert added.status_code == 201, added.text
    keyed = gateway.admin("POST", "/providers/oai/keys", {"secret": SIM_PROVIDER_SECRET, "label": "main"})
    assert keyed.status_code == 201, keyed.text
    imported = gateway.admin("POST", "/models/import", {"vendor": "openai", "provider": "oai"})
    assert imported.status_code in (200, 201), imported.text
    yield gateway
    assert gateway.stop() == 0


def exact(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


def tenant(gw: Gateway, credits: str, limit: Decimal | None = None) -> Tenant:
    account = gw.account(credits)
    fields = {"name": "test"} | ({"limit": f"{limit:f}"} if limit is not None else {})
    created = gw.admin("POST", f"/accounts/{account}/keys", fields)
    assert created.status_code == 201, created.text
    return Tenant(account, created.json()["key"], created.json()["data"]["id"])


def request(directive: str, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": GPT,
        "input": f"[sim:tokens=50,{directive}] Tell me a long story. {secrets.token_hex(3)}",
        "max_output_tokens": 16,
    }
    return body | ({"stream": True} if stream else {})


def hold_of(gw: Gateway, body: dict[str, Any]) -> Decimal:
    probe = tenant(gw, "1.00", Decimal("0.000000000001"))
    refused = httpx.post(
        f"{gw.url}/v1/responses", json=body, headers={"Authorization": f"Bearer {probe.key}"}
    )
    assert refused.status_code == 402, refused.text
    needed: Decimal = exact(refused.text)["error"]["needed"]
    assert needed > 0
    return needed


def send(gw: Gateway, key: str, body: dict[str, Any]) -> tuple[int, str]:
    """One request through the SDK, a stream read to its end; (status, request id)."""
    with gw.openai(key, timeout=20) as client:
        try:
            raw = client.responses.with_raw_response.create(**body)
        except openai.APIStatusError as exc:
            return exc.status_code, exc.response.headers["x-nemo-request-id"]
        parsed = raw.parse()
        if body.get("stream"):
            for _ in parsed:
                pass
        return raw.status_code, raw.headers["x-nemo-request-id"]


def generation(gw: Gateway, key: str, request_id: str) -> dict[str, Any]:
    def fetch() -> dict[str, Any]:
        found = httpx.get(
            f"{gw.url}/v1/generation", params={"id": request_id}, headers={"Authorization": f"Bearer {key}"}
        )
        assert found.status_code == 200, found.text
        data: dict[str, Any] = exact(found.text)["data"]
        return data

    assert wait_until(lambda: fetch()["status"] != "pending", timeout=15)
    return fetch()


def assert_within_caps(gw: Gateway, who: Tenant) -> Decimal:
    assert wait_until(lambda: gw.balance(who.account)["held"] == 0, timeout=10), "a hold outlived its request"
    account = exact(gw.admin("GET", f"/accounts/{who.account}").text)["data"]
    key = exact(gw.admin("GET", f"/keys/{who.key_id}").text)["data"]
    assert 0 <= key["usage"] <= LIMIT and account["balance"] >= 0
    assert key["usage"] == account["total_usage"]
    spent: Decimal = account["total_usage"]
    return spent


@STREAM
def test_ten_times_the_output_limit_is_charged_the_hold_and_the_rest_is_an_overrun(
    gw: Gateway, sim: Sim, stream: bool
) -> None:
    liar = tenant(gw, str(LIMIT), LIMIT)
    body = request("usage_scale=10", stream)
    hold = hold_of(gw, body)
    status, request_id = send(gw, liar.key, body)
    assert status == 200
    sent = [r for r in sim.requests() if body["input"] in json.dumps(r["body"])][-1]
    assert sent["path"] == "/v1/responses" and sent["body"]["max_output_tokens"] == 16
    found = generation(gw, liar.key, request_id)
    # The report (160 output tokens for a limit of 16) is not believed past the limit sent.
    assert found["tokens"]["completion"] == 16
    assert 0 < found["total_cost"] <= hold
    assert assert_within_caps(gw, liar) == found["total_cost"]
    report = gw.verify()
    assert report["ok"] is True
    assert request_id in {o["request_id"] for o in report["overrun_requests"]}


@STREAM
def test_absurd_counts_are_charged_at_most_the_hold(gw: Gateway, stream: bool) -> None:
    liar = tenant(gw, str(LIMIT), LIMIT)
    charged = Decimal(0)
    for absurd in ABSURD:
        body = request(absurd, stream)
        hold = hold_of(gw, body)
        status, request_id = send(gw, liar.key, body)
        assert status == 200, absurd
        found = generation(gw, liar.key, request_id)
        assert 0 < found["total_cost"] <= hold, (absurd, found["total_cost"], hold)
        charged += found["total_cost"]
        served = gw.openai(tenant(gw, "1.00").key).responses.create(model=GPT, input="still here?")
        assert served.status == "completed", absurd
    assert assert_within_caps(gw, liar) == charged
    assert gw.verify()["ok"] is True


def test_a_failure_mid_stream_charges_what_was_produced_within_the_hold(gw: Gateway) -> None:
    who = tenant(gw, "1.00")
    body = request("error_after=3", True)
    hold = hold_of(gw, body)
    raw = gw.openai(who.key).responses.with_raw_response.create(**body)
    frames = [json.loads(line[6:]) for line in raw.http_response.iter_lines() if line.startswith("data: ")]
    assert [f["type"] for f in frames][-2:] == ["error", "response.failed"]
    found = generation(gw, who.key, raw.headers["x-nemo-request-id"])
    assert found["status"] == "partial" and found["tokens"]["completion"] == 3
    assert 0 < found["total_cost"] <= hold
    assert gw.verify()["ok"] is True


def test_hanging_up_after_the_first_event_pays_at_least_the_prompt(gw: Gateway, sim: Sim) -> None:
    """The client closes its socket after `response.created`, while the upstream waits before any
    text: the prompt is charged (the model family's tokenizer count), within the hold."""
    who = tenant(gw, "1.00")
    body = request("chunk_delay_ms=3000", True)
    hold = hold_of(gw, body)
    raw = json.dumps(body).encode()
    head = (
        f"POST /v1/responses HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {who.key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=20) as sock:
        sock.sendall(head + raw)
        received = b""
        while b"\r\n\r\n" not in received or b"data: " not in received.split(b"\r\n\r\n", 1)[1]:
            piece = sock.recv(65536)
            assert piece, received
            received += piece
    assert received.startswith(b"HTTP/1.1 200") and b"response.created" in received
    request_id = next(
        line.split(": ", 1)[1]
        for line in received.split(b"\r\n\r\n", 1)[0].decode().splitlines()
        if line.startswith("x-nemo-request-id")
    )
    found = generation(gw, who.key, request_id)
    assert found["status"] == "cancelled" and found["tokens"]["completion"] == 0
    prompt = found["tokens"]["prompt"]
    assert prompt > 0 and found["total_cost"] == prompt * GPT_IN / M <= hold
    # At least what the upstream bills for the prompt it was sent: the sim's own count of it.
    sent = [r for r in sim.requests() if body["input"] in json.dumps(r["body"])][-1]["body"]
    replay = httpx.post(
        f"{sim.url}/v1/responses",
        json={**sent, "stream": False},
        headers={"Authorization": "Bearer sk-sim-replay"},
        timeout=20,
    )
    assert replay.status_code == 200, replay.text
    assert prompt >= replay.json()["usage"]["input_tokens"] > 0
    assert Decimal(str(gw.balance(who.account)["total_usage"])) == found["total_cost"]
    assert gw.verify()["ok"] is True


def test_an_upstream_that_drops_the_stream_is_charged_what_was_seen_within_the_hold(gw: Gateway) -> None:
    """The connection dies after three deltas, before `response.completed` (no usage): the prompt
    and the output seen are charged, never more than the hold; the client's stream ends failed."""
    who = tenant(gw, "1.00")
    body = request("cut_after=3", True)
    hold = hold_of(gw, body)
    raw = gw.openai(who.key).responses.with_raw_response.create(**body)
    frames = [json.loads(line[6:]) for line in raw.http_response.iter_lines() if line.startswith("data: ")]
    kinds = [f["type"] for f in frames]
    assert kinds.count("response.output_text.delta") == 3 and kinds[-1] == "response.failed"
    found = generation(gw, who.key, raw.headers["x-nemo-request-id"])
    assert found["status"] == "partial" and found["tokens"]["completion"] == 3
    assert found["tokens"]["prompt"] > 0 and 0 < found["total_cost"] <= hold
    assert Decimal(str(gw.balance(who.account)["total_usage"])) == found["total_cost"]
    assert gw.verify()["ok"] is True


def test_an_unreadable_answer_is_a_502_and_free(gw: Gateway) -> None:
    who = tenant(gw, "1.00")
    status, request_id = send(gw, who.key, request("malformed=1", False))
    assert status == 502
    found = generation(gw, who.key, request_id)
    assert found["total_cost"] == 0
    assert Decimal(str(gw.balance(who.account)["total_usage"])) == 0
    assert gw.verify()["ok"] is True
