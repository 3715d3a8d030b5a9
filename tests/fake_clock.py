"""A clock that moves only when a test moves it: the limiters and the throttle take it in place of
`time.monotonic`, so every boundary, refill and retry-after is exact and no test sleeps."""

from __future__ import annotations


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
