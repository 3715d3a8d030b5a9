"""Every refusal of the inference API: the contract's exact error shape and status, and nothing charged.

After each refused request the account's balance and `held`, and the key's usage and `held`, are
exactly what they were, and the ledger verifies. No answer of any test carries the provider's
secret (checked as each arrives), and one self-contained test drives its own gateway through the
answers most likely to leak, then checks its answers, its log and its database file for secrets.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import SIM_PROVIDER_SECRET, Gateway, Sim, new_gateway
from nemorouter.service.keyformat import key_scope, new_key

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
MINI = "openai/gpt-4o-mini"
GPT4O = "openai/gpt-4o"
EMBED = "openai/text-embedding-3-small"

# One pooled client for the module: a fresh `httpx.request` per call costs ~25 ms of TLS setup.
HTTP = httpx.Client(timeout=30)


@pytest.fixture(scope="module", autouse=True)
def _close_client() -> Iterator[None]:
    yield
    HTTP.close()


# -- helpers --------------------------------------------------------------------------------


def exact(resp: httpx.Response) -> Any:
    """The body with money as exact decimals."""
    return json.loads(resp.text, parse_float=Decimal)


def no_provider_secret(resp: httpx.Response) -> httpx.Response:
    """The simulator's provider secret is in no answer: not its body, not a header."""
    assert SIM_PROVIDER_SECRET not in resp.text, resp.request.url
    for name, value in resp.headers.items():
        assert SIM_PROVIDER_SECRET not in value, name
    return resp


def send(
    gw: Gateway,
    path: str,
    key: str | None = None,
    *,
    body: Any = None,
    content: Any = None,
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    sent = dict(headers or {})
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    return no_provider_secret(
        HTTP.request(method, f"{gw.url}{path}", json=body, content=content, headers=sent)
    )


def admin(gw: Gateway, method: str, path: str, body: Any = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {gw.admin_token}"}
    return no_provider_secret(HTTP.request(method, f"{gw.url}/admin/v1{path}", json=body, headers=headers))


def verify(gw: Gateway) -> dict[str, Any]:
    report: dict[str, Any] = admin(gw, "GET", "/ledger/verify").json()
    return report


def chat(text: str = "Hello there", model: str = MINI, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def embed(text: str = "Hello there", model: str = EMBED) -> dict[str, Any]:
    return {"model": model, "input": text}


def assert_error(resp: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    """Exactly `{"error": {"code", "type", "message"}}` (402s add needed/available/max_tokens_affordable)."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body = exact(resp)
    assert list(body) == ["error"], body
    error = body["error"]
    expected = {"code", "type", "message"}
    if status == 402:
        expected |= {"needed", "available", "max_tokens_affordable"}
    assert set(error) == expected, error
    assert error["code"] == status, error
    assert error["type"] == type_, error
    assert isinstance(error["message"], str) and error["message"].strip(), error
    return dict(error)


@dataclass
class Account:
    gw: Gateway
    id: str

    def key(self, **fields: Any) -> tuple[str, str]:
        """A new inference key: (secret, id)."""
        created = admin(self.gw, "POST", f"/accounts/{self.id}/keys", {"name": "errors", **fields})
        assert created.status_code == 201, created.text
        secret: str = created.json()["key"]
        return secret, created.json()["data"]["id"]

    def management_key(self) -> tuple[str, str]:
        created = admin(self.gw, "POST", f"/accounts/{self.id}/management-keys", {"name": "mgmt"})
        assert created.status_code == 201, created.text
        secret: str = created.json()["key"]
        return secret, created.json()["data"]["id"]


def new_account(gw: Gateway, credits: str = "5.00") -> Account:
    created = admin(gw, "POST", "/accounts", {"name": "errors", "email": "errors@example.com"})
    assert created.status_code == 201, created.text
    account_id: str = created.json()["data"]["id"]
    credited = admin(gw, "POST", f"/accounts/{account_id}/credits", {"amount": credits, "reason": "test"})
    assert credited.status_code == 201, credited.text
    return Account(gw, account_id)


def books(gw: Gateway, account_id: str, key_ids: tuple[str, ...]) -> dict[str, Any]:
    acct = exact(admin(gw, "GET", f"/accounts/{account_id}"))["data"]
    state: dict[str, Any] = {f: acct[f] for f in ("balance", "held", "total_credits", "total_usage")}
    for key_id in key_ids:
        key = exact(admin(gw, "GET", f"/keys/{key_id}"))["data"]
        state[key_id] = {f: key[f] for f in ("usage", "held", "limit_remaining")}
    return state


@contextlib.contextmanager
def unchanged(gw: Gateway, account: Account, *key_ids: str) -> Iterator[None]:
    """Asserts that whatever happens inside charges nothing and holds nothing, and the ledger verifies."""
    before = books(gw, account.id, key_ids)
    yield
    assert books(gw, account.id, key_ids) == before
    assert verify(gw)["ok"] is True


@pytest.fixture(scope="module")
def funded(gateway: Gateway) -> tuple[Account, str, str]:
    """One account with credits and one working inference key: (account, secret, key id)."""
    account = new_account(gateway)
    secret, key_id = account.key()
    assert send(gateway, CHAT, secret, body=chat()).status_code == 200
    return account, secret, key_id


def wait_past(moment: datetime) -> None:
    delay = (moment - datetime.now(UTC)).total_seconds() + 0.1
    if delay > 0:
        time.sleep(delay)


# -- 401 / 403: keys ------------------------------------------------------------------------


def _flip(key: str, at: int) -> str:
    char = key[at]
    return key[:at] + ("a" if char != "a" else "b") + key[at + 1 :]


BAD_AUTH = {
    "missing": lambda key: {},
    "bearer_only": lambda key: {"Authorization": "Bearer"},
    "basic_scheme": lambda key: {"Authorization": f"Basic {key}"},
    "token_scheme": lambda key: {"Authorization": f"Token {key}"},
    "no_scheme": lambda key: {"Authorization": key},
    "wrong_prefix": lambda key: {"Authorization": "Bearer " + key.replace("sk-nemo-v1-", "sk-nemo-v2-")},
    "openai_prefix": lambda key: {"Authorization": "Bearer " + key.replace("sk-nemo-v1-", "sk-proj-")},
    "too_short": lambda key: {"Authorization": f"Bearer {key[:-1]}"},
    "too_long": lambda key: {"Authorization": f"Bearer {key}A"},
    "checksum_fails": lambda key: {"Authorization": f"Bearer {_flip(key, len('sk-nemo-v1-') + 5)}"},
    "checksum_char_changed": lambda key: {"Authorization": f"Bearer {_flip(key, len(key) - 1)}"},
    "unknown_well_formed": lambda key: {"Authorization": f"Bearer {new_key('inference')}"},
}


@pytest.mark.parametrize("path", [CHAT, EMBEDDINGS])
@pytest.mark.parametrize("case", list(BAD_AUTH))
def test_bad_or_unknown_key_is_401_invalid_key(
    gateway: Gateway, funded: tuple[Account, str, str], case: str, path: str
) -> None:
    account, secret, key_id = funded
    body = chat() if path == CHAT else embed()
    with unchanged(gateway, account, key_id):
        resp = send(gateway, path, body=body, headers=BAD_AUTH[case](secret))
        assert_error(resp, 401, "invalid_key")


def test_unknown_key_checksum_is_valid() -> None:
    """The unknown key above really is well formed: it fails the lookup, not the checksum."""
    assert key_scope(new_key("inference")) == "inference"


@pytest.mark.parametrize("path", [CHAT, EMBEDDINGS])
def test_management_key_on_inference_endpoint_is_403(
    gateway: Gateway, funded: tuple[Account, str, str], path: str
) -> None:
    account, _, key_id = funded
    mgmt, _ = account.management_key()
    body = chat() if path == CHAT else embed()
    with unchanged(gateway, account, key_id):
        assert_error(send(gateway, path, mgmt, body=body), 403, "forbidden")


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/credits"), ("GET", "/v1/keys")])
def test_inference_key_on_management_endpoint_is_403(
    gateway: Gateway, funded: tuple[Account, str, str], method: str, path: str
) -> None:
    account, secret, key_id = funded
    with unchanged(gateway, account, key_id):
        assert_error(send(gateway, path, secret, method=method), 403, "forbidden")


def test_key_revoked_through_admin_api_fails_on_next_request(gateway: Gateway) -> None:
    account = new_account(gateway)
    secret, key_id = account.key()
    assert send(gateway, CHAT, secret, body=chat()).status_code == 200  # now cached by the server
    revoked = admin(gateway, "DELETE", f"/keys/{key_id}")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["data"]["revoked"] is True
    with unchanged(gateway, account, key_id):
        assert_error(send(gateway, CHAT, secret, body=chat()), 401, "key_revoked")
        assert_error(send(gateway, EMBEDDINGS, secret, body=embed()), 401, "key_revoked")


def test_key_revoked_through_management_api_fails_on_next_request(gateway: Gateway) -> None:
    account = new_account(gateway)
    secret, key_id = account.key()
    mgmt, _ = account.management_key()
    assert send(gateway, CHAT, secret, body=chat()).status_code == 200
    revoked = send(gateway, f"/v1/keys/{key_id}", mgmt, method="DELETE")
    assert revoked.status_code == 200, revoked.text
    with unchanged(gateway, account, key_id):
        assert_error(send(gateway, CHAT, secret, body=chat()), 401, "key_revoked")
        assert_error(send(gateway, EMBEDDINGS, secret, body=embed()), 401, "key_revoked")


def test_disabled_key_is_401_until_reenabled(gateway: Gateway) -> None:
    account = new_account(gateway)
    secret, key_id = account.key()
    mgmt, _ = account.management_key()
    assert send(gateway, CHAT, secret, body=chat()).status_code == 200
    patched = admin(gateway, "PATCH", f"/keys/{key_id}", {"disabled": True})
    assert patched.status_code == 200, patched.text
    assert patched.json()["data"]["disabled"] is True
    with unchanged(gateway, account, key_id):
        assert_error(send(gateway, CHAT, secret, body=chat()), 401, "key_disabled")
        assert_error(send(gateway, EMBEDDINGS, secret, body=embed()), 401, "key_disabled")
    # Disabled through the management API too (already disabled: stays so).
    again = send(gateway, f"/v1/keys/{key_id}", mgmt, method="PATCH", body={"disabled": True})
    assert again.status_code == 200, again.text
    assert_error(send(gateway, CHAT, secret, body=chat()), 401, "key_disabled")
    # Re-enabled through the management API: this server sees its own change at once.
    enabled = send(gateway, f"/v1/keys/{key_id}", mgmt, method="PATCH", body={"disabled": False})
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["data"]["disabled"] is False
    resp = send(gateway, CHAT, secret, body=chat())
    assert resp.status_code == 200, resp.text
    assert verify(gateway)["ok"] is True


def test_disabled_key_reenabled_through_admin_api_works_on_the_next_request(gateway: Gateway) -> None:
    """The admin API refreshes this server's key cache at once: no stale `key_disabled`."""
    account = new_account(gateway)
    secret, key_id = account.key()
    assert send(gateway, CHAT, secret, body=chat()).status_code == 200
    assert admin(gateway, "PATCH", f"/keys/{key_id}", {"disabled": True}).status_code == 200
    time.sleep(0.3)  # past the server's config check interval: its cache now holds the disabled key
    assert_error(send(gateway, CHAT, secret, body=chat()), 401, "key_disabled")
    assert admin(gateway, "PATCH", f"/keys/{key_id}", {"disabled": False}).status_code == 200
    resp = send(gateway, CHAT, secret, body=chat())
    assert resp.status_code == 200, resp.text


def test_expired_key_is_401_key_expired(gateway: Gateway) -> None:
    account = new_account(gateway)
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    secret, key_id = account.key(expires_at=expires.strftime("%Y-%m-%dT%H:%M:%SZ"))
    resp = send(gateway, CHAT, secret, body=chat())
    assert resp.status_code == 200, resp.text
    wait_past(expires)
    with unchanged(gateway, account, key_id):
        assert_error(send(gateway, CHAT, secret, body=chat()), 401, "key_expired")
        assert_error(send(gateway, EMBEDDINGS, secret, body=embed()), 401, "key_expired")


# -- 400: malformed requests ----------------------------------------------------------------

_MSG = [{"role": "user", "content": "hi"}]
BAD_CHAT_BODIES: dict[str, bytes] = {
    "empty_body": b"",
    "not_json": b"this is not json",
    "truncated_json": b'{"model": "openai/gpt-4o-mini", "messages": [',
    "json_array": b"[1, 2, 3]",
    "json_string": b'"hello"',
    "json_null": b"null",
    "model_missing": json.dumps({"messages": _MSG}).encode(),
    "model_number": json.dumps({"model": 5, "messages": _MSG}).encode(),
    "model_list": json.dumps({"model": [MINI], "messages": _MSG}).encode(),
    "messages_missing": json.dumps({"model": MINI}).encode(),
    "messages_empty": json.dumps({"model": MINI, "messages": []}).encode(),
    "messages_string": json.dumps({"model": MINI, "messages": "hi"}).encode(),
    "messages_object": json.dumps({"model": MINI, "messages": {"role": "user", "content": "hi"}}).encode(),
    "message_not_object": json.dumps({"model": MINI, "messages": ["hi"]}).encode(),
    "message_bad_role": json.dumps(
        {"model": MINI, "messages": [{"role": "wizard", "content": "hi"}]}
    ).encode(),
    "message_no_role": json.dumps({"model": MINI, "messages": [{"content": "hi"}]}).encode(),
    "stream_string": json.dumps({"model": MINI, "messages": _MSG, "stream": "yes"}).encode(),
    "stream_number": json.dumps({"model": MINI, "messages": _MSG, "stream": 1}).encode(),
    "max_tokens_zero": json.dumps({"model": MINI, "messages": _MSG, "max_tokens": 0}).encode(),
    "max_tokens_negative": json.dumps({"model": MINI, "messages": _MSG, "max_tokens": -5}).encode(),
    "max_tokens_string": json.dumps({"model": MINI, "messages": _MSG, "max_tokens": "10"}).encode(),
    "max_tokens_float": json.dumps({"model": MINI, "messages": _MSG, "max_tokens": 10.5}).encode(),
    "n_zero": json.dumps({"model": MINI, "messages": _MSG, "n": 0}).encode(),
}

BAD_EMBEDDING_BODIES: dict[str, bytes] = {
    "not_json": b"{nope",
    "json_array": b"[]",
    "model_missing": json.dumps({"input": "hi"}).encode(),
    "model_number": json.dumps({"model": 7, "input": "hi"}).encode(),
    "input_missing": json.dumps({"model": EMBED}).encode(),
    "input_empty": json.dumps({"model": EMBED, "input": ""}).encode(),
    "input_number": json.dumps({"model": EMBED, "input": 42}).encode(),
}


@pytest.mark.parametrize("case", list(BAD_CHAT_BODIES))
def test_malformed_chat_body_is_400(gateway: Gateway, funded: tuple[Account, str, str], case: str) -> None:
    account, secret, key_id = funded
    headers = {"content-type": "application/json"}
    with unchanged(gateway, account, key_id):
        resp = send(gateway, CHAT, secret, content=BAD_CHAT_BODIES[case], headers=headers)
        assert_error(resp, 400, "invalid_request")


@pytest.mark.parametrize("case", list(BAD_EMBEDDING_BODIES))
def test_malformed_embeddings_body_is_400(
    gateway: Gateway, funded: tuple[Account, str, str], case: str
) -> None:
    account, secret, key_id = funded
    headers = {"content-type": "application/json"}
    with unchanged(gateway, account, key_id):
        resp = send(gateway, EMBEDDINGS, secret, content=BAD_EMBEDDING_BODIES[case], headers=headers)
        assert_error(resp, 400, "invalid_request")


def test_malformed_body_through_the_openai_sdk(gateway: Gateway, funded: tuple[Account, str, str]) -> None:
    """The official SDK sees the 400 as a BadRequestError carrying the contract's error object."""
    import openai

    account, secret, key_id = funded
    client = gateway.openai(secret)
    with unchanged(gateway, account, key_id), pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=MINI, messages=_MSG, max_tokens=0)  # type: ignore[arg-type]
    assert raised.value.status_code == 400
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["type"] == "invalid_request"


# -- 404 / 400: models ----------------------------------------------------------------------


@pytest.mark.parametrize("path", [CHAT, EMBEDDINGS])
def test_unknown_model_is_404(gateway: Gateway, funded: tuple[Account, str, str], path: str) -> None:
    account, secret, key_id = funded
    body = chat(model="openai/no-such-model") if path == CHAT else embed(model="openai/no-such-model")
    with unchanged(gateway, account, key_id):
        assert_error(send(gateway, path, secret, body=body), 404, "model_not_found")


def test_model_of_the_wrong_kind_is_400(gateway: Gateway, funded: tuple[Account, str, str]) -> None:
    account, secret, key_id = funded
    with unchanged(gateway, account, key_id):
        assert_error(send(gateway, EMBEDDINGS, secret, body=embed(model=MINI)), 400, "invalid_request")
        assert_error(send(gateway, CHAT, secret, body=chat(model=EMBED)), 400, "invalid_request")


def test_model_outside_allowed_models_is_403(gateway: Gateway) -> None:
    account = new_account(gateway)
    secret, key_id = account.key(allowed_models=[MINI])
    assert send(gateway, CHAT, secret, body=chat()).status_code == 200
    with unchanged(gateway, account, key_id):
        assert_error(send(gateway, CHAT, secret, body=chat(model=GPT4O)), 403, "model_not_allowed")
        assert_error(send(gateway, EMBEDDINGS, secret, body=embed()), 403, "model_not_allowed")
        fallback = chat(models=[MINI, GPT4O])
        assert_error(send(gateway, CHAT, secret, body=fallback), 403, "model_not_allowed")


# -- 413 --------------------------------------------------------------------------------------


def test_body_over_the_limit_is_413(workdir: Path, sim: Sim) -> None:
    gw = new_gateway(workdir, sim)
    gw.env["NEMO_MAX_BODY_BYTES"] = "4096"
    gw.start()
    keys: list[str] = []
    try:
        account = new_account(gw)
        created = admin(gw, "POST", f"/accounts/{account.id}/keys", {"name": "big"})
        secret, key_id = created.json()["key"], created.json()["data"]["id"]
        keys.append(secret)

        small = json.dumps(chat("x" * 3000)).encode()
        assert len(small) < 4096
        ok = send(gw, CHAT, secret, content=small, headers={"content-type": "application/json"})
        assert ok.status_code == 200, ok.text

        big = json.dumps(chat("x" * 5000)).encode()
        assert len(big) > 5000
        with unchanged(gw, account, key_id):
            sized = send(gw, CHAT, secret, content=big, headers={"content-type": "application/json"})
            assert_error(sized, 413, "request_too_large")

            def pieces() -> Iterator[bytes]:
                for start in range(0, len(big), 1024):
                    yield big[start : start + 1024]

            chunked = send(gw, CHAT, secret, content=pieces(), headers={"content-type": "application/json"})
            assert chunked.request.headers.get("transfer-encoding") == "chunked"
            assert "content-length" not in chunked.request.headers
            assert_error(chunked, 413, "request_too_large")

            big_embed = json.dumps(embed("y" * 5000)).encode()
            resp = send(
                gw, EMBEDDINGS, secret, content=big_embed, headers={"content-type": "application/json"}
            )
            assert_error(resp, 413, "request_too_large")
    finally:
        assert gw.stop() == 0
    assert_no_plaintext_keys(gw.data_dir, keys)


# -- 402 ----------------------------------------------------------------------------------------


def _affordable_from_message(message: str) -> int | None:
    found = re.search(r"max_tokens[^0-9]*(\d+)", message)
    return int(found.group(1)) if found else None


def test_insufficient_credits_is_402_and_the_affordable_max_tokens_fits(gateway: Gateway) -> None:
    account = new_account(gateway, credits="0.0001")
    secret, key_id = account.key()
    with unchanged(gateway, account, key_id):
        error = assert_error(
            send(gateway, CHAT, secret, body=chat("Hi", model=GPT4O, max_tokens=100_000)),
            402,
            "insufficient_credits",
        )
    assert isinstance(error["needed"], Decimal) and isinstance(error["available"], Decimal)
    assert error["available"] == Decimal("0.0001")
    assert error["needed"] > error["available"]
    # The worst case of 100000 output tokens of gpt-4o at $10 per 1M is at least $1.
    assert error["needed"] >= Decimal("1")
    affordable = error["max_tokens_affordable"]
    assert isinstance(affordable, int) and not isinstance(affordable, bool) and affordable >= 1
    assert _affordable_from_message(error["message"]) == affordable, error["message"]

    # One more token than "the largest that fits" must not fit...
    with unchanged(gateway, account, key_id):
        too_many = send(gateway, CHAT, secret, body=chat("Hi", model=GPT4O, max_tokens=affordable + 1))
        assert_error(too_many, 402, "insufficient_credits")
    # ... and the affordable number does.
    fits = send(gateway, CHAT, secret, body=chat("Hi", model=GPT4O, max_tokens=affordable))
    assert fits.status_code == 200, fits.text
    cost = Decimal(fits.headers["x-nemo-cost"])
    after = books(gateway, account.id, (key_id,))
    assert after["balance"] == Decimal("0.0001") - cost
    assert after["held"] == 0
    assert verify(gateway)["ok"] is True


def test_key_limit_is_402_and_the_affordable_max_tokens_fits(gateway: Gateway) -> None:
    account = new_account(gateway, credits="5.00")
    secret, key_id = account.key(limit="0.0001")
    with unchanged(gateway, account, key_id):
        error = assert_error(
            send(gateway, CHAT, secret, body=chat("Hi", model=GPT4O, max_tokens=100_000)),
            402,
            "key_limit_exceeded",
        )
    assert error["available"] == Decimal("0.0001")
    assert error["needed"] > error["available"]
    affordable = error["max_tokens_affordable"]
    assert isinstance(affordable, int) and not isinstance(affordable, bool) and affordable >= 1
    assert _affordable_from_message(error["message"]) == affordable, error["message"]
    with unchanged(gateway, account, key_id):
        too_many = send(gateway, CHAT, secret, body=chat("Hi", model=GPT4O, max_tokens=affordable + 1))
        assert_error(too_many, 402, "key_limit_exceeded")
    fits = send(gateway, CHAT, secret, body=chat("Hi", model=GPT4O, max_tokens=affordable))
    assert fits.status_code == 200, fits.text
    key = books(gateway, account.id, (key_id,))[key_id]
    assert key["usage"] == Decimal(fits.headers["x-nemo-cost"])
    assert key["held"] == 0
    assert verify(gateway)["ok"] is True


def test_nothing_affordable_is_402_with_null_max_tokens(gateway: Gateway) -> None:
    account = new_account(gateway, credits="0.000001")
    secret, key_id = account.key()
    with unchanged(gateway, account, key_id):
        error = assert_error(
            send(gateway, CHAT, secret, body=chat("Hello " * 50, model=GPT4O)), 402, "insufficient_credits"
        )
    assert error["max_tokens_affordable"] is None
    assert error["needed"] > error["available"]


# -- upstream failures --------------------------------------------------------------------------


def _check_uncharged_record(gw: Gateway, resp: httpx.Response, secret: str, key_id: str) -> None:
    """The error names its generation (x-nemo-request-id); the record says error and costs nothing."""
    gen_id = resp.headers.get("x-nemo-request-id")
    assert gen_id, f"no x-nemo-request-id on a {resp.status_code} after admission: {dict(resp.headers)}"
    found = send(gw, f"/v1/generation?id={gen_id}", secret, method="GET")
    assert found.status_code == 200, found.text
    record = exact(found)["data"]
    assert record["id"] == gen_id and record["key_id"] == key_id
    assert record["status"] == "error"
    assert record["total_cost"] == 0
    assert record["tokens"]["prompt"] == 0 and record["tokens"]["completion"] == 0


UPSTREAM_CASES = {
    "server_error": ("[sim:status=500]", 502, "upstream_error"),
    "rate_limited": ("[sim:status=429,retry_after=3]", 429, "upstream_rate_limited"),
    "bad_request": ("[sim:status=400]", 400, "invalid_request"),
}


@pytest.fixture
def failing(workdir: Path, sim: Sim) -> Iterator[Gateway]:
    """A gateway of its own per test: the failures below teach its breakers and cool-downs (a 429
    idles that deployment's key for its retry-after), which must not spill over onto other tests."""
    gw = new_gateway(workdir, sim)
    gw.start()
    yield gw
    assert gw.stop() == 0


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("case", list(UPSTREAM_CASES))
def test_upstream_failure_chat(failing: Gateway, sim: Sim, case: str, stream: bool) -> None:
    gateway = failing
    directive, status, type_ = UPSTREAM_CASES[case]
    account = new_account(gateway)
    secret, key_id = account.key()
    with unchanged(gateway, account, key_id):
        resp = send(gateway, CHAT, secret, body=chat(f"Please answer {directive}", stream=stream))
        assert_error(resp, status, type_)
        if status == 429:
            assert resp.headers["retry-after"] == "3"
        _check_uncharged_record(gateway, resp, secret, key_id)


@pytest.mark.parametrize("case", list(UPSTREAM_CASES))
def test_upstream_failure_embeddings(failing: Gateway, case: str) -> None:
    gateway = failing
    directive, status, type_ = UPSTREAM_CASES[case]
    account = new_account(gateway)
    secret, key_id = account.key()
    with unchanged(gateway, account, key_id):
        resp = send(gateway, EMBEDDINGS, secret, body=embed(f"some text {directive}"))
        assert_error(resp, status, type_)
        if status == 429:
            assert int(resp.headers["retry-after"]) >= 1
        _check_uncharged_record(gateway, resp, secret, key_id)


def test_upstream_500_is_tried_and_reported_as_502(failing: Gateway, sim: Sim) -> None:
    """The simulator saw the attempt(s), and each of them failed; the client got one 502."""
    gateway = failing
    account = new_account(gateway)
    secret, key_id = account.key()
    marker = f"marker-{time.time_ns()}"
    with unchanged(gateway, account, key_id):
        resp = send(gateway, CHAT, secret, body=chat(f"{marker} [sim:status=500]"))
        assert_error(resp, 502, "upstream_error")
    attempts = [r for r in sim.requests() if marker in json.dumps(r)]
    assert len(attempts) >= 1


# -- secrets ------------------------------------------------------------------------------------


def assert_no_plaintext_keys(data_dir: Path, keys: list[str]) -> None:
    files = [data_dir / "gateway.log", *sorted(data_dir.glob("nemorouter.db*"))]
    for path in files:
        if not path.exists():
            continue
        data = path.read_bytes()
        for key in keys:
            assert key.encode() not in data, f"a customer key appears in plaintext in {path.name}"


# What the secret test sends through its own gateway: success and refusal, stream and not, and the
# upstream failures whose answers and log lines are where a provider secret could slip through.
# Order matters: the provider refusing a vault key quarantines it (the gateway has a second one),
# and a 429 idles the key that got it, so those come last.
LEAK_PROBES = [  # (body, the status it is answered with)
    (chat(), 200),
    (chat(stream=True), 200),
    (chat("Please fail [sim:status=500]"), 502),
    (chat("Please fail [sim:status=403]"), 403),
    (chat("Please fail [sim:status=400]", stream=True), 400),
    (chat("Please end badly [sim:error_after=2]", stream=True), 200),  # the error is in the stream
    (chat("Please fail [sim:bad_key=1]"), 502),
    (chat("Please fail [sim:status=429,retry_after=1]", stream=True), 429),
]


def test_no_secret_in_responses_logs_or_database(workdir: Path, sim: Sim) -> None:
    """Self-contained, so it passes or fails alike alone, first or last: its own gateway, keys and
    traffic, then its own answers, log file and database files."""
    gw = new_gateway(workdir, sim)
    second_secret = "sk-sim-second-" + secrets.token_hex(8)
    gw.cli("providers", "add-key", "sim", "--label", "second", input=second_secret + "\n")
    gw.start()
    try:
        account = new_account(gw)
        secret, _ = account.key()
        management, _ = account.management_key()
        answers = [send(gw, EMBEDDINGS, secret, body=embed()), send(gw, CHAT, management, body=chat())]
        answers += [send(gw, CHAT, body=chat(), headers=bad(secret)) for bad in BAD_AUTH.values()]
        probes = [send(gw, CHAT, secret, body=body) for body, _ in LEAK_PROBES]
    finally:
        assert gw.stop() == 0
    # Each answer is the one meant to be checked (a probe that stopped failing would hide a leak).
    assert [r.status_code for r in answers] == [200, 403] + [401] * len(BAD_AUTH)
    assert [r.status_code for r in probes] == [status for _, status in LEAK_PROBES], [
        r.text[:200] for r in probes
    ]
    answers += probes
    customer_keys = [secret, management]
    for resp in answers:
        for hidden in (*customer_keys, second_secret):
            assert hidden not in resp.text, resp.request.url
            assert all(hidden not in value for value in resp.headers.values()), resp.request.url
    log = gw.data_dir / "gateway.log"
    ids = [r.headers["x-nemo-request-id"] for r in answers if "x-nemo-request-id" in r.headers]
    assert any(i.encode() in log.read_bytes() for i in ids), "the log scanned is not this traffic's"
    assert (gw.data_dir / "nemorouter.db").exists()
    # The data files hold only hashes of customer keys; the log mentions none of them.
    assert_no_plaintext_keys(gw.data_dir, customer_keys)
    # The vault secrets are stored encrypted, and never logged.
    for path in [log, *sorted(gw.data_dir.glob("nemorouter.db*"))]:
        for provider_secret in (SIM_PROVIDER_SECRET, second_secret):
            assert provider_secret.encode() not in path.read_bytes(), path.name


def test_the_key_check_finds_a_key_where_it_is(tmp_path: Path) -> None:
    """The check above can fail: a key written in plaintext to a log or a database file is found.
    (A stand-in, not a key's shape: the suite-wide scan reads this directory too.)"""
    planted = "planted-" + secrets.token_hex(16)
    (tmp_path / "gateway.log").write_text("nothing here\n")
    (tmp_path / "nemorouter.db-wal").write_bytes(b"\x00page" + planted.encode() + b"\x00")
    with pytest.raises(AssertionError, match=r"nemorouter\.db-wal"):
        assert_no_plaintext_keys(tmp_path, [planted])
    assert_no_plaintext_keys(tmp_path, ["planted-" + secrets.token_hex(16)])
