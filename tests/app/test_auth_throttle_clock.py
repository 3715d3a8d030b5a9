"""The authentication throttle (web/throttle.py) on a fake clock: the burst, its exact boundary,
the drip after it, the retry-after it reports and the full reset after a quiet minute.

The end-to-end test (tests/e2e/test_auth_throttle.py) shows the 429s over HTTP; this one pins the
numbers, which a wall clock cannot."""

from __future__ import annotations

import pytest

from fake_clock import FakeClock
from nemorouter.web.throttle import FAILURES_PER_MINUTE, AuthThrottle

ADDRESS = "203.0.113.7"


def _fail(throttle: AuthThrottle, times: int, address: str = ADDRESS) -> None:
    for _ in range(times):
        throttle.failed(address)


def test_the_burst_is_exactly_the_per_minute_count() -> None:
    clock = FakeClock()
    throttle = AuthThrottle(30, clock)
    assert throttle.retry_after(ADDRESS) is None  # never failed
    _fail(throttle, 29)
    assert throttle.retry_after(ADDRESS) is None  # 29 of 30: may still try
    throttle.failed(ADDRESS)
    # The 30th failure fills the bucket: the next try waits one interval, 60 s / 30.
    assert throttle.retry_after(ADDRESS) == pytest.approx(2.0)


def test_the_default_is_the_documented_thirty() -> None:
    clock = FakeClock()
    throttle = AuthThrottle(clock=clock)
    _fail(throttle, FAILURES_PER_MINUTE - 1)
    assert throttle.retry_after(ADDRESS) is None
    throttle.failed(ADDRESS)
    assert throttle.retry_after(ADDRESS) == pytest.approx(60 / FAILURES_PER_MINUTE)


def test_retry_after_counts_down_and_then_one_more_try_is_let_through() -> None:
    clock = FakeClock()
    throttle = AuthThrottle(30, clock)
    _fail(throttle, 30)
    clock.advance(1.5)
    assert throttle.retry_after(ADDRESS) == pytest.approx(0.5)
    clock.advance(0.499)
    assert throttle.retry_after(ADDRESS) == pytest.approx(0.001)
    clock.advance(0.001)
    assert throttle.retry_after(ADDRESS) is None  # exactly at the boundary: allowed
    throttle.failed(ADDRESS)  # that try failed too: one interval again, not more
    assert throttle.retry_after(ADDRESS) == pytest.approx(2.0)


def test_failures_while_throttled_push_the_wait_out() -> None:
    """Failures counted while throttled (a client that ignores the 429s) each add an interval."""
    clock = FakeClock()
    throttle = AuthThrottle(30, clock)
    _fail(throttle, 33)
    assert throttle.retry_after(ADDRESS) == pytest.approx(8.0)


def test_the_drip_after_the_burst_is_one_try_per_interval() -> None:
    clock = FakeClock()
    throttle = AuthThrottle(6, clock)  # 10 s an interval
    _fail(throttle, 6)
    allowed = 0
    for _ in range(60):  # one simulated minute, a try every second
        clock.advance(1.0)
        if throttle.retry_after(ADDRESS) is None:
            allowed += 1
            throttle.failed(ADDRESS)
    assert allowed == 6  # one every 10 s: the rate, not the burst


def test_a_quiet_minute_restores_the_whole_burst() -> None:
    clock = FakeClock()
    throttle = AuthThrottle(30, clock)
    _fail(throttle, 30)
    clock.advance(59.9)
    _fail(throttle, 1)  # allowed at 2 s; by 59.9 s the bucket had drained to 0.1 s short of empty
    clock.advance(60.0)
    _fail(throttle, 29)
    assert throttle.retry_after(ADDRESS) is None
    throttle.failed(ADDRESS)
    assert throttle.retry_after(ADDRESS) == pytest.approx(2.0)


def test_addresses_are_throttled_apart() -> None:
    clock = FakeClock()
    throttle = AuthThrottle(30, clock)
    _fail(throttle, 30)
    other = "198.51.100.9"
    assert throttle.retry_after(other) is None
    _fail(throttle, 29, other)
    assert throttle.retry_after(other) is None
    assert throttle.retry_after(ADDRESS) == pytest.approx(2.0)


def test_memory_is_pruned_of_drained_addresses_only() -> None:
    """Past 100,000 addresses, those whose bucket has drained are forgotten (a throttled one is not)."""
    clock = FakeClock()
    throttle = AuthThrottle(30, clock)
    _fail(throttle, 30)  # throttled: must survive the prune
    for i in range(100_001):
        throttle.failed(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}")
    clock.advance(3.0)  # every one-failure address has drained; ADDRESS's bucket holds 57 s more
    throttle.failed("192.0.2.1")  # the write that prunes
    assert len(throttle._tat) == 2  # ADDRESS and 192.0.2.1
    throttle.failed(ADDRESS)  # remembered: one more failure refills its bucket (a stranger's would not)
    assert throttle.retry_after(ADDRESS) == pytest.approx(1.0)
