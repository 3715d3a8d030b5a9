"""Rate limits shared by every replica: the local limiter's semantics, decided in Redis.

One Lua script checks every limit that applies (concurrency, then requests and tokens per
minute for the key and its account) and charges them only if all pass, so check-all-then-charge
is atomic across replicas. Time is Redis's own clock (`TIME`), so replicas' clocks never
disagree. Concurrency slots are members of a sorted set scored by their expiry; a live replica
renews its slots, a dead one's lapse within `SLOT_TTL` seconds.

When Redis cannot be reached the limiter falls back to per-replica limits (the inherited
LocalLimiter) and tries Redis again every `RETRY_AFTER` seconds; see docs/deployment.md.
Money caps never depend on this: they are decided in the database.
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
from nemorouter.limits.resp import Scripts

log = logging.getLogger("nemorouter.limits")

_MINUTE_US = 60_000_000

# Now, in microseconds: Redis's own clock, unless the last ARGV gives one (a test's fake clock;
# RedisLimiter(redis_clock=...)). Every script below is registered after it.
NOW = """
local now = tonumber(ARGV[#ARGV])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
"""

# K (keys): concurrency set, then one key per limit. A (arguments): max concurrency (-1: none),
# slot id, slot ttl (us), then per limit: rate, cost. Returns {allowed, refused index (0: concurrency),
# then remaining, retry_us, reset_us per limit decided}.
ADMIT_FUNCTION = """
local function admit(K, A)
local maxc = tonumber(A[1])
if maxc >= 0 then
  redis.call('ZREMRANGEBYSCORE', K[1], '-inf', now)
  if redis.call('ZCARD', K[1]) >= maxc then
    return {0, 0}
  end
end
local out = {1, -1}
local tats = {}
for i = 2, #K do
  local rate = tonumber(A[2 + (i - 1) * 2])
  local cost = tonumber(A[3 + (i - 1) * 2])
  local interval = 60000000 / rate
  local tat = tonumber(redis.call('GET', K[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval * cost
  local allow_at = new_tat - 60000000
  if allow_at > now + 1 then
    local remaining = math.floor((60000000 - (tat - now)) / interval + 1e-9)
    if remaining < 0 then remaining = 0 end
    table.insert(out, remaining)
    table.insert(out, math.ceil(allow_at - now))
    table.insert(out, math.ceil(tat - now))
    out[1] = 0
    out[2] = i - 1
    return out
  end
  local remaining = math.floor((60000000 - (new_tat - now)) / interval + 1e-9)
  if remaining < 0 then remaining = 0 end
  table.insert(out, remaining)
  table.insert(out, 0)
  table.insert(out, math.ceil(new_tat - now))
  tats[i] = new_tat
end
for i = 2, #K do
  redis.call('SET', K[i], string.format('%.0f', tats[i]), 'PX', math.ceil((tats[i] - now) / 1000) + 1000)
end
if maxc >= 0 then
  local ttl = tonumber(A[3])
  redis.call('ZADD', K[1], now + ttl, A[2])
  redis.call('PEXPIRE', K[1], math.ceil(ttl / 1000) + 1000)
end
return out
end
"""
ADMIT = ADMIT_FUNCTION + "return admit(KEYS, ARGV)"

# Many admissions in one call, decided one after the other exactly as ADMIT would: KEYS from
# index k are theirs one after the other; ARGV from index a to `last` per admission: its number
# of keys, its number of arguments, then its arguments. Returns ADMIT's answer for each, in order.
ADMIT_MANY_FUNCTION = """
local function admit_many(k, a, last)
local out = {}
while a <= last do
  local nk, na = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local K, A = {}, {}
  for j = 1, nk do K[j] = KEYS[k + j - 1] end
  for j = 1, na do A[j] = ARGV[a + 1 + j] end
  table.insert(out, admit(K, A))
  k = k + nk
  a = a + 2 + na
end
return out
end
"""
ADMIT_MANY = ADMIT_FUNCTION + ADMIT_MANY_FUNCTION + "return admit_many(1, 1, #ARGV - 1)"

# KEYS: concurrency set (or ''), then token keys. ARGV: slot id (or ''), then a delta (us) per key.
FINISH = """
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[1], ARGV[1]) end
for i = 2, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v then
    local tat = tonumber(v) + tonumber(ARGV[i])
    if tat > now then
      redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
    else
      redis.call('DEL', KEYS[i])
    end
  end
end
return 1
"""

# Many finishes in one call: KEYS from index k are theirs one after the other; ARGV from index a
# to `last` per finish: its number of keys (n), its slot id (or ''), then n - 1 deltas (us). Each
# applied as FINISH does, in order.
FINISH_MANY_FUNCTION = """
local function finish_many(k, a, last)
while a <= last do
  local n = tonumber(ARGV[a])
  if ARGV[a + 1] ~= '' then redis.call('ZREM', KEYS[k], ARGV[a + 1]) end
  for j = 1, n - 1 do
    local v = redis.call('GET', KEYS[k + j])
    if v then
      local tat = tonumber(v) + tonumber(ARGV[a + 1 + j])
      if tat > now then
        redis.call('SET', KEYS[k + j], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
      else
        redis.call('DEL', KEYS[k + j])
      end
    end
  end
  k = k + n
  a = a + n + 1
end
end
"""
FINISH_MANY = FINISH_MANY_FUNCTION + "finish_many(1, 1, #ARGV - 1) return 1"

# The finishes waiting when admissions go, in the same call: ARGV[1] and ARGV[2] are the number
# of KEYS and of ARGV of the finishes (FINISH_MANY's), which come first and are applied first
# (their requests ended before these were admitted: a slot they free counts for them); then the
# admissions' (ADMIT_MANY's). Returns ADMIT's answer for each admission, in order.
FINISH_THEN_ADMIT = (
    ADMIT_FUNCTION
    + ADMIT_MANY_FUNCTION
    + FINISH_MANY_FUNCTION
    + """
local fk, fa = tonumber(ARGV[1]), tonumber(ARGV[2])
finish_many(1, 3, 2 + fa)
return admit_many(fk + 1, 3 + fa, #ARGV - 1)
"""
)

# KEYS: concurrency sets; ARGV: slot ttl (us), then `set index, slot id` pairs. Renews live slots.
RENEW = """
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV - 1, 2 do
  local k = KEYS[tonumber(ARGV[i])]
  redis.call('ZADD', k, 'XX', now + ttl, ARGV[i + 1])
  redis.call('PEXPIRE', k, math.ceil(ttl / 1000) + 1000)
end
return 1
"""


class RedisLimiter(LocalLimiter):
    """Shared limits in Redis; the inherited local limiter is the fallback while Redis is down."""

    shared = True
    SLOT_TTL = 30.0  # seconds a concurrency slot lives without renewal (a dead replica's come back)
    RENEW_EVERY = 10.0
    RETRY_AFTER = 1.0  # seconds between attempts to reach Redis while it is down

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
        return await answer

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
            for (_, _, answer), out in zip(batch, answers, strict=True):
                if not answer.done():
                    answer.set_result(out)

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
            args.append(int(((actual_tokens or 0) - charged) * _MINUTE_US / per_minute))
        self._finishing.append((keys, args))
        if self._finisher is None or self._finisher.done():
            try:
                self._finisher = asyncio.get_running_loop().create_task(self._send_finishes())
            except RuntimeError:  # no event loop: nothing can be sent; the slot lapses by itself
                self._finishing.clear()
                return
            self._tasks.add(self._finisher)
            self._finisher.add_done_callback(self._tasks.discard)

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
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._scripts.close()
        await self.redis.aclose()
