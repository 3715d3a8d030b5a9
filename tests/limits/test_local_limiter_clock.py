"""The in-process limiter (limits/local.py) on a fake clock: account limits over every key,
refills and window resets, settlement's corrections to every bucket a request was charged to, and
concurrency slots given back exactly once. Key-only RPM/TPM basics are in
tests/service/test_service_rate_limits.py."""

from __future__ import annotations

import pytest

from fake_clock import FakeClock
from nemorouter.limits.local import AccountLimits, LimitExceeded, LocalLimiter

ACCOUNT_RPM = AccountLimits("acct", 4, None)
ACCOUNT_TPM = AccountLimits("acct", None, 600)


def _refused(
    limiter: LocalLimiter, key: str, account: AccountLimits | None, **limits: int | None
) -> LimitExceeded:
    args = {"rpm": None, "tpm": None, "conc": None, "tokens": 1, **limits}
    with pytest.raises(LimitExceeded) as caught:
        limiter.admit(key, args["rpm"], args["tpm"], args["conc"], args["tokens"] or 1, account)
    return caught.value


def test_an_account_rpm_binds_all_its_keys_at_exactly_its_count() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(clock)
    for i in range(4):
        limiter.admit(f"key{i}", 100, None, None, 1, ACCOUNT_RPM)
    refused = _refused(limiter, "key9", ACCOUNT_RPM, rpm=100)
    assert refused.what == "account requests"
    assert refused.decision.retry_after == pytest.approx(15.0)  # 60 s / 4
    # The client sees its key's own limit, untouched by the refusal.
    assert refused.headers["x-ratelimit-remaining-requests"] == "99"
    clock.advance(15.0)
    ticket = limiter.admit("key9", 100, None, None, 1, ACCOUNT_RPM)
    assert ticket.headers["x-ratelimit-remaining-requests"] == "99"  # its first request
    assert "account" not in " ".join(ticket.headers)  # the account's own numbers are not shown
    _refused(limiter, "key0", ACCOUNT_RPM, rpm=100)


def test_a_key_refusal_charges_the_account_nothing() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(clock)
    limiter.admit("narrow", 1, None, None, 1, ACCOUNT_RPM)
    for _ in range(3):  # the key's limit refuses: the account's 3 remaining requests stay
        assert _refused(limiter, "narrow", ACCOUNT_RPM, rpm=1).what == "requests"
    for i in range(3):
        limiter.admit(f"other{i}", None, None, None, 1, ACCOUNT_RPM)
    assert _refused(limiter, "other9", ACCOUNT_RPM).what == "account requests"


def test_an_account_without_limits_is_not_a_bucket() -> None:
    limiter = LocalLimiter(FakeClock())
    for _ in range(50):
        limiter.admit("k", None, None, None, 10_000, AccountLimits("acct", None, None))


def test_the_account_tpm_refills_and_settlement_corrects_it() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(clock)
    big = limiter.admit("a", None, 1000, None, 500, ACCOUNT_TPM)
    limiter.admit("b", None, 1000, None, 100, ACCOUNT_TPM)
    refused = _refused(limiter, "c", ACCOUNT_TPM, tpm=1000, tokens=1)
    assert refused.what == "account tokens"
    assert refused.decision.retry_after == pytest.approx(0.1)  # one token at 600 a minute
    # `big` used 200 of its 500: 300 return to the account's bucket and to key a's.
    limiter.finish(big, 200)
    ticket = limiter.admit("c", None, 1000, None, 300, ACCOUNT_TPM)
    assert ticket.headers["x-ratelimit-remaining-tokens"] == "700"  # key c's own: 1000 - 300
    assert _refused(limiter, "c", ACCOUNT_TPM, tpm=1000, tokens=1).what == "account tokens"
    a_again = limiter.admit("a", None, 1000, None, 1, None)  # key a alone: 200 + 1 used
    assert a_again.headers["x-ratelimit-remaining-tokens"] == "799"
    clock.advance(10.0)  # 100 tokens drain from the account
    limiter.admit("d", None, None, None, 100, ACCOUNT_TPM)
    _refused(limiter, "d", ACCOUNT_TPM, tokens=1)


def test_an_overrun_reported_at_settle_is_charged_and_drains_over_time() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(clock)
    ticket = limiter.admit("k", None, 60, None, 10)  # one token a second
    limiter.finish(ticket, 70)  # used 70: the bucket is 10 tokens past full
    refused = _refused(limiter, "k", None, tpm=60, tokens=5)
    assert refused.decision.retry_after == pytest.approx(15.0)  # 10 over + 5 wanted
    clock.advance(14.999)
    _refused(limiter, "k", None, tpm=60, tokens=5)
    clock.advance(0.001)
    assert limiter.admit("k", None, 60, None, 5).headers["x-ratelimit-remaining-tokens"] == "0"


def test_settling_without_a_count_keeps_the_estimate() -> None:
    limiter = LocalLimiter(FakeClock())
    ticket = limiter.admit("k", None, 100, None, 60)
    limiter.finish(ticket, None)  # no usage known (an aborted stream): the estimate stands
    assert _refused(limiter, "k", None, tpm=100, tokens=41).what == "tokens"
    assert limiter.admit("k", None, 100, None, 40).headers["x-ratelimit-remaining-tokens"] == "0"


def test_a_settlement_on_a_drained_bucket_gives_no_credit() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(clock)
    ticket = limiter.admit("k", None, 100, None, 100)
    clock.advance(3600.0)  # an hour-long stream: the bucket drained long ago
    limiter.finish(ticket, 0)  # all 100 "returned": the past is not credit
    limiter.admit("k", None, 100, None, 100)
    assert _refused(limiter, "k", None, tpm=100, tokens=1).decision.retry_after == pytest.approx(0.6)


def test_a_window_resets_after_a_quiet_minute_to_the_whole_burst() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(clock)
    for _ in range(3):
        limiter.admit("k", 3, 300, None, 100, ACCOUNT_RPM)
    _refused(limiter, "k", ACCOUNT_RPM, rpm=3, tpm=300)
    clock.advance(59.999)  # all but 1 ms of the last interval has drained: still refused
    refused = _refused(limiter, "k", ACCOUNT_RPM, rpm=3, tpm=300, tokens=300)
    assert refused.what == "tokens" and refused.decision.retry_after == pytest.approx(0.001)
    clock.advance(0.001)
    ticket = limiter.admit("k", 3, 300, None, 300, ACCOUNT_RPM)
    assert ticket.headers["x-ratelimit-remaining-requests"] == "2"
    assert ticket.headers["x-ratelimit-remaining-tokens"] == "0"


def test_concurrency_slots_are_given_back_once_per_ticket_whatever_else_happens() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(clock)
    first = limiter.admit("k", None, 1000, 2, 10)
    second = limiter.admit("k", None, 1000, 2, 10)
    assert _refused(limiter, "k", None, tpm=1000, conc=2).what == "concurrency"
    clock.advance(3600.0)  # time frees no slot: only finishing does
    assert _refused(limiter, "k", None, tpm=1000, conc=2).what == "concurrency"
    limiter.finish(first, 5)
    third = limiter.admit("k", None, 1000, 2, 10)
    _refused(limiter, "k", None, conc=2)
    unlimited = limiter.admit("k", None, 1000, None, 10)  # took no slot, so gives none back
    limiter.finish(unlimited, 10)
    _refused(limiter, "k", None, conc=2)
    limiter.finish(second, None)
    limiter.finish(third, None)
    held = [limiter.admit("k", None, None, 2, 1) for _ in range(2)]
    _refused(limiter, "k", None, conc=2)
    for ticket in held:
        limiter.finish(ticket, None)
    # Slot counts never go below zero: a key with no requests in flight starts from its whole limit.
    limiter.finish(held[0], None)
    limiter.admit("k", None, None, 2, 1)
    limiter.admit("k", None, None, 2, 1)
    _refused(limiter, "k", None, conc=2)
