"""GCRA (the generic cell rate algorithm): exact rate limits in O(1) memory per key.

A limit of `rate` per `period` admits bursts up to `rate` and then one unit every
`period / rate`; a refusal says exactly when the next unit fits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True, init=False)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    retry_after: float  # seconds until `cost` units fit (0 when allowed)
    reset_after: float  # seconds until the bucket is full again

    # A hand-written __init__: compiled, a direct constructor (docs/architecture.md, "Speed").
    def __init__(
        self, allowed: bool, limit: int, remaining: int, retry_after: float, reset_after: float
    ) -> None:
        self.allowed = allowed
        self.limit = limit
        self.remaining = remaining
        self.retry_after = retry_after
        self.reset_after = reset_after


def gcra(tat: float, now: float, rate: int, period: float, cost: int) -> tuple[Decision, float]:
    """Decide one request of `cost` units; returns the decision and the new theoretical arrival time."""
    interval = period / rate
    tat = max(tat, now)
    new_tat = tat + interval * cost
    allow_at = new_tat - period
    if allow_at > now + 1e-9:
        retry = allow_at - now
        remaining = max(0, math.floor((period - (tat - now)) / interval + 1e-9))
        return Decision(False, rate, remaining, retry, tat - now), tat
    remaining = max(0, math.floor((period - (new_tat - now)) / interval + 1e-9))
    return Decision(True, rate, remaining, 0.0, new_tat - now), new_tat
