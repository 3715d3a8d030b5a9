"""Rate limits in Redis (limits/redis.py): the local limiter's semantics, shared by replicas, and
what happens when Redis goes away and comes back.

Real Redis: the one at NEMO_TEST_REDIS_URL (default 127.0.0.1:6379, a unique key prefix per
test), and for the outage a redis-server of our own on a random port that the test kills.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from conftest import free_port
from nemorouter.limits.local import AccountLimits, LimitExceeded, LocalLimiter
from nemorouter.limits.redis import RedisLimiter

REDIS = os.environ.get("NEMO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _client(url: str = REDIS) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"nemo-test-{secrets.token_hex(6)}:"
    yield name
    client = _client()
    keys = [k async for k in client.scan_iter(match=f"{name}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def _pair(prefix: str) -> tuple[RedisLimiter, RedisLimiter]:
    """Two replicas' limiters on one Redis."""
    return RedisLimiter(_client(), prefix), RedisLimiter(_client(), prefix)


async def _refused(limiter: RedisLimiter, **kwargs: int | None) -> LimitExceeded:
    args = {"rpm": None, "tpm": None, "max_concurrency": None, "tokens_estimate": 1, **kwargs}
    with pytest.raises(LimitExceeded) as caught:
        await limiter.admit_shared(
            "k",
            args["rpm"],
            args["tpm"],
            args["max_concurrency"],
            args["tokens_estimate"],  # type: ignore[arg-type]
        )
    return caught.value


async def test_rpm_is_shared_and_has_the_local_headers(prefix: str) -> None:
    one, two = await _pair(prefix)
    local = LocalLimiter()
    remaining = []
    for i in range(5):
        ticket = await (one if i % 2 else two).admit_shared("k", 5, None, None, 1)
        assert ticket.shared and not one.degraded
        expected = local.admit("k", 5, None, None, 1).headers
        assert ticket.headers.keys() == expected.keys()
        assert ticket.headers["x-ratelimit-limit-requests"] == "5"
        remaining.append(int(ticket.headers["x-ratelimit-remaining-requests"]))
    assert remaining == [4, 3, 2, 1, 0]
    refused = await _refused(one, rpm=5)
    assert refused.what == "requests"
    assert 11.5 < refused.decision.retry_after <= 12.0  # 60 s / 5, less the time the test took
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"] == "1m0s"
    await one.close()
    await two.close()


async def test_a_refusal_charges_nothing_and_account_limits_bind_every_key(prefix: str) -> None:
    one, two = await _pair(prefix)
    account = AccountLimits("acct", 3, None)
    for i in range(3):
        await one.admit_shared(f"key{i}", 100, None, None, 1, account)
    with pytest.raises(LimitExceeded) as caught:
        await two.admit_shared("key9", 100, None, None, 1, account)
    assert caught.value.what == "account requests"
    assert caught.value.headers["x-ratelimit-remaining-requests"] == "99"  # the key's own, uncharged
    # The refusal charged nothing: key9's own bucket still has its whole burst.
    ticket = await two.admit_shared("key9", 100, None, None, 1)
    assert ticket.headers["x-ratelimit-remaining-requests"] == "99"
    await one.close()
    await two.close()


async def test_tpm_estimate_is_corrected_by_the_real_count(prefix: str) -> None:
    one, two = await _pair(prefix)
    ticket = await one.admit_shared("k", None, 100, None, 80)
    assert ticket.headers["x-ratelimit-remaining-tokens"] == "20"
    assert (await _refused(two, tpm=100, tokens_estimate=30)).what == "tokens"
    one.finish(ticket, 10)  # it used 10, not 80: 70 come back
    await one.flush()
    again = await two.admit_shared("k", None, 100, None, 30)
    assert again.headers["x-ratelimit-remaining-tokens"] == "60"
    await one.close()
    await two.close()


async def test_concurrency_is_shared_and_a_dead_replicas_slots_lapse(prefix: str) -> None:
    live, dying = await _pair(prefix)
    dying.SLOT_TTL = 0.6
    await dying.admit_shared("k", None, None, 2, 1)
    await dying.admit_shared("k", None, None, 2, 1)
    refused = await _refused(live, max_concurrency=2)
    assert refused.what == "concurrency"
    assert refused.headers == {"x-ratelimit-limit-concurrency": "2"}
    await dying.redis.aclose()  # dies without finishing (no renewal from now on)
    await asyncio.sleep(0.8)
    ticket = await live.admit_shared("k", None, None, 2, 1)  # the dead replica's slots lapsed
    # A live replica renews its slots, so they outlast SLOT_TTL while the request runs.
    live.SLOT_TTL = 0.6
    held = await live.admit_shared("k", None, None, 2, 1)
    for _ in range(3):
        await asyncio.sleep(0.3)
        await live.renew()
    assert (await _refused(live, max_concurrency=2)).what == "concurrency"
    live.finish(held, None)
    live.finish(ticket, None)
    await asyncio.gather(*live._tasks)
    await live.admit_shared("k", None, None, 2, 1)
    await live.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    yield port, tmp_path
    subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], capture_output=True, timeout=10)


def _start_redis(port: int, where: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(where)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ping = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True)
        if ping.stdout.strip() == "PONG":
            return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


async def test_redis_down_falls_back_to_per_replica_limits_then_recovers(own_redis: tuple[int, Path]) -> None:
    port, where = own_redis
    server = _start_redis(port, where)
    limiter = RedisLimiter(_client(f"redis://127.0.0.1:{port}/0"), "t:")
    limiter.RETRY_AFTER = 0.3
    first = await limiter.admit_shared("k", 3, None, 1, 1)
    assert first.shared and not limiter.degraded
    server.kill()
    server.wait()
    # Down: the same limits, decided by this process alone. No request fails because of Redis.
    started = time.monotonic()
    fallback = await limiter.admit_shared("k", 3, None, 1, 1)
    assert time.monotonic() - started < 1.0
    assert limiter.degraded and not fallback.shared
    assert fallback.headers["x-ratelimit-remaining-requests"] == "2"  # a fresh local bucket
    refused = await _refused(limiter, rpm=3, max_concurrency=1)
    assert refused.what == "concurrency"  # the local slot is taken by `fallback`
    limiter.finish(fallback, None)
    await limiter.admit_shared("k", 3, None, None, 1)
    limiter.finish(await limiter.admit_shared("k", 3, None, None, 1), None)
    assert (await _refused(limiter, rpm=3)).what == "requests"  # three local admits: the local rpm binds
    # Back: after RETRY_AFTER the shared limits are used again (a fresh Redis: fresh buckets).
    server = _start_redis(port, where)
    await asyncio.sleep(0.35)
    again = await limiter.admit_shared("k", 3, None, 1, 1)
    assert again.shared and not limiter.degraded
    assert again.headers["x-ratelimit-remaining-requests"] == "2"
    check = _client(f"redis://127.0.0.1:{port}/0")
    assert await check.exists("t:rq:k") == 1 and await check.zcard("t:conc:k") == 1
    limiter.finish(again, None)
    await asyncio.gather(*limiter._tasks)
    assert await check.zcard("t:conc:k") == 0
    await check.aclose()
    await limiter.close()
    server.kill()
    server.wait()
