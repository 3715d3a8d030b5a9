"""GCRA (limits/gcra.py) at its edges, on explicit times: the exact boundary (also for intervals
that are not whole in binary floating point), costs above one, partial refills and what a refusal
reports. The everyday cases are in tests/service/test_service_rate_limits.py."""

from __future__ import annotations

import pytest

from nemorouter.limits.gcra import gcra


def _burst(rate: int, period: float, now: float) -> float:
    """The arrival time after a whole burst of `rate` single units at `now`."""
    tat = now
    for _ in range(rate):
        decision, tat = gcra(tat, now, rate, period, 1)
        assert decision.allowed
    return tat


@pytest.mark.parametrize("rate", [1, 3, 7, 60, 1000])
def test_the_next_unit_fits_exactly_one_interval_after_a_full_burst(rate: int) -> None:
    """60 / 7 or 60 / 3 are not exact in binary; the boundary still falls where it should."""
    start = 5000.0
    tat = _burst(rate, 60.0, start)
    interval = 60.0 / rate
    refused, unchanged = gcra(tat, start, rate, 60.0, 1)
    assert not refused.allowed and unchanged == tat
    assert refused.retry_after == pytest.approx(interval)
    assert refused.remaining == 0
    assert refused.reset_after == pytest.approx(60.0)
    just_before, _ = gcra(tat, start + interval * 0.999, rate, 60.0, 1)
    assert not just_before.allowed
    assert just_before.retry_after == pytest.approx(interval * 0.001, abs=1e-9)  # GCRA's own slack
    at, new_tat = gcra(tat, start + interval, rate, 60.0, 1)
    assert at.allowed and at.remaining == 0
    assert new_tat == pytest.approx(tat + interval)


def test_a_cost_waits_for_all_its_units() -> None:
    # 10 per 60 s: 6 s a unit. 7 used, so 3 are left: a cost of 5 waits for 2 more units (12 s).
    tat = 100.0 + 7 * 6.0
    refused, _ = gcra(tat, 100.0, 10, 60.0, 5)
    assert not refused.allowed
    assert refused.remaining == 3
    assert refused.retry_after == pytest.approx(12.0)
    assert refused.reset_after == pytest.approx(42.0)  # the 7 units drain in 42 s
    allowed, new_tat = gcra(tat, 112.0, 10, 60.0, 5)
    assert allowed.allowed and allowed.remaining == 0
    assert new_tat == pytest.approx(172.0)  # full: the next unit waits a whole interval


def test_a_cost_of_the_whole_rate_fits_only_an_empty_bucket() -> None:
    whole, tat = gcra(0.0, 100.0, 10, 60.0, 10)
    assert whole.allowed and whole.remaining == 0 and tat == 160.0
    one_used, _ = gcra(106.0, 100.0, 10, 60.0, 10)  # one unit still draining (for 6 s)
    assert not one_used.allowed and one_used.retry_after == pytest.approx(6.0)


def test_a_cost_above_the_rate_never_fits() -> None:
    """The limiters cap a cost at the rate (limits/local.py); the algorithm alone cannot admit it."""
    never, _ = gcra(0.0, 100.0, 10, 60.0, 11)
    assert not never.allowed
    assert never.retry_after == pytest.approx(6.0)  # one interval past "now": it never comes


def test_partial_refill_counts_whole_units_only() -> None:
    tat = 100.0 + 60.0  # full at 100
    for elapsed, free in ((5.999, 0), (6.0, 1), (17.9, 2), (30.0, 5), (60.0, 10), (600.0, 10)):
        decision, _ = gcra(tat, 100.0 + elapsed, 10, 60.0, 1)
        assert decision.allowed == (free > 0), elapsed
        assert decision.remaining == max(0, free - 1), elapsed  # an admitted request took one


def test_an_old_arrival_time_counts_as_empty() -> None:
    """After a quiet period the bucket is empty, whatever it held: the past is not credit."""
    for stale in (0.0, 40.0, 99.999):
        decision, tat = gcra(stale, 100.0, 5, 60.0, 1)
        assert (decision.allowed, decision.remaining, tat) == (True, 4, 112.0)
        assert decision.reset_after == pytest.approx(12.0)
