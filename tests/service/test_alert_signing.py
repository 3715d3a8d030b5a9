"""Alerts out, the pure parts: Standard Webhooks signatures and the retry schedule."""

from __future__ import annotations

import base64
import itertools

import pytest

from nemorouter.service.alerting.outbox import new_secret, retry_delay, sign, signing_key
from nemorouter.settings import Settings


def test_the_standard_webhooks_test_vector() -> None:
    """The specification's published vector: any Standard Webhooks library verifies our deliveries."""
    key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signature = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_new_secrets_are_whsec_and_32_random_bytes() -> None:
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_") and first != second
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32
    assert signing_key(first) == base64.b64decode(first[6:])


@pytest.mark.parametrize("secret", ["whsec_not base64!", "whsec_abc"])
def test_a_malformed_secret_is_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="whsec_"):
        signing_key(secret)


def test_the_default_schedule_retries_within_10s_then_backs_off_to_an_hour_for_a_day() -> None:
    settings = Settings.from_env({"NEMO_DATA_DIR": "/nonexistent"})
    base, cap = settings.alert_retry_base, settings.alert_retry_cap
    delays = [retry_delay(n, base, cap) for n in range(1, 16)]
    assert delays[0] <= 10
    assert all(later == min(cap, 2 * earlier) for earlier, later in itertools.pairwise(delays))
    assert max(delays) == 3600 and delays[-1] == 3600
    assert settings.alert_retry_for == 86400
    fast = Settings.from_env(
        {"NEMO_DATA_DIR": "/x", "NEMO_ALERT_RETRY_BASE": "0.2", "NEMO_ALERT_RETRY_CAP": "1"}
    )
    assert [retry_delay(n, fast.alert_retry_base, fast.alert_retry_cap) for n in (1, 2, 3, 4)] == [
        0.2,
        0.4,
        0.8,
        1,
    ]
