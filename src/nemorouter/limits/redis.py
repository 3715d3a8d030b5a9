"""Rate limits shared by every replica: the local limiter's semantics, decided in Redis.

One Lua script checks every limit that applies (concurrency, then requests and tokens per
minute for the key and its account) and charges them only if all pass, so check-all-then-charge
is atomic across replicas. Time is Redis's own clock (`TIME`), so replicas' clocks never
disagree. Concurrency slots are members of a sorted set scored by their expiry; a live replica
renews its slots, a dead one's lapse within `SLOT_TTL` seconds.

When Redis cannot be reached the limiter falls back to per-replica limits (the inherited
LocalLimiter) and tries Redis again every `RETRY_AFTER` seconds; see docs/deployment.md.
Money caps never depend on this: they are decided in the database.

The scripts are in limits/redis_scripts.py. A finish that frees a slot is sent at once; one
that only corrects a token estimate waits for the next admission call to carry it (at most
`CORRECTION_DELAY` seconds), so one connection's requests, one after the other, don't each
pay a round trip between their answer and the next admission.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from nemorouter.limits.gcra import Decision
from nemorouter.limits.local import AccountLimits, LimitExceeded, LocalLimiter, Ticket, _refusal_headers
from nemorouter.limits.redis_scripts import (
    ADMIT,
    ADMIT_MANY,
    FINISH,
    FINISH_MANY,
    FINISH_THEN_ADMIT,
    NOW,
    RENEW,
)
from nemorouter.limits.resp import Scripts

log = logging.getLogger("nemorouter.limits")

_MINUTE_US = 60_000_000


def _token_correction(used: int, charged: int, per_minute: int) -> int:
    """How far (µs) a token bucket moves when `used` tokens replace the `charged` estimate: what
    FINISH applies, for a finished request and for one given back unsent (`used` 0)."""
    return int((used - charged) * _MINUTE_US / per_minute)


class RedisLimiter(LocalLimiter):
    """Shared limits in Redis; the inherited local limiter is the fallback while Redis is down."""

    shared = True
    SLOT_TTL = 30.0  # seconds a concurrency slot lives without renewal (a dead replica's come back)
    RENEW_EVERY = 10.0
    RETRY_AFTER = 1.0  # seconds between attempts to reach Redis while it is down
    # Seconds a finish that frees no concurrency slot (a token estimate's correction alone) may
    # wait for the next admission call to carry it (FINISH_THEN_ADMIT) rather than take a round
    # trip of its own: sent alone, it lands between a request's answer and the next request's
    # admission, one connection's requests one after the other each pay for it (issue 23). A
    # per-minute token count corrected within a second is as good as at once; a slot is freed
    # at once, as another replica's request may be waiting for it.
    CORRECTION_DELAY = 1.0

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str = "nemo:",
        clock: Callable[[], float] = time.monotonic,
        redis_clock: Callable[[], float] | None = None,
    ) -> None:
        """`clock` times the fallback and its retries; `redis_clock` (seconds) replaces Redis's own
        clock in the scripts, for tests that move time (None, always in service: Redis's TIME)."""
        super().__init__(clock)
        self._redis_clock = redis_clock
        self.redis = client
        self.prefix = prefix
        self._scripts = Scripts(client)  # the calls on a lean connection of their own (limits/resp.py)
        self._admit = self._scripts.script(NOW + ADMIT)
        self._admit_many = self._scripts.script(NOW + ADMIT_MANY)
        self._admitting: list[tuple[list[str], list[Any], asyncio.Future[Any]]] = []  # waiting admissions
        self._admitter: asyncio.Task[None] | None = None
        self._finish = self._scripts.script(NOW + FINISH)
        self._finish_many = self._scripts.script(NOW + FINISH_MANY)
        self._finish_then_admit = self._scripts.script(NOW + FINISH_THEN_ADMIT)
        self._finishing: list[tuple[list[str], list[Any]]] = []  # finishes waiting to be sent
        self._finisher: asyncio.Task[None] | None = None
        self._corrections_due: asyncio.TimerHandle | None = None  # when waiting corrections go alone
        self._renew = self._scripts.script(NOW + RENEW)
        self._slots: dict[str, str] = {}  # slot id -> concurrency set, for renewal
        self._down_until = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._renewer: asyncio.Task[None] | None = None

    @property
    def degraded(self) -> bool:
        """True while Redis is unreachable and limits are per replica."""
        return self._down_until > self._clock()

    async def admit_shared(
        self,
        key_id: str,
        rpm: int | None,
        tpm: int | None,
        max_concurrency: int | None,
        tokens_estimate: int,
        account: AccountLimits | None = None,
    ) -> Ticket:
        limits = [("", key_id, rpm, tpm)]
        if account is not None and (account.rpm is not None or account.tpm is not None):
            limits.append(("account ", f"account:{account.account_id}", account.rpm, account.tpm))
        keys = [f"{self.prefix}conc:{key_id}"]
        args: list[Any] = [-1 if max_concurrency is None else max_concurrency, "", int(self.SLOT_TTL * 1e6)]
        plan: list[tuple[str, str, int]] = []  # (label, kind, rate) per limit, in the script's order
        token_buckets: list[tuple[str, int]] = []
        for label, bucket, per_minute, tokens_per_minute in limits:
            if per_minute is not None:
                keys.append(f"{self.prefix}rq:{bucket}")
                args += [per_minute, 1]
                plan.append((label, "requests", per_minute))
            if tokens_per_minute is not None:
                keys.append(f"{self.prefix}tk:{bucket}")
                args += [tokens_per_minute, min(max(1, tokens_estimate), tokens_per_minute)]
                plan.append((label, "tokens", tokens_per_minute))
                token_buckets.append((keys[-1], tokens_per_minute))
        if max_concurrency is None and not plan:
            return Ticket(key_id, tokens_estimate, tpm, False)
        if self._down_until > self._clock():
            return self.admit(key_id, rpm, tpm, max_concurrency, tokens_estimate, account)
        slot = uuid.uuid4().hex if max_concurrency is not None else ""
        args[1] = slot
        try:
            out = await self._decide(keys, args)
        except RedisError as exc:
            self._went_down(exc)
            return self.admit(key_id, rpm, tpm, max_concurrency, tokens_estimate, account)
        decisions: list[tuple[str, Decision]] = []  # the key's own, by kind (headers built when asked)
        if out[1] == 0 and not out[0]:
            assert max_concurrency is not None
            raise LimitExceeded(
                "concurrency",
                Decision(False, max_concurrency, 0, 1.0, 1.0),
                {"x-ratelimit-limit-concurrency": str(max_concurrency)},
            )
        for i, (label, kind, rate) in enumerate(plan):
            at = 2 + 3 * i
            if at >= len(out):
                break
            refused = not out[0] and out[1] == i + 1
            decision = Decision(not refused, rate, int(out[at]), out[at + 1] / 1e6, out[at + 2] / 1e6)
            if not label:
                decisions.append((kind, decision))
            if refused:
                raise LimitExceeded(f"{label}{kind}", decision, _refusal_headers(decisions, kind, decision))
        ticket = Ticket(key_id, tokens_estimate, tpm, max_concurrency is not None, decisions, token_buckets)
        if slot:
            ticket.slot = slot
            self._slots[slot] = keys[0]
            self._ensure_renewer()
        ticket.shared = True
        return ticket

    def admitting(self) -> bool:
        """Whether an admission call is out: one arriving now goes in the next call, with the
        others that arrive meanwhile."""
        return self._admitter is not None and not self._admitter.done()

    async def _decide(self, keys: list[str], args: list[Any]) -> Any:
        """ADMIT's answer, from a call shared with the admissions waiting beside this one: those of
        one event-loop iteration, then those that came while the last call was out (one round
        trip for all, as ADMIT_MANY decides them one after the other). Alone, ADMIT itself."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        self._admitting.append((keys, args, answer))
        if self._admitter is None or self._admitter.done() or self._admitter.get_loop() is not loop:
            self._admitter = loop.create_task(self._send_admissions())
        try:
            return await answer
        except asyncio.CancelledError:  # answered, then cancelled before it resumed
            if answer.done() and not answer.cancelled() and answer.exception() is None:
                self._abandoned(keys, args, answer.result())
            raise

    def _abandoned(self, keys: list[str], args: list[Any], out: Any) -> None:
        """An admission decided after its request was cancelled: what it took (its concurrency
        slot, its token estimates) is given back at once. A slot no one holds would refuse the
        key's requests until it lapsed (`SLOT_TTL`)."""
        if not isinstance(out, list) or not out or not out[0]:
            return  # refused (or an error in its place): it took nothing
        finish_keys, finish_args = [keys[0]], [args[1]]  # the concurrency set, the slot ("" if none)
        token_bucket = f"{self.prefix}tk:"
        for i, bucket in enumerate(keys[1:]):  # args after the first three: (rate, charge) per bucket
            if bucket.startswith(token_bucket):
                per_minute, charged = args[3 + 2 * i], args[4 + 2 * i]
                finish_keys.append(bucket)
                finish_args.append(_token_correction(0, charged, per_minute))
        if len(finish_keys) == 1 and not args[1]:
            return
        self._finishing.append((finish_keys, finish_args))
        self._start_finisher(asyncio.get_running_loop())

    async def _send_admissions(self) -> None:
        """Send the waiting admissions, with the finishes waiting beside them (one round trip for
        both: FINISH_THEN_ADMIT), while any wait."""
        await asyncio.sleep(0)
        while self._admitting:
            batch, self._admitting = self._admitting, []
            finishes, self._finishing = self._finishing, []
            try:
                if finishes:
                    answers = await self._with_finishes(finishes, batch)
                elif len(batch) == 1:
                    answers = [await self._admit(keys=batch[0][0], args=[*batch[0][1], self._now()])]
                else:
                    keys: list[str] = []
                    args: list[Any] = []
                    for their_keys, their_args, _ in batch:
                        keys += their_keys
                        args += [len(their_keys), len(their_args), *their_args]
                    answers = list(await self._admit_many(keys=keys, args=[*args, self._now()]))
            except Exception as exc:  # every waiter decides what to do (RedisError: the fallback)
                if finishes and isinstance(exc, RedisError):  # the slots lapse by themselves
                    self._went_down(exc)
                for _, _, answer in batch:
                    if not answer.done():
                        answer.set_exception(exc)
                continue
            for (keys, args, answer), out in zip(batch, answers, strict=True):
                if not answer.done():
                    answer.set_result(out)
                elif answer.cancelled():  # its request was cancelled while this call was out
                    self._abandoned(keys, args, out)

    async def _with_finishes(
        self, finishes: list[tuple[list[str], list[Any]]], batch: list[tuple[list[str], list[Any], Any]]
    ) -> list[Any]:
        """FINISH_THEN_ADMIT's answers: the finishes applied, then each admission decided."""
        keys: list[str] = []
        done: list[Any] = []
        for their_keys, their_args in finishes:
            keys += their_keys
            done += [len(their_keys), *their_args]
        finished_keys = len(keys)
        args: list[Any] = []
        for their_keys, their_args, _ in batch:
            keys += their_keys
            args += [len(their_keys), len(their_args), *their_args]
        call = [finished_keys, len(done), *done, *args, self._now()]
        return list(await self._finish_then_admit(keys=keys, args=call))

    def finish(self, ticket: Ticket, actual_tokens: int | None) -> None:
        """Release the slot and correct the token estimate in the background (no request waits)."""
        if not ticket.shared:
            super().finish(ticket, actual_tokens)
            return
        slot = ticket.slot or ""
        if slot:
            self._slots.pop(slot, None)
        buckets = ticket.token_buckets if actual_tokens is not None else []
        if not slot and not buckets:
            return
        keys = [f"{self.prefix}conc:{ticket.key_id}"]
        args: list[Any] = [slot]
        for bucket, per_minute in buckets:
            charged = min(max(1, ticket.tokens_estimate), per_minute)
            keys.append(bucket)
            args.append(_token_correction(actual_tokens or 0, charged, per_minute))
        self._finishing.append((keys, args))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop: nothing can be sent; the slot lapses by itself
            self._finishing.clear()
            return
        if slot:
            self._start_finisher(loop)
        elif self._corrections_due is None:
            self._corrections_due = loop.call_later(self.CORRECTION_DELAY, self._send_corrections, loop)

    def _send_corrections(self, loop: asyncio.AbstractEventLoop) -> None:
        """The corrections no admission call carried in time: sent now, on their own."""
        self._corrections_due = None
        if self._finishing:
            self._start_finisher(loop)

    def _start_finisher(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._finisher is None or self._finisher.done():
            self._finisher = loop.create_task(self._send_finishes())
            self._tasks.add(self._finisher)
            self._finisher.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        """Send every finish still waiting (corrections included) and wait until they are applied."""
        if self._corrections_due is not None:
            self._corrections_due.cancel()
            self._corrections_due = None
        loop = asyncio.get_running_loop()
        while True:
            if self._finishing:
                self._start_finisher(loop)
            # Those a finisher left to an admission call go with that call: it is waited for too.
            waiting = set(self._tasks)
            admitter = self._admitter
            if admitter is not None and not admitter.done() and admitter.get_loop() is loop:
                waiting.add(admitter)
            if not waiting:
                return
            await asyncio.gather(*waiting, return_exceptions=True)

    async def _send_finishes(self) -> None:
        """Send the waiting finishes, all of them in one round trip (FINISH_MANY), while any wait:
        those of one event-loop iteration, then those that came while the last call was out.
        Admissions going meanwhile take them along (`_send_admissions`)."""
        await asyncio.sleep(0)
        while self._finishing:
            if self._admitting:  # an admission call goes next: these go with it
                return
            batch, self._finishing = self._finishing, []
            if len(batch) == 1:
                await self._run_finish(self._finish, *batch[0])
                continue
            keys: list[str] = []
            args: list[Any] = []
            for their_keys, their_args in batch:
                keys += their_keys
                args += [len(their_keys), *their_args]
            await self._run_finish(self._finish_many, keys, args)

    async def _run_finish(self, script: Any, keys: list[str], args: list[Any]) -> None:
        try:
            await script(keys=keys, args=[*args, self._now()])
        except RedisError as exc:  # the slot lapses by itself; a token correction is lost
            self._went_down(exc)

    def _now(self) -> str:
        """The scripts' last argument: the fake time in microseconds, or '' for Redis's TIME."""
        return "" if self._redis_clock is None else str(round(self._redis_clock() * 1e6))

    def _went_down(self, exc: Exception) -> None:
        if self._down_until <= self._clock():
            log.warning(
                "redis unreachable: rate limits are per replica until it is back", extra={"error": str(exc)}
            )
        self._down_until = self._clock() + self.RETRY_AFTER

    def _ensure_renewer(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew_forever())

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.RENEW_EVERY)
            await self.renew()

    async def renew(self) -> None:
        """Push back the expiry of this replica's live concurrency slots."""
        if not self._slots:
            return
        sets: dict[str, int] = {}
        args: list[Any] = [int(self.SLOT_TTL * 1e6)]
        for slot, conc in list(self._slots.items()):
            index = sets.setdefault(conc, len(sets) + 1)
            args += [index, slot]
        try:
            await self._renew(keys=list(sets), args=[*args, self._now()])
        except RedisError as exc:
            self._went_down(exc)

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        await self.flush()
        await self._scripts.close()
        await self.redis.aclose()
