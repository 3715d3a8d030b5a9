"""Throttling of failed authentication per client address.

An address may fail authentication FAILURES_PER_MINUTE times in a burst, then once every
60 / FAILURES_PER_MINUTE seconds (GCRA). Past that, every request from it that carries
credentials is answered 429 until the bucket drains: guessing keys from one address is slow,
and other addresses are not affected. The address is the peer's, or the client a proxy in
NEMO_TRUSTED_PROXIES names in X-Forwarded-For (cli/server.py): never one a client chose.
"""

from __future__ import annotations

import time
from collections.abc import Callable

FAILURES_PER_MINUTE = 30
_PERIOD = 60.0
_PRUNE_AT = 100_000


class AuthThrottle:
    def __init__(
        self, per_minute: int = FAILURES_PER_MINUTE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = _PERIOD / per_minute
        self._clock = clock
        self._tat: dict[str, float] = {}

    def retry_after(self, address: str) -> float | None:
        """Seconds until `address` may try again, or None if it may now."""
        tat = self._tat.get(address)
        if tat is None:
            return None
        wait = tat - _PERIOD + self._interval - self._clock()
        return wait if wait > 0 else None

    def failed(self, address: str) -> None:
        now = self._clock()
        if len(self._tat) > _PRUNE_AT:
            self._tat = {a: t for a, t in self._tat.items() if t > now}
        self._tat[address] = max(self._tat.get(address, now), now) + self._interval
