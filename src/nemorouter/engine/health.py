"""Health of deployments and vault keys: circuit breakers, cool-downs and latency.

A breaker opens after `threshold` consecutive failures and stays open for `cooldown`
seconds; then one request may probe (half-open): success closes it, failure opens it again.
A provider's `retry-after` puts the target in a cool-down of that length without counting
as a breaker failure. All state is in-process (each replica learns on its own).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _State:
    failures: int = 0
    open_until: float = 0.0
    rate_limited_until: float = 0.0  # a provider's retry-after, kept apart from breaker state
    latency_ms: float | None = None  # exponentially weighted average of successful attempts


class Health:
    def __init__(
        self, clock: Callable[[], float] = time.monotonic, threshold: int = 5, cooldown: float = 30.0
    ) -> None:
        self._clock = clock
        self.threshold = threshold
        self.cooldown = cooldown
        self._states: dict[str, _State] = {}

    def _state(self, name: str) -> _State:
        state = self._states.get(name)
        if state is None:
            state = self._states[name] = _State()
        return state

    def available(self, name: str) -> bool:
        """May a request be sent to `name` now? An expired open breaker lets one probe through
        (and stays shut to everyone else for another cool-down while that probe runs)."""
        state = self._states.get(name)
        if state is None or state.open_until == 0.0:
            return True
        now = self._clock()
        if now < state.open_until:
            return False
        if state.failures >= self.threshold:
            state.open_until = now + self.cooldown  # half-open: this caller is the probe
        return True

    def success(self, name: str, latency_ms: float | None = None) -> None:
        state = self._state(name)
        state.failures, state.open_until = 0, 0.0
        if latency_ms is not None:
            previous = state.latency_ms
            state.latency_ms = latency_ms if previous is None else 0.8 * previous + 0.2 * latency_ms

    def failure(self, name: str) -> None:
        state = self._state(name)
        state.failures += 1
        if state.failures >= self.threshold:
            state.open_until = self._clock() + self.cooldown

    def cool_down(self, name: str, seconds: float) -> None:
        """The provider asked us to wait (`retry-after`): skip `name` until then."""
        state = self._state(name)
        until = self._clock() + max(0.0, seconds)
        state.open_until = max(state.open_until, until)
        state.rate_limited_until = max(state.rate_limited_until, until)

    def rate_limited_for(self, name: str) -> float | None:
        """Seconds left of a provider-requested wait on `name`, or None."""
        state = self._states.get(name)
        if state is None:
            return None
        left = state.rate_limited_until - self._clock()
        return left if left > 0 else None

    def latency_ms(self, name: str) -> float | None:
        state = self._states.get(name)
        return state.latency_ms if state is not None else None

    def describe(self, name: str) -> dict[str, object]:
        """For operators: `closed`, `open` (until when) or `half_open`, and recent latency."""
        state = self._states.get(name)
        if state is None:
            return {"state": "closed", "failures": 0, "latency_ms": None}
        now = self._clock()
        if state.open_until > now:
            status = "open"
        elif state.failures >= self.threshold:
            status = "half_open"
        else:
            status = "closed"
        retry_in = round(state.open_until - now, 1) if state.open_until > now else 0
        latency = round(state.latency_ms, 1) if state.latency_ms is not None else None
        return {"state": status, "failures": state.failures, "retry_in_s": retry_in, "latency_ms": latency}
