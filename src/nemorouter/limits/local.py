"""In-process rate limits per key: requests per minute, tokens per minute, concurrency.

Right for one gateway process; several replicas share limits through Redis instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nemorouter.limits.gcra import Decision, gcra

_MINUTE = 60.0


@dataclass(slots=True)
class Ticket:
    """An admitted request: return it with `finish` so concurrency and token counts stay true."""

    key_id: str
    tokens_estimate: int
    tpm: int | None
    concurrency: bool
    headers: dict[str, str] = field(default_factory=dict)


class LimitExceeded(Exception):
    def __init__(self, what: str, decision: Decision, headers: dict[str, str]) -> None:
        super().__init__(what)
        self.what = what
        self.decision = decision
        self.headers = headers


def _reset_text(seconds: float) -> str:
    """OpenAI's reset format: `1s`, `6m0s`."""
    whole = max(0, math.ceil(seconds))
    return f"{whole // 60}m{whole % 60}s" if whole >= 60 else f"{whole}s"


class LocalLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._requests: dict[str, float] = {}
        self._tokens: dict[str, float] = {}
        self._in_flight: dict[str, int] = {}

    def admit(
        self, key_id: str, rpm: int | None, tpm: int | None, max_concurrency: int | None, tokens_estimate: int
    ) -> Ticket:
        now = self._clock()
        headers: dict[str, str] = {}
        if max_concurrency is not None and self._in_flight.get(key_id, 0) >= max_concurrency:
            raise LimitExceeded(
                "concurrency",
                Decision(False, max_concurrency, 0, 1.0, 1.0),
                {"x-ratelimit-limit-concurrency": str(max_concurrency)},
            )
        new_req_tat = None
        if rpm is not None:
            decision, new_req_tat = gcra(self._requests.get(key_id, now), now, rpm, _MINUTE, 1)
            headers.update(
                {
                    "x-ratelimit-limit-requests": str(rpm),
                    "x-ratelimit-remaining-requests": str(decision.remaining),
                    "x-ratelimit-reset-requests": _reset_text(decision.reset_after),
                }
            )
            if not decision.allowed:
                raise LimitExceeded("requests", decision, headers)
        if tpm is not None:
            cost = min(max(1, tokens_estimate), tpm)
            decision, new_tok_tat = gcra(self._tokens.get(key_id, now), now, tpm, _MINUTE, cost)
            headers.update(
                {
                    "x-ratelimit-limit-tokens": str(tpm),
                    "x-ratelimit-remaining-tokens": str(decision.remaining),
                    "x-ratelimit-reset-tokens": _reset_text(decision.reset_after),
                }
            )
            if not decision.allowed:
                raise LimitExceeded("tokens", decision, headers)
            self._tokens[key_id] = new_tok_tat
        if new_req_tat is not None:
            self._requests[key_id] = new_req_tat
        if max_concurrency is not None:
            self._in_flight[key_id] = self._in_flight.get(key_id, 0) + 1
        return Ticket(key_id, tokens_estimate, tpm, max_concurrency is not None, headers)

    def finish(self, ticket: Ticket, actual_tokens: int | None) -> None:
        """Release concurrency and correct the token estimate with the real count."""
        if ticket.concurrency:
            left = self._in_flight.get(ticket.key_id, 1) - 1
            if left > 0:
                self._in_flight[ticket.key_id] = left
            else:
                self._in_flight.pop(ticket.key_id, None)
        if ticket.tpm is not None and actual_tokens is not None and ticket.key_id in self._tokens:
            diff = actual_tokens - min(max(1, ticket.tokens_estimate), ticket.tpm)
            self._tokens[ticket.key_id] += diff * (_MINUTE / ticket.tpm)
