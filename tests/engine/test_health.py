"""The breakers and cool-downs of `engine/health.py` on a fake clock: no sleeping, no wall time."""

from __future__ import annotations

from nemorouter.engine.health import Health

DEPLOYMENT = "deployment:d1"


class FakeClock:
    """A monotonic clock that moves only when a test moves it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _health(clock: FakeClock) -> Health:
    return Health(clock=clock, threshold=3, cooldown=30.0)


def _open(health: Health) -> None:
    for _ in range(health.threshold):
        health.failure(DEPLOYMENT)


def test_a_breaker_stays_closed_below_the_threshold() -> None:
    clock = FakeClock()
    health = _health(clock)
    health.failure(DEPLOYMENT)
    health.failure(DEPLOYMENT)
    assert health.available(DEPLOYMENT)
    assert health.describe(DEPLOYMENT)["state"] == "closed"
    assert health.describe(DEPLOYMENT)["failures"] == 2


def test_a_success_forgets_earlier_failures() -> None:
    clock = FakeClock()
    health = _health(clock)
    health.failure(DEPLOYMENT)
    health.failure(DEPLOYMENT)
    health.success(DEPLOYMENT)
    health.failure(DEPLOYMENT)
    health.failure(DEPLOYMENT)
    assert health.available(DEPLOYMENT)  # two in a row, not four


def test_the_threshold_opens_the_breaker_for_the_cooldown() -> None:
    clock = FakeClock()
    health = _health(clock)
    _open(health)
    assert not health.available(DEPLOYMENT)
    assert health.describe(DEPLOYMENT) == {
        "state": "open",
        "failures": 3,
        "retry_in_s": 30.0,
        "latency_ms": None,
    }
    clock.advance(29.9)
    assert not health.available(DEPLOYMENT)
    assert health.describe(DEPLOYMENT)["retry_in_s"] == 0.1
    assert health.rate_limited_for(DEPLOYMENT) is None  # a breaker is not a provider's wait


def test_after_the_cooldown_one_probe_goes_through_and_the_rest_wait() -> None:
    clock = FakeClock()
    health = _health(clock)
    _open(health)
    clock.advance(30.0)
    assert health.describe(DEPLOYMENT)["state"] == "half_open"
    assert health.available(DEPLOYMENT)  # this caller is the probe
    assert not health.available(DEPLOYMENT)  # everyone else waits while it runs
    assert health.describe(DEPLOYMENT)["state"] == "open"
    clock.advance(29.0)
    assert not health.available(DEPLOYMENT)


def test_a_probe_that_succeeds_closes_the_breaker() -> None:
    clock = FakeClock()
    health = _health(clock)
    _open(health)
    clock.advance(30.0)
    assert health.available(DEPLOYMENT)
    health.success(DEPLOYMENT, latency_ms=120.0)
    assert health.available(DEPLOYMENT) and health.available(DEPLOYMENT)
    assert health.describe(DEPLOYMENT) == {
        "state": "closed",
        "failures": 0,
        "retry_in_s": 0,
        "latency_ms": 120.0,
    }
    health.failure(DEPLOYMENT)
    assert health.available(DEPLOYMENT)  # counting starts again from zero


def test_a_probe_that_fails_opens_the_breaker_again() -> None:
    clock = FakeClock()
    health = _health(clock)
    _open(health)
    clock.advance(30.0)
    assert health.available(DEPLOYMENT)
    health.failure(DEPLOYMENT)
    assert not health.available(DEPLOYMENT)
    clock.advance(29.9)
    assert not health.available(DEPLOYMENT)
    clock.advance(0.1)
    assert health.available(DEPLOYMENT)  # the next probe, a full cool-down later


def test_a_cool_down_skips_the_target_until_it_expires_without_counting_as_a_failure() -> None:
    clock = FakeClock()
    health = _health(clock)
    key = "key:k1:d1"
    health.cool_down(key, 12)
    assert not health.available(key)
    assert health.rate_limited_for(key) == 12.0
    assert health.describe(key)["failures"] == 0
    clock.advance(11.5)
    assert health.rate_limited_for(key) == 0.5
    assert not health.available(key)
    clock.advance(0.5)
    assert health.rate_limited_for(key) is None
    assert health.available(key) and health.available(key)  # no probe: it was never a breaker
    assert health.describe(key)["state"] == "closed"


def test_a_cool_down_never_shortens_an_open_breaker_and_a_negative_one_is_none() -> None:
    clock = FakeClock()
    health = _health(clock)
    _open(health)
    health.cool_down(DEPLOYMENT, 5)
    clock.advance(5)
    assert not health.available(DEPLOYMENT)  # still the breaker's 30 s
    other = "key:k2:d1"
    health.cool_down(other, -3)
    assert health.available(other)
    assert health.rate_limited_for(other) is None


def test_latency_is_a_weighted_average_of_successes() -> None:
    health = _health(FakeClock())
    assert health.latency_ms(DEPLOYMENT) is None
    health.success(DEPLOYMENT, latency_ms=100.0)
    health.success(DEPLOYMENT, latency_ms=200.0)
    assert health.latency_ms(DEPLOYMENT) == 0.8 * 100.0 + 0.2 * 200.0
    health.success(DEPLOYMENT)  # a success without a measurement leaves the average
    assert health.latency_ms(DEPLOYMENT) == 120.0


def test_unknown_names_are_closed_and_available() -> None:
    health = _health(FakeClock())
    assert health.available("deployment:never-seen")
    assert health.rate_limited_for("deployment:never-seen") is None
    assert health.describe("deployment:never-seen") == {"state": "closed", "failures": 0, "latency_ms": None}
