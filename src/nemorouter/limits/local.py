"""In-process rate limits: requests per minute, tokens per minute and concurrency per key, plus an
optional operator-set requests/tokens per minute for a whole account.

Every limit that applies is decided before any is charged, so a refused request consumes
nothing. Right for one gateway process; several replicas share limits through Redis instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nemorouter.limits.gcra import Decision, gcra

_MINUTE = 60.0


@dataclass(frozen=True, slots=True)
class AccountLimits:
    account_id: str
    rpm: int | None
    tpm: int | None


@dataclass(slots=True, init=False)
class Ticket:
    """An admitted request: return it with `finish` so concurrency and token counts stay true."""

    key_id: str
    tokens_estimate: int
    tpm: int | None
    concurrency: bool
    decisions: list[tuple[str, Decision]] = field(default_factory=list)  # the key's own, by kind
    token_buckets: list[tuple[str, int]] = field(default_factory=list)  # (bucket, tpm) charged
    shared: bool = False  # decided in Redis (limits/redis.py), not by this process
    slot: str | None = None  # its concurrency slot in Redis

    # A hand-written __init__: compiled, a direct constructor (docs/architecture.md, "Speed").
    def __init__(
        self,
        key_id: str,
        tokens_estimate: int,
        tpm: int | None,
        concurrency: bool,
        decisions: list[tuple[str, Decision]] | None = None,
        token_buckets: list[tuple[str, int]] | None = None,
        shared: bool = False,
        slot: str | None = None,
    ) -> None:
        self.key_id = key_id
        self.tokens_estimate = tokens_estimate
        self.tpm = tpm
        self.concurrency = concurrency
        self.decisions = [] if decisions is None else decisions
        self.token_buckets = [] if token_buckets is None else token_buckets
        self.shared = shared
        self.slot = slot

    @property
    def headers(self) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers for the key's limits, built only when asked for (the
        success path never needs them)."""
        return _headers_of(self.decisions)


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


def _headers(kind: str, decision: Decision) -> dict[str, str]:
    return {
        f"x-ratelimit-limit-{kind}": str(decision.limit),
        f"x-ratelimit-remaining-{kind}": str(decision.remaining),
        f"x-ratelimit-reset-{kind}": _reset_text(decision.reset_after),
    }


def _refusal_headers(decisions: list[tuple[str, Decision]], kind: str, refused: Decision) -> dict[str, str]:
    """The key's headers decided so far; a refusal with none of the key's reports itself."""
    return _headers_of(decisions) or _headers(kind, refused)


def _headers_of(decisions: list[tuple[str, Decision]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for kind, decision in decisions:
        out.update(_headers(kind, decision))
    return out


class LocalLimiter:
    shared = False  # True for the Redis limiter: the gateway then awaits `admit_shared`

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._requests: dict[str, float] = {}
        self._tokens: dict[str, float] = {}
        self._in_flight: dict[str, int] = {}

    def admitting(self) -> bool:
        """Whether shared admissions are on their way now (never, here: nothing is shared)."""
        return False

    def admit(
        self,
        key_id: str,
        rpm: int | None,
        tpm: int | None,
        max_concurrency: int | None,
        tokens_estimate: int,
        account: AccountLimits | None = None,
    ) -> Ticket:
        now = self._clock()
        if max_concurrency is not None and self._in_flight.get(key_id, 0) >= max_concurrency:
            raise LimitExceeded(
                "concurrency",
                Decision(False, max_concurrency, 0, 1.0, 1.0),
                {"x-ratelimit-limit-concurrency": str(max_concurrency)},
            )
        limits = [(key_id, rpm, tpm, "")]
        if account is not None and (account.rpm is not None or account.tpm is not None):
            limits.append((f"account:{account.account_id}", account.rpm, account.tpm, "account "))
        decisions: list[tuple[str, Decision]] = []
        new_requests: list[tuple[str, float]] = []
        new_tokens: list[tuple[str, float, int]] = []
        for bucket, per_minute, tokens_per_minute, label in limits:
            if per_minute is not None:
                decision, tat = gcra(self._requests.get(bucket, now), now, per_minute, _MINUTE, 1)
                if not label:
                    decisions.append(("requests", decision))
                if not decision.allowed:
                    raise LimitExceeded(
                        f"{label}requests", decision, _refusal_headers(decisions, "requests", decision)
                    )
                new_requests.append((bucket, tat))
            if tokens_per_minute is not None:
                cost = min(max(1, tokens_estimate), tokens_per_minute)
                decision, tat = gcra(self._tokens.get(bucket, now), now, tokens_per_minute, _MINUTE, cost)
                if not label:
                    decisions.append(("tokens", decision))
                if not decision.allowed:
                    raise LimitExceeded(
                        f"{label}tokens", decision, _refusal_headers(decisions, "tokens", decision)
                    )
                new_tokens.append((bucket, tat, tokens_per_minute))
        for bucket, tat in new_requests:
            self._requests[bucket] = tat
        for bucket, tat, _ in new_tokens:
            self._tokens[bucket] = tat
        if max_concurrency is not None:
            self._in_flight[key_id] = self._in_flight.get(key_id, 0) + 1
        return Ticket(
            key_id,
            tokens_estimate,
            tpm,
            max_concurrency is not None,
            decisions,
            [(bucket, per_minute) for bucket, _, per_minute in new_tokens],
        )

    async def admit_shared(
        self,
        key_id: str,
        rpm: int | None,
        tpm: int | None,
        max_concurrency: int | None,
        tokens_estimate: int,
        account: AccountLimits | None = None,
    ) -> Ticket:
        """The same decision, awaited: limiters shared between replicas need a round trip."""
        return self.admit(key_id, rpm, tpm, max_concurrency, tokens_estimate, account)

    async def close(self) -> None:
        """Nothing to release in process (the Redis limiter closes its connection)."""

    def finish(self, ticket: Ticket, actual_tokens: int | None) -> None:
        """Release concurrency and correct the token estimates with the real count."""
        if ticket.concurrency:
            left = self._in_flight.get(ticket.key_id, 1) - 1
            if left > 0:
                self._in_flight[ticket.key_id] = left
            else:
                self._in_flight.pop(ticket.key_id, None)
        if actual_tokens is None:
            return
        for bucket, per_minute in ticket.token_buckets:
            if bucket in self._tokens:
                charged = min(max(1, ticket.tokens_estimate), per_minute)
                self._tokens[bucket] += (actual_tokens - charged) * (_MINUTE / per_minute)
