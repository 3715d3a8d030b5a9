"""Service-account tokens (providers/google_auth.py, cached by engine/minted.py) minted by google-auth from the real sim's
token endpoint over loopback: shared refreshes, early refresh, and what each failure means."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from nemorouter.engine.minted import MintedSecrets
from nemorouter.providers.google_auth import GOOGLE, classify
from nemorouter.providers.types import Failure, FailureKind, Minter, Upstream
from nemorouter.sim.server import create_sim_app, sim_config
from service_accounts import ServiceAccount, accept, issued_tokens, new_account


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    server = uvicorn.Server(sim_config(create_sim_app(), "127.0.0.1", 0))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "sim did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)


def upstream(account: ServiceAccount) -> Upstream:
    return Upstream("gemini-2.5-flash", "http://unused", account.key_file(), 100, {"project": "p"})


def grants(sim_url: str, account: ServiceAccount) -> int:
    """How many token requests reached the sim (the grant itself is never recorded)."""
    found = httpx.get(f"{sim_url}/_sim/requests").json()
    return sum(1 for r in found if r["path"] == "/_sim/vertex/token")


async def test_concurrent_requests_share_one_refresh_and_reuse_it(sim_url: str) -> None:
    account = new_account(sim_url)
    accept(sim_url, account)
    httpx.delete(f"{sim_url}/_sim/requests")
    tokens = MintedSecrets()
    got = await asyncio.gather(*(tokens.upstream_for("pk_1", upstream(account), GOOGLE) for _ in range(8)))
    assert all(isinstance(u, Upstream) for u in got)
    secrets_ = {u.secret for u in got if isinstance(u, Upstream)}
    assert len(secrets_) == 1 and secrets_ <= set(issued_tokens(sim_url))
    again = await tokens.upstream_for("pk_1", upstream(account), GOOGLE)
    assert isinstance(again, Upstream) and again.secret in secrets_
    assert (again.model, again.max_output, again.config) == ("gemini-2.5-flash", 100, {"project": "p"})
    assert grants(sim_url, account) == 1


async def test_a_token_is_refreshed_before_it_expires_and_after_a_refusal(sim_url: str) -> None:
    account = new_account(sim_url)
    accept(sim_url, account, lifetime=4)  # a successor from 2 s (half its life), the old one sent until 3 s
    tokens = MintedSecrets()
    first = await tokens.upstream_for("pk_2", upstream(account), GOOGLE)
    same = await tokens.upstream_for("pk_2", upstream(account), GOOGLE)
    assert isinstance(first, Upstream) and isinstance(same, Upstream) and first.secret == same.secret
    await asyncio.sleep(2.2)
    during = await tokens.upstream_for("pk_2", upstream(account), GOOGLE)  # served at once, a refresh begun
    assert isinstance(during, Upstream) and during.secret == first.secret
    for _ in range(50):
        later = await tokens.upstream_for("pk_2", upstream(account), GOOGLE)
        assert isinstance(later, Upstream)
        if later.secret != first.secret:
            break
        await asyncio.sleep(0.02)
    assert later.secret != first.secret and later.secret in issued_tokens(sim_url)
    tokens.forget("pk_2")
    fresh = await tokens.upstream_for("pk_2", upstream(account), GOOGLE)
    assert isinstance(fresh, Upstream) and fresh.secret != later.secret


async def test_past_its_last_use_a_token_is_not_sent_the_request_waits_for_the_next(sim_url: str) -> None:
    account = new_account(sim_url)
    accept(sim_url, account, lifetime=2)  # sent until 1.5 s
    tokens = MintedSecrets()
    first = await tokens.upstream_for("pk_8", upstream(account), GOOGLE)
    await asyncio.sleep(1.6)
    second = await tokens.upstream_for("pk_8", upstream(account), GOOGLE)
    assert isinstance(first, Upstream) and isinstance(second, Upstream) and first.secret != second.secret


async def test_a_refused_account_is_an_auth_failure_of_its_key(sim_url: str) -> None:
    stranger = new_account(sim_url, "stranger")  # the sim never accepted its key
    failure = await MintedSecrets().upstream_for("pk_3", upstream(stranger), GOOGLE)
    assert isinstance(failure, Failure) and failure.kind is FailureKind.AUTH and failure.key_rejected
    assert failure.message == "the token endpoint refused the service account (invalid_grant)"
    assert stranger.private_key not in failure.message


async def test_a_token_endpoint_that_is_down_is_retryable_and_not_the_keys_fault(sim_url: str) -> None:
    account = new_account(sim_url, "down")
    accept(sim_url, account, status=503)
    failure = await MintedSecrets().upstream_for("pk_4", upstream(account), GOOGLE)
    assert isinstance(failure, Failure) and failure.kind is FailureKind.SERVER and failure.retryable
    assert not failure.key_rejected


async def test_an_unreachable_token_endpoint_is_a_connect_failure(sim_url: str) -> None:
    account = new_account("http://127.0.0.1:9", "nowhere")
    failure = await MintedSecrets().upstream_for("pk_5", upstream(account), GOOGLE)
    assert isinstance(failure, Failure) and failure.kind is FailureKind.CONNECT and failure.retryable


async def test_an_unusable_secret_is_refused_without_echoing_it() -> None:
    broken = Upstream("m", "http://unused", json.dumps({"type": "service_account", "private_key": "x"}))
    failure = await MintedSecrets().upstream_for("pk_6", broken, GOOGLE)
    assert isinstance(failure, Failure) and failure.kind is FailureKind.AUTH
    assert "private_key" not in failure.message


async def test_the_event_loop_keeps_running_while_a_token_is_minted(sim_url: str) -> None:
    account = new_account(sim_url, "slowish")
    accept(sim_url, account)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.ensure_future(tick())
    minted = await MintedSecrets().upstream_for("pk_7", upstream(account), GOOGLE)
    ticker.cancel()
    assert isinstance(minted, Upstream) and ticks > 1


async def test_a_failed_background_refresh_is_retried_later_not_per_request() -> None:
    from google.auth.exceptions import RefreshError

    now = [0.0]
    calls: list[float] = []

    def mint(upstream: Upstream) -> tuple[str, float]:  # google-auth's part: a token, then invalid_grant
        calls.append(now[0])
        if len(calls) > 1:
            raise RefreshError("invalid_grant: account disabled", {"error": "invalid_grant"})
        return "ya29.first", 100.0

    tokens = MintedSecrets(clock=lambda: now[0])
    minter = Minter(mint, classify)
    up = Upstream("m", "http://unused", "{}")

    async def secret_at(t: float) -> str | FailureKind:
        now[0] = t
        got = await tokens.upstream_for("pk_9", up, minter)
        await asyncio.sleep(0.05)  # let a background refresh finish
        return got.secret if isinstance(got, Upstream) else got.kind

    assert await secret_at(0) == "ya29.first"  # refresh from 50 s, sent until 75 s
    assert await secret_at(60) == "ya29.first" and calls == [0, 60]  # served; the successor refused
    assert await secret_at(61) == "ya29.first" and calls == [0, 60]  # no new try per request
    assert await secret_at(66) == "ya29.first" and calls == [0, 60, 66]  # tried again after 5 s
    assert await secret_at(80) is FailureKind.AUTH  # past its last use: the refusal is the answer
