"""Issue 20, a provider's usage report is untrusted input: the official `openai` SDK -> the real gateway
-> the simulator speaking OpenAI, Anthropic and Gemini, lying about usage (`[sim:report_output=...]`,
`bad_usage=...`: see docs/simulator.md).

Whatever the provider reports, a request is charged at most the hold admitted for it (the operator
eats the rest as an overrun), the key's usage and the account's balance stay within their limits
to the pico-dollar, an absurd report (10**30, negative, fractional, a string) leaves the gateway
serving another tenant within a second, and `ledger verify` stays ok.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from conftest import Gateway, Sim, new_gateway, wait_until

MODELS = {
    "openai": "openai/gpt-4o-mini",
    "anthropic": "anthropic/claude-sonnet-4-5",
    "gemini": "google/gemini-2.5-flash",
}
ANTHROPIC_SECRET = "sk-sim-anthropic-vault-" + secrets.token_hex(8)
GEMINI_SECRET = "AIzaSy-vault-" + secrets.token_hex(8)
LIMIT = Decimal("0.05")
MAX_TOKENS = 10
ABSURD = [
    "report_output=" + str(10**30),  # past 64 bits: most JSON parsers make it a float
    "report_prompt=" + str(10**30),
    "bad_usage=negative",
    "bad_prompt=negative",
    "bad_usage=float",
    "bad_usage=string",
    "report_prompt=" + str(2**64 - 1),
    "report_output=" + str(2**63 - 1),  # an integer everywhere, but its cost overflows 64-bit pico-USD
]
STREAM = pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
FORMAT = pytest.mark.parametrize("fmt", list(MODELS))


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    """One gateway, three upstream wire formats, all served by the one simulator (the Anthropic and
    Gemini providers added through the admin API: no extra CLI process starts)."""
    gateway = new_gateway(tmp_path_factory.mktemp("provider-reports"), sim)  # OpenAI format: provider `sim`
    gateway.start()
    for name, kind, secret, vendor in (
        ("anth", "anthropic", ANTHROPIC_SECRET, "anthropic"),
        ("gem", "gemini", GEMINI_SECRET, "google"),
    ):
        added = gateway.admin("POST", "/providers", {"name": name, "kind": kind, "base_url": sim.url})
        assert added.status_code == 201, added.text
        keyed = gateway.admin("POST", f"/providers/{name}/keys", {"secret": secret, "label": "main"})
        assert keyed.status_code == 201, keyed.text
        imported = gateway.admin("POST", "/models/import", {"vendor": vendor, "provider": name})
        assert imported.status_code in (200, 201), imported.text
    yield gateway
    assert gateway.stop() == 0


@dataclass
class Tenant:
    account: str
    key: str
    key_id: str


def exact(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


def tenant(gw: Gateway, credits: str, limit: Decimal | None = None) -> Tenant:
    account = gw.account(credits)
    fields = {"name": "test"} | ({"limit": f"{limit:f}"} if limit is not None else {})
    created = gw.admin("POST", f"/accounts/{account}/keys", fields)
    assert created.status_code == 201, created.text
    return Tenant(account, created.json()["key"], created.json()["data"]["id"])


@pytest.fixture(scope="module")
def bystander(gw: Gateway) -> Tenant:
    """Another customer, who must stay served whatever the liar's provider reported."""
    return tenant(gw, "5.00")


def body(fmt: str, directive: str, stream: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": MODELS[fmt],
        "messages": [{"role": "user", "content": f"[sim:tokens=50,{directive}] Tell me a long story."}],
        "max_tokens": MAX_TOKENS,
    }
    if stream:
        out |= {"stream": True, "stream_options": {"include_usage": True}}
    return out


@pytest.fixture(scope="module")
def probe(gw: Gateway) -> Tenant:
    """A key that affords nothing: its 402 names the hold a request needs."""
    return tenant(gw, "1.00", Decimal("0.000000000001"))


def hold_of(gw: Gateway, probe: Tenant, request: dict[str, Any]) -> Decimal:
    """The worst case the gateway holds for `request`: the `needed` of the probe key's 402."""
    refused = httpx.post(
        f"{gw.url}/v1/chat/completions", json=request, headers={"Authorization": f"Bearer {probe.key}"}
    )
    assert refused.status_code == 402, refused.text
    needed: Decimal = exact(refused.text)["error"]["needed"]
    assert needed > 0
    return needed


@dataclass
class Answer:
    status: int
    request_id: str
    error: Any = None  # the error body or the exception that ended a stream


def send(gw: Gateway, key: str, request: dict[str, Any], timeout: float = 10) -> Answer:
    """One request through the SDK; a stream is read to its end (an error chunk ends it)."""
    with gw.openai(key, timeout=timeout) as client:
        try:
            raw = client.chat.completions.with_raw_response.create(**request)
        except openai.APIStatusError as exc:
            return Answer(exc.status_code, exc.response.headers["x-nemo-request-id"], exc.body)
        answer = Answer(raw.status_code, raw.headers["x-nemo-request-id"])
        parsed = raw.parse()
        if request.get("stream"):
            try:
                for _ in parsed:
                    pass
            except openai.APIError as exc:
                answer.error = exc
        return answer


def charge_of(gw: Gateway, key: str, request_id: str) -> Decimal:
    found = httpx.get(
        f"{gw.url}/v1/generation", params={"id": request_id}, headers={"Authorization": f"Bearer {key}"}
    )
    assert found.status_code == 200, found.text
    charged: Decimal = Decimal(str(exact(found.text)["data"]["total_cost"]))
    return charged


def assert_within_caps(gw: Gateway, who: Tenant, credits: Decimal) -> Decimal:
    """Key usage <= limit and balance >= 0, to the pico-dollar; returns what was spent."""
    assert wait_until(lambda: gw.balance(who.account)["held"] == 0, timeout=10), "a hold outlived its request"
    account = exact(gw.admin("GET", f"/accounts/{who.account}").text)["data"]
    key = exact(gw.admin("GET", f"/keys/{who.key_id}").text)["data"]
    assert 0 <= key["usage"] <= LIMIT
    assert account["balance"] >= 0
    assert account["balance"] == credits - account["total_usage"]
    assert key["usage"] == account["total_usage"]
    spent: Decimal = account["total_usage"]
    return spent


def assert_verify_ok(gw: Gateway, cli: bool = False) -> dict[str, Any]:
    report = gw.verify()
    assert report["ok"] is True, report
    if cli:  # a second process start: only where it is worth its second
        assert gw.cli_json("ledger", "verify")["ok"] is True
    return report


@FORMAT
@STREAM
def test_ten_million_output_tokens_for_max_tokens_10_is_charged_at_most_the_hold(
    gw: Gateway, probe: Tenant, fmt: str, stream: bool
) -> None:
    """The issue's case: a $0.05 key spent $100 in one request whose provider reported 10M output
    tokens (about $6 on gpt-4o-mini, $25 on gemini-2.5-flash, $150 on claude-sonnet-4-5)."""
    liar = tenant(gw, str(LIMIT), LIMIT)  # the account affords exactly the key's limit
    request = body(fmt, "report_output=10000000", stream)
    hold = hold_of(gw, probe, request)
    answer = send(gw, liar.key, request)
    assert answer.status == 200 and answer.error is None, answer
    assert wait_until(lambda: gw.balance(liar.account)["held"] == 0, timeout=10)
    charged = charge_of(gw, liar.key, answer.request_id)
    assert 0 < charged <= hold
    assert assert_within_caps(gw, liar, LIMIT) == charged
    report = assert_verify_ok(gw, cli=stream)
    # The excess is the operator's overrun, listed by request (docs/money-trail.md).
    listed = {o["request_id"]: o for o in report["overrun_requests"]}
    assert listed[answer.request_id]["account_id"] == liar.account


@FORMAT
@STREAM
def test_absurd_reports_leave_the_gateway_serving_another_tenant(
    gw: Gateway, probe: Tenant, bystander: Tenant, fmt: str, stream: bool
) -> None:
    """Each absurd report in turn (one key, one account, a fresh request each): the liar gets an
    answer, never a 500; another tenant is served within 1 s; each charge is at most its hold."""
    liar = tenant(gw, str(LIMIT), LIMIT)
    charged = Decimal(0)
    for absurd in ABSURD:
        request = body(fmt, absurd, stream)
        hold = hold_of(gw, probe, request)
        answer = send(gw, liar.key, request)
        assert answer.status != 500, (absurd, answer)
        if answer.status != 200:  # an error in the contract's shape
            error = answer.error.get("error", answer.error) if isinstance(answer.error, dict) else None
            assert isinstance(error, dict) and {"code", "type", "message"} <= set(error), (absurd, answer)
        started = time.monotonic()
        served = send(gw, bystander.key, body(fmt, "tokens=3", False), timeout=1)
        assert served.status == 200 and time.monotonic() - started < 1, (absurd, served)
        assert httpx.get(f"{gw.url}/readyz", timeout=1).status_code == 200, absurd
        assert wait_until(lambda: gw.balance(liar.account)["held"] == 0, timeout=5), absurd
        cost = charge_of(gw, liar.key, answer.request_id)
        assert 0 <= cost <= hold, (absurd, cost, hold)
        charged += cost
    assert assert_within_caps(gw, liar, LIMIT) == charged
    assert_verify_ok(gw)
