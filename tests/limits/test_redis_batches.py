"""Admissions and finishes of many requests go to Redis together (limits/redis.py, ADMIT_MANY and
FINISH_MANY): one round trip for those of one event-loop iteration, each decided or applied
exactly as alone (limits counted one after the other, slot freed, token estimate corrected).
Real Redis, behind a counting proxy (tests/wire_count.py)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from nemorouter.limits.local import LimitExceeded
from nemorouter.limits.redis import RedisLimiter
from wire_count import WireCount, counting_proxy

REDIS = os.environ.get("NEMO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"nemo-test-{secrets.token_hex(6)}:"
    yield name
    client = aioredis.Redis.from_url(REDIS)
    keys = [k async for k in client.scan_iter(match=f"{name}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@contextmanager
def counted_limiter(prefix: str) -> Iterator[tuple[RedisLimiter, WireCount]]:
    """A limiter whose Redis calls pass a proxy that counts them."""
    where = urlsplit(REDIS)
    with counting_proxy("redis", (where.hostname or "127.0.0.1", where.port or 6379)) as (port, count):
        yield RedisLimiter(aioredis.Redis.from_url(f"redis://127.0.0.1:{port}{where.path}"), prefix), count


async def test_finishes_of_one_iteration_share_a_round_trip_and_each_applies(prefix: str) -> None:
    with counted_limiter(prefix) as (limiter, count):
        keys = [f"k{i}" for i in range(5)]
        # Each key: at most 1 at a time and 100 tokens a minute, 80 estimated per request.
        tickets = [await limiter.admit_shared(k, None, 100, 1, 80) for k in keys]
        for k in keys:
            with pytest.raises(Exception, match="concurrency"):
                await limiter.admit_shared(k, None, 100, 1, 80)
        # Warm the batch script (its first call loads it), then count the finishes alone.
        warm = [await limiter.admit_shared(f"warm{i}", None, 100, 1, 1) for i in range(2)]
        for ticket in warm:
            limiter.finish(ticket, 1)
        await asyncio.gather(*limiter._tasks)
        count.take()
        for ticket in tickets:
            limiter.finish(ticket, 10)  # each used 10 of its 80: 70 come back, and its slot
        await asyncio.gather(*limiter._tasks)
        trips, commands = count.take()
        assert sum(trips.values()) == 1 and commands == {"EVALSHA": 1}, (trips, commands)
        for k in keys:  # the slot is free again and 90 tokens are left: 10 used
            again = await limiter.admit_shared(k, None, 100, 1, 1)
            assert again.headers["x-ratelimit-remaining-tokens"] == "89"
        await limiter.close()


async def test_admissions_of_one_iteration_share_a_round_trip_and_count_in_turn(prefix: str) -> None:
    with counted_limiter(prefix) as (limiter, count):
        await asyncio.gather(*(limiter.admit_shared(f"warm{i}", 10, None, None, 1) for i in range(2)))
        count.take()
        # 3 requests a minute on "k", and at most 2 at a time on "c": 6 and 4 ask at once.
        answers = await asyncio.gather(
            *(limiter.admit_shared("k", 3, None, None, 1) for _ in range(6)),
            *(limiter.admit_shared("c", None, None, 2, 1) for _ in range(4)),
            return_exceptions=True,
        )
        trips, commands = count.take()
        assert sum(trips.values()) == 1 and commands == {"EVALSHA": 1}, (trips, commands)
        by_rate, by_slots = answers[:6], answers[6:]
        assert [a.headers["x-ratelimit-remaining-requests"] for a in by_rate[:3]] == ["2", "1", "0"]
        assert all(isinstance(a, LimitExceeded) and a.what == "requests" for a in by_rate[3:]), by_rate
        assert not any(isinstance(a, BaseException) for a in by_slots[:2])
        assert all(isinstance(a, LimitExceeded) and a.what == "concurrency" for a in by_slots[2:])
        await limiter.close()


async def test_finishes_waiting_when_admissions_go_share_their_round_trip_and_apply_first(
    prefix: str,
) -> None:
    with counted_limiter(prefix) as (limiter, count):
        # Warm the combined script (its first call loads it), then count.
        warm = await limiter.admit_shared("warm", None, None, 1, 1)
        limiter.finish(warm, None)
        await limiter.admit_shared("warm2", None, None, 1, 1)
        await asyncio.gather(*limiter._tasks)
        # "k": at most 1 at a time and 100 tokens a minute, 80 estimated per request.
        first = await limiter.admit_shared("k", None, 100, 1, 80)
        count.take()
        # The first request ends (10 of its 80 tokens used) as the next one asks: one round trip,
        # the finish applied before the admission, so the slot is free and 90 tokens are left.
        limiter.finish(first, 10)
        second = await limiter.admit_shared("k", None, 100, 1, 1)
        await asyncio.gather(*limiter._tasks)
        trips, commands = count.take()
        assert sum(trips.values()) == 1 and commands == {"EVALSHA": 1}, (trips, commands)
        assert second.headers["x-ratelimit-remaining-tokens"] == "89"
        with pytest.raises(LimitExceeded, match="concurrency"):  # the second holds the one slot
            await limiter.admit_shared("k", None, 100, 1, 1)
        await limiter.close()


async def test_a_correction_alone_goes_with_the_next_admission(prefix: str) -> None:
    with counted_limiter(prefix) as (limiter, count):
        # Warm the combined script (its first call loads it), then count.
        limiter.finish(await limiter.admit_shared("warm", None, 100, None, 1), 1)
        await limiter.admit_shared("warm2", None, 100, None, 1)
        await limiter.flush()
        # "k": 100 tokens a minute, 80 estimated, no concurrency limit: its finish frees no slot.
        first = await limiter.admit_shared("k", None, 100, None, 80)
        count.take()
        limiter.finish(first, 10)  # used 10 of its 80
        await asyncio.sleep(0.05)  # a request's answer going out, the next one arriving
        trips, _ = count.take()
        assert sum(trips.values()) == 0, trips  # nothing sent on its own meanwhile
        second = await limiter.admit_shared("k", None, 100, None, 1)
        trips, commands = count.take()
        assert sum(trips.values()) == 1 and commands == {"EVALSHA": 1}, (trips, commands)
        # The correction applied before the admission: 70 came back, 1 more taken.
        assert second.headers["x-ratelimit-remaining-tokens"] == "89"
        await limiter.close()


async def test_a_correction_no_admission_carries_goes_alone_in_time(prefix: str) -> None:
    with counted_limiter(prefix) as (limiter, count):
        limiter.CORRECTION_DELAY = 0.2
        other = RedisLimiter(aioredis.Redis.from_url(REDIS), prefix)  # another replica
        first = await limiter.admit_shared("k", None, 100, None, 80)
        count.take()
        limiter.finish(first, 10)
        await asyncio.sleep(0.05)
        assert sum(count.take()[0].values()) == 0  # still waiting for an admission to carry it
        await asyncio.sleep(0.5)  # past the delay: sent on its own, once
        trips, commands = count.take()
        assert sum(trips.values()) == 1 and commands == {"EVALSHA": 1}, (trips, commands)
        again = await other.admit_shared("k", None, 100, None, 1)
        assert again.headers["x-ratelimit-remaining-tokens"] == "89"
        await limiter.close()
        await other.close()


async def test_close_sends_the_corrections_still_waiting(prefix: str) -> None:
    limiter = RedisLimiter(aioredis.Redis.from_url(REDIS), prefix)
    other = RedisLimiter(aioredis.Redis.from_url(REDIS), prefix)
    limiter.finish(await limiter.admit_shared("k", None, 100, None, 80), 10)
    await limiter.close()  # long before CORRECTION_DELAY
    again = await other.admit_shared("k", None, 100, None, 1)
    assert again.headers["x-ratelimit-remaining-tokens"] == "89"
    await other.close()
