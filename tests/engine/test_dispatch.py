"""The dispatcher's failure policy (every `FailureKind`, matched exhaustively) and its attempts
over a real loopback HTTP server."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import orjson
import pytest

from nemorouter.engine.dispatch import (
    Attempt,
    AttemptsFailed,
    Consequence,
    Dispatcher,
    Operation,
    consequence,
)
from nemorouter.engine.health import Health
from nemorouter.engine.http import UpstreamClient
from nemorouter.providers.registry import OPENAI
from nemorouter.providers.types import Failure, FailureKind, Minter, Upstream
from nemorouter.settings import Timeouts

from .test_health import FakeClock

# The policy, written out: (kind, against_key) -> what it does. Only the key's own failures
# held against it touch the key; only the deployment's failures count towards its breaker.
EXPECTED = {
    FailureKind.RATE_LIMITED: (Consequence.COOL_KEY, Consequence.NONE),
    FailureKind.AUTH: (Consequence.QUARANTINE_KEY, Consequence.NONE),
    FailureKind.SERVER: (Consequence.TRIP_BREAKER, Consequence.TRIP_BREAKER),
    FailureKind.OVERLOADED: (Consequence.TRIP_BREAKER, Consequence.TRIP_BREAKER),
    FailureKind.TIMEOUT: (Consequence.TRIP_BREAKER, Consequence.TRIP_BREAKER),
    FailureKind.CONNECT: (Consequence.TRIP_BREAKER, Consequence.TRIP_BREAKER),
    FailureKind.PROTOCOL: (Consequence.TRIP_BREAKER, Consequence.TRIP_BREAKER),
    FailureKind.INVALID: (Consequence.NONE, Consequence.NONE),
    FailureKind.FORBIDDEN: (Consequence.NONE, Consequence.NONE),
    FailureKind.UNSUPPORTED: (Consequence.NONE, Consequence.NONE),
}


class Recorder:
    """The layer above, as the dispatcher sees it: what it was told."""

    def __init__(self) -> None:
        self.failed: list[tuple[str, FailureKind]] = []
        self.refused: list[tuple[str, Failure]] = []

    def attempt_failed(self, provider: str, kind: FailureKind) -> None:
        self.failed.append((provider, kind))

    def key_refused(self, attempt: Attempt[object], failure: Failure) -> None:
        self.refused.append((attempt.key_id, failure))


def _attempt(name: str, base_url: str = "http://127.0.0.1:9") -> Attempt[str]:
    return Attempt(
        OPENAI,
        Upstream("gpt-test", base_url, "sk-test-" + name),
        Timeouts(connect=2, first_byte=5, idle=5, total=5),
        "deployment:" + name,
        f"key:{name}:{name}",
        "openai",
        name,
        "k-" + name,
        name,
    )


def test_the_policy_covers_every_failure_kind() -> None:
    assert set(EXPECTED) == set(FailureKind)  # a new kind must be added here, and to the match
    for kind in FailureKind:
        held, excused = EXPECTED[kind]
        assert consequence(Failure(kind, 500, "x", retryable=True)) is held, kind
        assert consequence(Failure(kind, 500, "x", retryable=True, against_key=False)) is excused, kind


@pytest.mark.parametrize("kind", list(FailureKind), ids=str)
def test_each_failure_kind_does_what_the_policy_says(kind: FailureKind) -> None:
    clock = FakeClock()
    health = Health(clock=clock, threshold=2, cooldown=30.0)
    observer = Recorder()
    dispatcher = Dispatcher(UpstreamClient(Timeouts()), observer, health)
    attempt = _attempt("d1")
    failure = Failure(kind, 500, "x", retryable=True, retry_after=7)
    for _ in range(2):
        dispatcher.failed(attempt, failure)
    assert observer.failed == [("openai", kind), ("openai", kind)]
    action = EXPECTED[kind][0]
    assert health.available(attempt.key_breaker) is (action is not Consequence.COOL_KEY)
    assert health.available(attempt.breaker) is (action is not Consequence.TRIP_BREAKER)
    assert [k for k, _ in observer.refused] == (
        ["k-d1", "k-d1"] if action is Consequence.QUARANTINE_KEY else []
    )
    if action is Consequence.COOL_KEY:
        assert health.rate_limited_for(attempt.key_breaker) == 7.0  # the provider's retry-after
        assert health.describe(attempt.breaker)["failures"] == 0
    if action is Consequence.TRIP_BREAKER:
        assert health.describe(attempt.breaker)["state"] == "open"
        assert health.describe(attempt.key_breaker)["failures"] == 0


def test_a_rate_limit_without_retry_after_cools_the_key_for_a_second() -> None:
    clock = FakeClock()
    health = Health(clock=clock)
    dispatcher = Dispatcher(UpstreamClient(Timeouts()), Recorder(), health)
    attempt = _attempt("d1")
    dispatcher.failed(attempt, Failure(FailureKind.RATE_LIMITED, 429, "slow down", retryable=True))
    assert health.rate_limited_for(attempt.key_breaker) == 1.0
    clock.advance(1.0)
    assert health.available(attempt.key_breaker)


# -- over a real socket -------------------------------------------------------------------

REPLIES = {
    "/refused": (401, {"error": {"message": "Incorrect API key", "code": "invalid_api_key"}}),
    "/limited": (429, {"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}}),
    "/ok": (
        200,
        {
            "id": "x",
            "object": "chat.completion",
            "model": "gpt-test",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        },
    ),
}


@pytest.fixture
async def provider() -> AsyncIterator[tuple[str, list[str]]]:
    """A loopback provider answering by path (the attempt's base URL); records what it was asked."""
    seen: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            lines = head.decode().split("\r\n")
            path = lines[0].split(" ")[1].removesuffix("/chat/completions")
            length = next(
                int(v) for k, _, v in (h.partition(": ") for h in lines[1:]) if k.lower() == "content-length"
            )
            await reader.readexactly(length)
            seen.append(path)
            status, body = REPLIES[path]
            data = orjson.dumps(body)
            extra = "retry-after: 9\r\n" if status == 429 else ""
            writer.write(
                f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{extra}"
                f"content-length: {len(data)}\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", seen
    server.close()
    await server.wait_closed()


BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


async def test_a_second_refused_key_ends_the_attempts_and_only_the_first_is_quarantined(
    provider: tuple[str, list[str]],
) -> None:
    base, seen = provider
    client = UpstreamClient(Timeouts())
    await client.start()
    observer = Recorder()
    dispatcher = Dispatcher(client, observer, Health(clock=FakeClock()))
    attempts = [_attempt(n, base + "/refused") for n in ("a", "b", "c")]
    try:
        with pytest.raises(AttemptsFailed) as caught:
            await dispatcher.send(attempts, BODY, Operation.CHAT, 0.0)
    finally:
        await client.close()
    assert seen == ["/refused", "/refused"]  # the third key was never tried
    assert [k for k, _ in observer.refused] == ["k-a"]
    final = caught.value.final
    assert final is not None and final.kind is FailureKind.AUTH and not final.against_key


async def test_a_rate_limited_key_cools_down_and_the_next_attempt_serves(
    provider: tuple[str, list[str]],
) -> None:
    base, seen = provider
    client = UpstreamClient(Timeouts())
    await client.start()
    health = Health(clock=FakeClock())
    dispatcher = Dispatcher(client, Recorder(), health)
    limited, ok = _attempt("a", base + "/limited"), _attempt("b", base + "/ok")
    try:
        served, completion = await dispatcher.send([limited, ok], BODY, Operation.CHAT, 0.0)
    finally:
        await client.close()
    assert served is ok and seen == ["/limited", "/ok"]
    assert completion.usage is not None and completion.usage.total_tokens == 4
    assert health.rate_limited_for(limited.key_breaker) == 9.0  # the provider's retry-after
    assert health.available(limited.breaker)  # a key's 429 is not the deployment's failure
    assert health.latency_ms(ok.breaker) is not None


async def test_a_provider_without_embeddings_is_skipped_unsent(provider: tuple[str, list[str]]) -> None:
    base, seen = provider
    from nemorouter.providers import anthropic

    attempt = _attempt("a", base + "/ok")
    attempt.adapter = anthropic.ADAPTER  # serves no embeddings
    dispatcher = Dispatcher(UpstreamClient(Timeouts()), Recorder(), Health(clock=FakeClock()))
    with pytest.raises(AttemptsFailed) as caught:
        await dispatcher.send([attempt], {"model": "m", "input": "x"}, Operation.EMBEDDINGS, 0.0)
    assert seen == [] and caught.value.final is None
    assert [f.kind for f in caught.value.failures] == [FailureKind.UNSUPPORTED]


def _minter(calls: list[str], refuse: set[str]) -> Minter:
    """google-auth's part (tested against the sim in test_minted_google.py): a token, or the
    RefreshError an `invalid_grant` raises."""
    from google.auth.exceptions import RefreshError

    from nemorouter.providers.google_auth import classify

    def mint(upstream: Upstream) -> tuple[str, float]:
        secret = upstream.secret
        calls.append(secret)
        if secret in refuse:
            raise RefreshError("invalid_grant: Invalid JWT Signature.", {"error": "invalid_grant"})
        return "ya29.token-for-" + secret, 3600.0

    return Minter(mint, classify)


async def test_only_kinds_that_mint_tokens_ask_for_one_and_a_refused_account_is_quarantined() -> None:
    from nemorouter.providers import vertex

    calls: list[str] = []
    observer = Recorder()
    client = UpstreamClient(Timeouts())
    await client.start()
    dispatcher = Dispatcher(client, observer, Health(clock=FakeClock()))
    adapter = dataclasses.replace(vertex.ADAPTER, minter=_minter(calls, {"sa-bad"}))
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(AttemptsFailed):
        await dispatcher.send([_attempt("plain")], body, Operation.CHAT, 0.0)
    assert calls == []  # an OpenAI attempt never touches the token cache
    config = {"project": "nemo-test", "region": "us-east5"}
    refused = Attempt(
        adapter,
        Upstream("gemini-2.5-flash", "http://127.0.0.1:9", "sa-bad", 100, config),
        Timeouts(connect=2, first_byte=5, idle=5, total=5),
        "deployment:v",
        "key:v:bad",
        "vertex",
        "v",
        "k-bad",
        "v",
    )
    try:
        with pytest.raises(AttemptsFailed) as failed:
            await dispatcher.send([refused], body, Operation.CHAT, 0.0)
    finally:
        await client.close()
    assert calls == ["sa-bad"] and [k for k, _ in observer.refused] == ["k-bad"]
    assert failed.value.failures[0].kind is FailureKind.AUTH
    assert "sa-bad" not in failed.value.failures[0].message


def test_every_operation_but_chat_has_a_builder_and_exactly_one_reader() -> None:
    from nemorouter.engine.dispatch import _BUILDS, _READS_JSON, _READS_MEDIA

    others = set(Operation) - {Operation.CHAT}
    assert set(_BUILDS) == others
    assert set(_READS_JSON) | set(_READS_MEDIA) == others and not set(_READS_JSON) & set(_READS_MEDIA)
