"""The Redis limiter (limits/redis.py) on a fake clock, against the real Redis: the scripts take the
test's time in place of Redis's TIME (`redis_clock`), so boundaries, refills, retry-after values,
slot expiry and the fallback's retry window are exact, and nothing sleeps.

Only the keys' lifetimes (PEXPIRE: the time a bucket needs to drain, plus 1 s) stay in real time;
fake time runs far ahead of real time here, so no key lapses while a test still needs it. The
replica-sharing and outage tests on Redis's own clock are in tests/service/test_redis_limiter.py.
"""

from __future__ import annotations

import os
import random
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from conftest import free_port
from fake_clock import FakeClock
from nemorouter.limits.gcra import Decision
from nemorouter.limits.local import LimitExceeded, LocalLimiter, Ticket
from nemorouter.limits.redis import RedisLimiter

REDIS = os.environ.get("NEMO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _client(url: str = REDIS) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)


@pytest.fixture
async def shared() -> AsyncIterator[tuple[FakeClock, RedisLimiter, RedisLimiter]]:
    """A fake clock and two replicas' limiters on it, under a key prefix of their own."""
    clock = FakeClock(1_000_000.0)
    prefix = f"nemo-clock-{secrets.token_hex(6)}:"
    one = RedisLimiter(_client(), prefix, clock=clock, redis_clock=clock)
    two = RedisLimiter(_client(), prefix, clock=clock, redis_clock=clock)
    yield clock, one, two
    await one.close()
    await two.close()
    cleaner = _client()
    keys = [k async for k in cleaner.scan_iter(match=f"{prefix}*")]
    if keys:
        await cleaner.delete(*keys)
    await cleaner.aclose()


async def _refusal(
    limiter: RedisLimiter, rpm: int | None, tpm: int | None, conc: int | None, tokens: int = 1
) -> LimitExceeded:
    with pytest.raises(LimitExceeded) as caught:
        await limiter.admit_shared("k", rpm, tpm, conc, tokens)
    return caught.value


async def _settled(limiter: RedisLimiter, ticket: Ticket, actual: int | None) -> None:
    """`finish` corrects Redis in the background (a correction alone waits for the next admission
    call, at most CORRECTION_DELAY); send it now and wait for that write."""
    limiter.finish(ticket, actual)
    await limiter.flush()


async def test_rpm_boundary_and_retry_after_are_exact(
    shared: tuple[FakeClock, RedisLimiter, RedisLimiter],
) -> None:
    clock, one, two = shared
    remaining = []
    for i in range(5):
        ticket = await (one, two)[i % 2].admit_shared("k", 5, None, None, 1)
        remaining.append(ticket.decisions[0][1].remaining)
    assert remaining == [4, 3, 2, 1, 0]
    refused = await _refusal(one, 5, None, None)
    assert refused.what == "requests"
    assert refused.decision.retry_after == 12.0  # 60 s / 5, to the microsecond
    assert refused.decision.reset_after == 60.0
    clock.advance(11.999)
    assert (await _refusal(two, 5, None, None)).decision.retry_after == pytest.approx(0.001, abs=1e-6)
    clock.advance(0.001)  # exactly the boundary: one more fits, and only one
    ticket = await two.admit_shared("k", 5, None, None, 1)
    assert ticket.decisions[0][1].remaining == 0
    assert (await _refusal(one, 5, None, None)).decision.retry_after == 12.0


async def test_a_quiet_minute_resets_the_window(shared: tuple[FakeClock, RedisLimiter, RedisLimiter]) -> None:
    clock, one, _ = shared
    for _ in range(3):
        await one.admit_shared("k", 3, None, None, 1)
    await _refusal(one, 3, None, None)
    clock.advance(59.0)  # two of three intervals (20 s each) are back, not the third
    for _ in range(2):
        await one.admit_shared("k", 3, None, None, 1)
    await _refusal(one, 3, None, None)
    clock.advance(60.0)
    fresh = await one.admit_shared("k", 3, None, None, 1)
    assert fresh.headers["x-ratelimit-remaining-requests"] == "2"


async def test_tokens_refill_over_time(shared: tuple[FakeClock, RedisLimiter, RedisLimiter]) -> None:
    clock, one, two = shared
    await one.admit_shared("k", None, 600, None, 600)  # the whole minute's tokens, 10 a second
    clock.advance(3.0)
    refused = await _refusal(two, None, 600, None, 31)
    assert refused.what == "tokens"
    assert refused.decision.retry_after == pytest.approx(0.1, abs=1e-6)  # one token short
    ticket = await two.admit_shared("k", None, 600, None, 30)
    assert ticket.headers["x-ratelimit-remaining-tokens"] == "0"


async def test_token_estimates_are_corrected_at_settle(
    shared: tuple[FakeClock, RedisLimiter, RedisLimiter],
) -> None:
    clock, one, two = shared
    over = await one.admit_shared("k", None, 100, None, 80)
    assert over.headers["x-ratelimit-remaining-tokens"] == "20"
    await _settled(one, over, 10)  # used 10 of the 80 charged: 70 come back
    assert (await two.admit_shared("k", None, 100, None, 30)).headers["x-ratelimit-remaining-tokens"] == "60"
    under = await two.admit_shared("k", None, 100, None, 10)  # 50 left after it
    await _settled(two, under, 60)  # used 60: 50 more are charged, the bucket is full
    refused = await _refusal(one, None, 100, None, 1)
    assert refused.decision.retry_after == pytest.approx(0.6, abs=1e-6)  # one token, 60 s / 100
    clock.advance(0.6)
    await one.admit_shared("k", None, 100, None, 1)


async def test_a_settled_estimate_of_a_drained_bucket_is_dropped(
    shared: tuple[FakeClock, RedisLimiter, RedisLimiter],
) -> None:
    """A correction that lands after the bucket has drained cannot make credit for later."""
    clock, one, _ = shared
    ticket = await one.admit_shared("k", None, 100, None, 50)
    clock.advance(120.0)
    await _settled(one, ticket, 0)  # 50 back, on a bucket long empty: nothing to give
    assert (await one.admit_shared("k", None, 100, None, 100)).headers["x-ratelimit-remaining-tokens"] == "0"
    await _refusal(one, None, 100, None, 1)


async def test_concurrency_slots_are_released_and_lapse_without_renewal(
    shared: tuple[FakeClock, RedisLimiter, RedisLimiter],
) -> None:
    clock, live, dying = shared
    held = await live.admit_shared("k", None, None, 2, 1)
    await dying.admit_shared("k", None, None, 2, 1)  # never finished, never renewed: a dead replica
    refused = await _refusal(live, None, None, 2)
    assert (refused.what, refused.headers) == ("concurrency", {"x-ratelimit-limit-concurrency": "2"})
    await _settled(live, held, None)
    again = await live.admit_shared("k", None, None, 2, 1)  # the released slot is free at once
    await _refusal(live, None, None, 2)
    # The live replica renews its slot every 20 s; the dead one's lapses after SLOT_TTL (30 s).
    clock.advance(20.0)
    await live.renew()
    clock.advance(9.999)
    assert (await _refusal(live, None, None, 2)).what == "concurrency"  # 1 ms short of SLOT_TTL
    clock.advance(0.001)
    third = await live.admit_shared("k", None, None, 2, 1)  # at SLOT_TTL the dead replica's slot lapsed
    clock.advance(20.0)
    await live.renew()
    clock.advance(20.0)  # 40 s after `again` was taken: renewed, so still held
    await _refusal(live, None, None, 2)
    for ticket in (again, third):
        await _settled(live, ticket, None)
    for _ in range(2):
        await live.admit_shared("k", None, None, 2, 1)


def _same(redis_decision: Decision, local_decision: Decision) -> None:
    assert redis_decision.allowed == local_decision.allowed
    assert redis_decision.remaining == local_decision.remaining
    assert redis_decision.retry_after == pytest.approx(local_decision.retry_after, abs=2e-6)
    assert redis_decision.reset_after == pytest.approx(local_decision.reset_after, abs=2e-6)


async def test_the_shared_limiter_decides_like_the_local_one(
    shared: tuple[FakeClock, RedisLimiter, RedisLimiter],
) -> None:
    """Two hundred random requests, pauses and settlements on one fake clock: Redis and the
    in-process limiter give the same decision every time (the module's promise)."""
    clock, one, _ = shared
    local = LocalLimiter(clock)
    one.SLOT_TTL = 3600.0  # the local limiter's slots never lapse; none of these runs an hour
    chance = random.Random(21)
    open_tickets: list[tuple[Ticket, Ticket]] = []
    for _ in range(200):
        clock.advance(chance.choice((0.0, 0.25, 1.0, 3.5, 12.0)))
        if open_tickets and chance.random() < 0.3:
            shared_ticket, local_ticket = open_tickets.pop(chance.randrange(len(open_tickets)))
            actual = chance.choice((None, 0, 7, 40, 200))
            await _settled(one, shared_ticket, actual)
            local.finish(local_ticket, actual)
            continue
        estimate = chance.choice((1, 5, 30, 90))
        try:
            local_ticket = local.admit("k", 6, 120, 3, estimate)
        except LimitExceeded as local_refusal:
            shared_refusal = await _refusal(one, 6, 120, 3, estimate)
            assert shared_refusal.what == local_refusal.what
            assert shared_refusal.headers == local_refusal.headers
            _same(shared_refusal.decision, local_refusal.decision)
            continue
        shared_ticket = await one.admit_shared("k", 6, 120, 3, estimate)
        assert [kind for kind, _ in shared_ticket.decisions] == [kind for kind, _ in local_ticket.decisions]
        for (_, a), (_, b) in zip(shared_ticket.decisions, local_ticket.decisions, strict=True):
            _same(a, b)
        open_tickets.append((shared_ticket, local_ticket))


async def test_unreachable_redis_falls_back_and_is_retried_after_the_window() -> None:
    """Redis down: per-replica limits at once, no request fails; the next try of Redis is exactly
    RETRY_AFTER later on the limiter's clock."""
    clock = FakeClock()
    limiter = RedisLimiter(_client(f"redis://127.0.0.1:{free_port()}/0"), "down:", clock=clock)
    first = await limiter.admit_shared("k", 2, None, None, 1)
    assert limiter.degraded and not first.shared
    clock.advance(limiter.RETRY_AFTER - 0.001)
    assert limiter.degraded
    second = await limiter.admit_shared("k", 2, None, None, 1)  # still local: the burst of two is used
    assert not second.shared and second.headers["x-ratelimit-remaining-requests"] == "0"
    clock.advance(0.001)
    assert not limiter.degraded  # the window is over: the next request tries Redis again
    with pytest.raises(LimitExceeded):  # which fails again, and the local bucket still binds
        await limiter.admit_shared("k", 2, None, None, 1)
    assert limiter.degraded
    await limiter.close()
