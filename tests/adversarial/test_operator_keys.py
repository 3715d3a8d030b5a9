"""Customers cannot take the operator's keys out (issue 20, item 5).

Through the real gateway and simulator: a 403 is the request's failure (answered to that client,
no other key tried, nothing quarantined or cooled down); a 401 quarantines exactly one vault key
per request; a request's 429s cool down at most one key; and releasing a quarantine through the
admin API makes the key serve again at once, on every replica.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Gateway, Sim, new_gateway, postgres_database, wait_until

REDIS = os.environ.get("NEMO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PRICES = {"input": "1", "output": "2"}
# Where each wire format's simulator lives, the upstream model it is asked for, and the header
# that carries the vault key (to count which keys a request reached).
KINDS = {
    "openai": ("/v1", "gpt-4o-mini", "authorization"),
    "anthropic": ("", "claude-sonnet-4-5", "x-api-key"),
    "gemini": ("", "gemini-2.5-flash", "x-goog-api-key"),
}


def provider(gw: Gateway, name: str, kind: str, url: str, secrets_: list[str]) -> None:
    made = gw.admin("POST", "/providers", {"name": name, "kind": kind, "base_url": url})
    assert made.status_code == 201, made.text
    for secret in secrets_:
        added = gw.admin("POST", f"/providers/{name}/keys", {"secret": secret, "label": secret[-6:]})
        assert added.status_code == 201, added.text


def model(gw: Gateway, model_id: str, deployments: list[tuple[str, str]]) -> None:
    body = {
        "id": model_id,
        "context_length": 128000,
        "max_output": 1000,
        "pricing": PRICES,
        "deployments": [
            {"provider": name, "upstream_model": upstream, "priority": i}
            for i, (name, upstream) in enumerate(deployments)
        ],
    }
    created = gw.admin("POST", "/models", body)
    assert created.status_code == 201, created.text


def chat(url: str, key: str, model_id: str, content: str = "hello", stream: bool = False) -> httpx.Response:
    body = {"model": model_id, "messages": [{"role": "user", "content": content}], "max_tokens": 5}
    if stream:
        body["stream"] = True
    return httpx.post(
        f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def vault_keys(gw: Gateway, *providers: str) -> dict[str, str | None]:
    """Every vault key of these providers: id -> quarantined_at."""
    found: dict[str, str | None] = {}
    for name in providers:
        for key in gw.admin("GET", f"/providers/{name}").json()["data"]["keys"]:
            found[key["id"]] = key["quarantined_at"]
    return found


def quarantined(gw: Gateway, *providers: str) -> set[str]:
    return {key_id for key_id, since in vault_keys(gw, *providers).items() if since}


def tag() -> str:
    """A word to find one test's requests among everything the shared simulator saw."""
    return f"tag{secrets.token_hex(6)}"


def keys_reached(sim: Sim, marker: str, header: str) -> list[str]:
    """The vault keys of the simulator's requests whose body carries `marker` (in order)."""
    return [r["headers"].get(header, "") for r in sim.requests() if marker in str(r["body"])]


def release(gw: Gateway, provider_name: str, key_id: str) -> None:
    patched = gw.admin("PATCH", f"/providers/{provider_name}/keys/{key_id}", {"quarantined": False})
    assert patched.status_code == 200, patched.text


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Gateway]:
    gateway = new_gateway(tmp_path, None)
    gateway.start()
    yield gateway
    assert gateway.stop() == 0


def three_keys(gw: Gateway, sim: Sim, kind: str) -> tuple[str, list[str]]:
    """Model `t/<kind>`: provider `a` (two keys) first, then provider `b` (one key)."""
    path, upstream, _ = KINDS[kind]
    secrets_ = [f"sk-sim-{kind}-{n}-{secrets.token_hex(4)}" for n in ("a1", "a2", "b1")]
    provider(gw, "a", kind, f"{sim.url}{path}", secrets_[:2])
    provider(gw, "b", kind, f"{sim.url}{path}", secrets_[2:])
    model(gw, f"t/{kind}", [("a", upstream), ("b", upstream)])
    return f"t/{kind}", secrets_


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("stream", [False, True])
def test_one_customers_403s_leave_every_other_customer_served(
    gw: Gateway, sim: Sim, kind: str, stream: bool
) -> None:
    model_id, _ = three_keys(gw, sim, kind)
    header = KINDS[kind][2]
    attacker_account = gw.account("1.00", name="attacker")
    attacker = gw.key(attacker_account)
    victim_account = gw.account("1.00", name="victim")
    victim = gw.key(victim_account)
    for _ in range(8):
        marker = tag()
        refused = chat(gw.url, attacker, model_id, f"read their file {marker} [sim:status=403]", stream)
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert error["type"] == "upstream_forbidden" and error["code"] == 403
        assert "refused this request" in error["message"] and "sk-sim" not in refused.text
        assert len(keys_reached(sim, marker, header)) == 1  # not retried on the other keys
    # Immediately, with no wait: every other customer is served, by the operator's own keys.
    for _ in range(6):
        served = chat(gw.url, victim, model_id, stream=stream)
        assert served.status_code == 200, served.text
    assert quarantined(gw, "a", "b") == set()
    assert gw.balance(attacker_account)["total_usage"] == 0 and gw.balance(attacker_account)["held"] == 0
    assert gw.verify()["ok"] is True


@pytest.mark.parametrize("stream", [False, True])
def test_a_401_quarantines_exactly_one_key_per_request(gw: Gateway, sim: Sim, stream: bool) -> None:
    model_id, secrets_ = three_keys(gw, sim, "openai")
    attacker = gw.key(gw.account("1.00", name="attacker"))
    victim = gw.key(gw.account("1.00", name="victim"))

    marker = tag()
    first = chat(gw.url, attacker, model_id, f"{marker} [sim:status=401]", stream)
    assert first.status_code == 502 and first.json()["error"]["type"] == "upstream_error"
    reached = keys_reached(sim, marker, "authorization")
    # The first refused key is blamed; a second refusal ends the request, no third key tried.
    assert len(reached) == 2 and len(set(reached)) == 2
    assert wait_until(lambda: len(quarantined(gw, "a", "b")) == 1)
    assert chat(gw.url, victim, model_id, stream=stream).status_code == 200

    second = chat(gw.url, attacker, model_id, "[sim:status=401]", stream)
    assert second.status_code == 502
    assert wait_until(lambda: len(quarantined(gw, "a", "b")) == 2)
    # One key is left, and it serves everyone else.
    marker = tag()
    for _ in range(3):
        assert chat(gw.url, victim, model_id, marker, stream=stream).status_code == 200
    (left,) = set(keys_reached(sim, marker, "authorization"))
    assert left.removeprefix("Bearer ") in secrets_


def test_a_requests_429s_cool_down_at_most_one_key(gw: Gateway, sim: Sim) -> None:
    model_id, _ = three_keys(gw, sim, "openai")
    attacker = gw.key(gw.account("1.00", name="attacker"))
    victim = gw.key(gw.account("1.00", name="victim"))
    marker = tag()
    limited = chat(gw.url, attacker, model_id, f"{marker} [sim:status=429,retry_after=600]")
    assert limited.status_code == 429 and limited.json()["error"]["type"] == "upstream_rate_limited"
    reached = keys_reached(sim, marker, "authorization")
    assert len(set(reached)) == 3  # every key reached, once
    # Only the first key waits out its retry-after; the others serve everyone else at once.
    marker = tag()
    for _ in range(6):
        assert chat(gw.url, victim, model_id, marker).status_code == 200
    serving = set(keys_reached(sim, marker, "authorization"))
    assert serving and reached[0] not in serving and serving < set(reached)
    assert quarantined(gw, "a", "b") == set()


@pytest.mark.parametrize("stream", [False, True])
def test_releasing_a_quarantine_serves_again_at_once(gw: Gateway, sim: Sim, stream: bool) -> None:
    provider(gw, "only", "openai", f"{sim.url}/v1", [f"sk-sim-only-{secrets.token_hex(4)}"])
    model(gw, "t/only", [("only", "gpt-4o-mini")])
    customer = gw.key(gw.account("1.00"))
    assert chat(gw.url, customer, "t/only", "[sim:status=401]", stream).status_code == 502
    assert wait_until(lambda: len(quarantined(gw, "only")) == 1)
    down = chat(gw.url, customer, "t/only", stream=stream)
    assert down.status_code == 503 and down.json()["error"]["type"] == "no_deployment_available"
    (key_id,) = quarantined(gw, "only")
    release(gw, "only", key_id)
    # No wait at all: no cool-down outlives the quarantine.
    again = chat(gw.url, customer, "t/only", stream=stream)
    assert again.status_code == 200, again.text
    assert quarantined(gw, "only") == set()


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[list[Gateway]]:
    """Two `serve` replicas on one PostgreSQL database and one Redis prefix."""
    with postgres_database() as url:
        token = "test-admin-" + secrets.token_hex(8)
        env: dict[str, Any] = {
            **os.environ,
            "NEMO_DATA_DIR": str(tmp_path / "data"),
            "NEMO_DATABASE_URL": url,
            "NEMO_REDIS_URL": REDIS,
            "NEMO_REDIS_PREFIX": f"nemo-test-{secrets.token_hex(6)}:",
            "NEMO_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
            "NEMO_ADMIN_TOKEN": token,
            "NEMO_AUTH_FAILURES_PER_MINUTE": "100000",
        }
        gateways = []
        for i in range(2):
            logs = tmp_path / f"replica-{i}"
            logs.mkdir()
            gateways.append(Gateway(data_dir=logs, admin_token=token, env=env))
        try:
            gateways[0].cli("init")
            for gateway in gateways:
                gateway.start()
            yield gateways
            for gateway in gateways:
                assert gateway.stop() == 0
        finally:
            for gateway in gateways:
                gateway.stop()


def test_a_release_through_one_replica_serves_again_on_every_replica(
    replicas: list[Gateway], sim: Sim
) -> None:
    first, second = replicas
    provider(first, "only", "openai", f"{sim.url}/v1", [f"sk-sim-only-{secrets.token_hex(4)}"])
    model(first, "t/only", [("only", "gpt-4o-mini")])
    customer = first.key(first.account("1.00"))
    assert wait_until(lambda: chat(second.url, customer, "t/only").status_code == 200)
    # Quarantined through one replica: the other stops using the key too.
    assert chat(first.url, customer, "t/only", "[sim:status=401]").status_code == 502
    assert wait_until(lambda: len(quarantined(first, "only")) == 1)
    assert wait_until(lambda: chat(second.url, customer, "t/only").status_code == 503, timeout=2)
    (key_id,) = quarantined(first, "only")
    release(second, "only", key_id)
    assert chat(second.url, customer, "t/only").status_code == 200
    # The replica that quarantined it serves with it again within a poll (0.25 s) or the Redis nudge.
    assert wait_until(lambda: chat(first.url, customer, "t/only").status_code == 200, timeout=2)
