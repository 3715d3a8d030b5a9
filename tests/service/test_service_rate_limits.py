"""In-process rate limits (nemorouter.limits): GCRA for RPM and TPM, a counter for concurrency.

The clock is injected, so every expected number is exact.
"""

from __future__ import annotations

import pytest

from fake_clock import FakeClock as Clock
from nemorouter.limits.gcra import gcra
from nemorouter.limits.local import LimitExceeded, LocalLimiter


def _refusal(limiter: LocalLimiter, **kwargs: int | None) -> LimitExceeded:
    args = {"rpm": None, "tpm": None, "max_concurrency": None, "tokens_estimate": 1, **kwargs}
    with pytest.raises(LimitExceeded) as caught:
        limiter.admit("k", args["rpm"], args["tpm"], args["max_concurrency"], args["tokens_estimate"])  # type: ignore[arg-type]
    return caught.value


def test_rpm_five_admits_five_then_waits_twelve_seconds() -> None:
    clock = Clock()
    limiter = LocalLimiter(clock)
    remaining = []
    for _ in range(5):
        ticket = limiter.admit("k", 5, None, None, 1)
        remaining.append(int(ticket.headers["x-ratelimit-remaining-requests"]))
        assert ticket.headers["x-ratelimit-limit-requests"] == "5"
    assert remaining == [4, 3, 2, 1, 0]
    refused = _refusal(limiter, rpm=5)
    assert refused.what == "requests"
    assert refused.decision.allowed is False
    assert refused.decision.retry_after == pytest.approx(12.0)  # 60 s / 5
    assert refused.decision.remaining == 0
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"] == "1m0s"  # the bucket is full again in 60 s
    # Just before the 12 s are up: still refused, with the rest of the wait.
    clock.now += 11.5
    assert _refusal(limiter, rpm=5).decision.retry_after == pytest.approx(0.5)
    clock.now += 0.5
    ticket = limiter.admit("k", 5, None, None, 1)
    assert ticket.headers["x-ratelimit-remaining-requests"] == "0"
    _refusal(limiter, rpm=5)


def test_rpm_headers_reset_text() -> None:
    clock = Clock()
    limiter = LocalLimiter(clock)
    first = limiter.admit("k", 5, None, None, 1)
    assert first.headers == {
        "x-ratelimit-limit-requests": "5",
        "x-ratelimit-remaining-requests": "4",
        "x-ratelimit-reset-requests": "12s",
    }
    clock.now += 60  # idle a minute: the burst is available again
    for expected in ("4", "3", "2", "1", "0"):
        assert limiter.admit("k", 5, None, None, 1).headers["x-ratelimit-remaining-requests"] == expected


def test_limits_are_per_key() -> None:
    limiter = LocalLimiter(Clock())
    limiter.admit("a", 1, None, None, 1)
    limiter.admit("b", 1, None, None, 1)
    with pytest.raises(LimitExceeded):
        limiter.admit("a", 1, None, None, 1)


def test_no_limits_means_no_headers() -> None:
    limiter = LocalLimiter(Clock())
    for _ in range(1000):
        assert limiter.admit("k", None, None, None, 10**6).headers == {}


def test_tpm_with_estimates() -> None:
    clock = Clock()
    limiter = LocalLimiter(clock)
    first = limiter.admit("k", None, 1000, None, 400)
    assert first.headers["x-ratelimit-limit-tokens"] == "1000"
    assert first.headers["x-ratelimit-remaining-tokens"] == "600"
    assert first.headers["x-ratelimit-reset-tokens"] == "24s"  # 400 tokens at 1000/60 s
    second = limiter.admit("k", None, 1000, None, 400)
    assert second.headers["x-ratelimit-remaining-tokens"] == "200"
    refused = _refusal(limiter, tpm=1000, tokens_estimate=400)
    assert refused.what == "tokens"
    # 800 used of 1000: 400 more fit once 200 tokens' worth (12 s) has drained.
    assert refused.decision.retry_after == pytest.approx(12.0)
    assert limiter.admit("k", None, 1000, None, 200).headers["x-ratelimit-remaining-tokens"] == "0"


def test_finish_corrects_the_token_estimate() -> None:
    clock = Clock()
    limiter = LocalLimiter(clock)
    first = limiter.admit("k", None, 1000, None, 400)
    limiter.admit("k", None, 1000, None, 400)
    _refusal(limiter, tpm=1000, tokens_estimate=400)
    limiter.finish(first, 100)  # it really used 100: 300 tokens are given back
    third = limiter.admit("k", None, 1000, None, 400)  # 100 + 400 + 400 = 900 of 1000
    assert third.headers["x-ratelimit-remaining-tokens"] == "100"


def test_finish_charges_an_underestimate() -> None:
    clock = Clock()
    limiter = LocalLimiter(clock)
    ticket = limiter.admit("k", None, 1000, None, 100)
    limiter.finish(ticket, 900)  # it really used 900
    refused = _refusal(limiter, tpm=1000, tokens_estimate=200)
    # 900 + 200 = 1100 > 1000: wait for 100 tokens' worth, 6 s.
    assert refused.decision.retry_after == pytest.approx(6.0)


def test_an_estimate_above_tpm_costs_the_whole_minute() -> None:
    clock = Clock()
    limiter = LocalLimiter(clock)
    ticket = limiter.admit("k", None, 1000, None, 50_000)
    assert ticket.headers["x-ratelimit-remaining-tokens"] == "0"
    assert _refusal(limiter, tpm=1000, tokens_estimate=1).decision.retry_after == pytest.approx(0.06)


def test_a_tpm_refusal_does_not_use_up_a_request() -> None:
    clock = Clock()
    limiter = LocalLimiter(clock)
    limiter.admit("k", 2, 100, None, 100)  # RPM 2: one request every 30 s; the token bucket is now full
    assert _refusal(limiter, rpm=2, tpm=100, tokens_estimate=100).what == "tokens"
    clock.now += 1  # enough for one token (0.6 s each), far from the 30 s a second request would need
    # Had the refused request counted, RPM would refuse this one; it has the second of the two.
    ticket = limiter.admit("k", 2, 100, None, 1)
    assert ticket.headers["x-ratelimit-remaining-requests"] == "0"


def test_max_concurrency() -> None:
    limiter = LocalLimiter(Clock())
    tickets = [limiter.admit("k", None, None, 3, 1) for _ in range(3)]
    refused = _refusal(limiter, max_concurrency=3)
    assert refused.what == "concurrency"
    assert refused.headers == {"x-ratelimit-limit-concurrency": "3"}
    limiter.admit("other", None, None, 3, 1)  # another key is unaffected
    limiter.finish(tickets[0], None)
    fourth = limiter.admit("k", None, None, 3, 1)
    _refusal(limiter, max_concurrency=3)
    for ticket in (*tickets[1:], fourth):
        limiter.finish(ticket, None)
    for _ in range(3):
        limiter.admit("k", None, None, 3, 1)
    _refusal(limiter, max_concurrency=3)


def test_concurrency_refusal_uses_up_no_rate() -> None:
    limiter = LocalLimiter(Clock())
    held = limiter.admit("k", 2, None, 1, 1)
    _refusal(limiter, rpm=2, max_concurrency=1)
    limiter.finish(held, None)
    assert limiter.admit("k", 2, None, 1, 1).headers["x-ratelimit-remaining-requests"] == "0"


def test_gcra_directly() -> None:
    # rate 5 per 60 s: interval 12 s; an empty bucket (tat <= now) admits at once.
    decision, tat = gcra(0.0, 100.0, 5, 60.0, 1)
    assert (decision.allowed, decision.remaining, tat) == (True, 4, 112.0)
    decision, tat = gcra(160.0, 100.0, 5, 60.0, 1)  # full bucket
    assert decision.allowed is False
    assert decision.retry_after == pytest.approx(12.0)
    assert tat == 160.0  # a refusal does not move the arrival time
    decision, tat = gcra(100.0, 100.0, 5, 60.0, 5)  # a whole burst at once
    assert (decision.allowed, decision.remaining, tat) == (True, 0, 160.0)
