"""A per-key budget of some costly courtesy per minute, in this process (GCRA, no Redis).

Used for the upstream calls `count_tokens` may make: counting is free for the customer but
spends the operator's quota at the provider, so each key gets only so many upstream counts a
minute (NEMO_COUNT_TOKENS_UPSTREAM_PER_MINUTE); past that the gateway counts offline. Per
process, like the other abuse throttles: N replicas allow N times the budget (docs/deployment.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from nemorouter.limits.gcra import gcra

__all__ = ["PerKeyBudget"]

_PERIOD = 60.0
_PRUNE_AT = 100_000  # keys remembered before the ones whose buckets drained are forgotten


class PerKeyBudget:
    """`per_minute` takes per key in a burst, then one every 60 / per_minute s; 0: none ever."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._tat: dict[str, float] = {}

    def take(self, key_id: str) -> bool:
        """Spend one unit of `key_id`'s budget if it has one left."""
        if self.per_minute <= 0:
            return False
        now = self._clock()
        if len(self._tat) > _PRUNE_AT:
            self._tat = {k: t for k, t in self._tat.items() if t > now}
        decision, tat = gcra(self._tat.get(key_id, now), now, self.per_minute, _PERIOD, 1)
        if decision.allowed:
            self._tat[key_id] = tat
        return decision.allowed
