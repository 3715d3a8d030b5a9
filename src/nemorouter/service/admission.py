"""Before any provider is called: the models a key asked for, the attempts that may serve them,
the rate limits, and the hold (the ceiling of every charge) reserved in the store."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from nemorouter.engine.dispatch import Attempt
from nemorouter.engine.health import Health
from nemorouter.errors import Forbidden, InvalidRequest, NoDeploymentAvailable, NotFound, RateLimited
from nemorouter.limits.local import AccountLimits, LimitExceeded, LocalLimiter, Ticket
from nemorouter.money import window_start
from nemorouter.providers.canonical import ProviderPrefs
from nemorouter.service import billing
from nemorouter.service.metrics import Metrics
from nemorouter.service.routing import Route, RoutingTable, Target
from nemorouter.service.selection import candidates
from nemorouter.store.base import Store
from nemorouter.store.records import ApiKey, Hold, ReserveResult
from nemorouter.timeutil import iso, time_ordered_id

log = logging.getLogger("nemorouter.gateway")
# Longest a key whose limits refused it sends its reserves after them (not beside): seconds.
HOLD_BACK = 10.0


@dataclass(slots=True, init=False)
class Call:
    """One admitted request: its id, key, hold and limiter ticket."""

    id: str
    key: ApiKey
    endpoint: str
    routes: list[Route]
    attempts: list[Attempt[Target]]
    hold: int
    input_bound: int
    max_output: int
    ticket: Ticket
    started: float
    created_at: str
    stream: bool
    unit: str = ""  # a request priced per unit: the unit it is held for ("" for tokens only)
    units: int = 0  # and how many of it the hold covers

    # A hand-written __init__: compiled, a direct constructor (docs/architecture.md, "Speed").
    def __init__(
        self,
        id: str,
        key: ApiKey,
        endpoint: str,
        routes: list[Route],
        attempts: list[Attempt[Target]],
        hold: int,
        input_bound: int,
        max_output: int,
        ticket: Ticket,
        started: float,
        created_at: str,
        stream: bool,
        unit: str = "",
        units: int = 0,
    ) -> None:
        self.id = id
        self.key = key
        self.endpoint = endpoint
        self.routes = routes
        self.attempts = attempts
        self.hold = hold
        self.input_bound = input_bound
        self.max_output = max_output
        self.ticket = ticket
        self.started = started
        self.created_at = created_at
        self.stream = stream
        self.unit = unit
        self.units = units


class Admission:
    def __init__(
        self,
        store: Store,
        routes: RoutingTable,
        limiter: LocalLimiter,
        clock: Callable[[], datetime],
        owner: str,
        metrics: Metrics,
        health: Health,
    ) -> None:
        self.store = store
        self.routes = routes
        self.limiter = limiter
        self.clock = clock
        self.owner = owner
        self.metrics = metrics
        self.health = health
        self._rng = random.Random()
        self.refusals: set[tuple[str, str]] = set()  # (key id, reason) of refused reserves; alerts drain it
        # PostgreSQL's, to reserve beside the shared limits; None (SQLite): limits first, as
        # nothing would be saved (no round trip) and there is no exact undo.
        self._unreserve: Callable[[str], Awaitable[bool]] | None = getattr(store, "unreserve", None)
        self._refused_until: dict[str, float] = {}  # key id -> until when its reserves wait for limits
        self._later: set[asyncio.Future[None]] = set()  # holds being given back after their request left

    async def resolve(self, key: ApiKey, ids: list[str], mode: str) -> list[Route]:
        await self.routes.refresh()
        found: list[Route] = []
        for model_id in ids:
            route = self.routes.route(model_id)
            allowed = key.allowed_models
            # A key allowed a model may use it by any alias; naming an alias in the list allows its model.
            if (
                allowed is not None
                and model_id not in allowed
                and (route is None or route.model.id not in allowed)
            ):
                raise Forbidden(f"this key may not use model {model_id}", type="model_not_allowed")
            if route is None:
                raise NotFound(f"model {model_id} does not exist", type="model_not_found")
            if route.model.mode != mode:
                raise InvalidRequest(f"model {model_id} is a {route.model.mode} model, not a {mode} model")
            found.append(route)
        return found

    def candidates(self, routes: list[Route], prefs: ProviderPrefs | None) -> list[Attempt[Target]]:
        attempts, wait = candidates(routes, prefs, self.health, self._rng)
        if attempts:
            return attempts
        if wait is not None:
            raise RateLimited(
                "every provider for this model asked us to wait; retry shortly",
                type="upstream_rate_limited",
                retry_after=max(1, math.ceil(wait)),
            )
        raise NoDeploymentAvailable(
            "no deployment of this model is available right now (all cooling down, disabled or filtered out)"
        )

    async def pass_limits(self, key: ApiKey, tokens_estimate: int) -> Ticket:
        """Count the request against the key's and account's rate limits (429 past them); the
        caller ends it with `limiter.finish(ticket, tokens)`."""
        try:
            account = AccountLimits(key.account_id, key.account_rpm, key.account_tpm)
            if self.limiter.shared:  # Redis, shared by every replica
                return await self.limiter.admit_shared(
                    key.id, key.rpm, key.tpm, key.max_concurrency, tokens_estimate, account
                )
            return self.limiter.admit(key.id, key.rpm, key.tpm, key.max_concurrency, tokens_estimate, account)
        except LimitExceeded as exc:
            self.metrics.rate_limited.labels(exc.what).inc()
            error = RateLimited(
                f"rate limit of this key exceeded ({exc.what}); retry after {exc.decision.retry_after:.1f}s",
                retry_after=max(1, int(exc.decision.retry_after + 0.999)),
            )
            error.headers.update(exc.headers)
            raise error from None

    async def admit(
        self,
        key: ApiKey,
        endpoint: str,
        routes: list[Route],
        attempts: list[Attempt[Target]],
        bound: int,
        max_output: int,
        n: int,
        stream: bool,
        tokens_estimate: int,
        unit: str = "",
        units: int = 0,
    ) -> Call:
        """Pass the rate limits, then reserve the hold: the worst case over every attempt's prices.

        With shared limits (Redis) and a store that can give a hold back exactly (PostgreSQL's
        `unreserve`), both are sent at once when no other admission is on its way: one round
        trip less on the request's path. The limits still decide first: a request they refuse
        gets their 429, its hold given back before that answer; and a key they refused sends its
        reserves after them again while it was asked to wait (at most `HOLD_BACK` seconds), so a
        flood of 429s costs the database nothing. A hold reserved beside a refused admission counts against the key and the
        account until given back (milliseconds): at the very edge of a limit a request may be
        refused then, never admitted past it. A request priced per unit holds `units` of `unit`
        besides its tokens."""
        hold, dearest = billing.dearest([a.origin.prices for a in attempts], bound, max_output, unit, units)
        # Beside only when no admission call is out: under load, admissions that come back
        # together send their reserves together, in one batch (store/postgres/batches.py);
        # sent beside each admission they would go in more, smaller batches.
        beside = (
            self._unreserve is not None
            and self.limiter.shared
            and not self.limiter.admitting()
            and not self._held_back(key.id)
        )
        if not beside:
            ticket = await self.pass_limits(key, tokens_estimate)
        now = self.clock()
        stamp = iso(now)
        request_id = time_ordered_id("gen-")
        started = time.monotonic()
        reserving = self.store.reserve(
            Hold(
                request_id,
                key.account_id,
                key.id,
                hold,
                window_start(key.limit_reset, now),
                self.owner,
                stamp,
                model=routes[0].model.id,
                endpoint=endpoint,
                streamed=stream,
            ),
            stamp,
        )
        if beside:
            reserved = asyncio.ensure_future(reserving)
            try:
                ticket = await self.pass_limits(key, tokens_estimate)
            except RateLimited as refused:
                self._hold_back(key.id, refused.retry_after)
                # Given back before the 429 goes out, and all the same if this request is
                # cancelled while it is.
                await asyncio.shield(self._give_back_later(reserved, request_id))
                raise
            except BaseException:  # cancelled (the client left) or failed: the hold goes back
                self._give_back_later(reserved, request_id)
                raise
            try:
                result = await reserved
            except BaseException:  # failed, or cancelled while it runs on: no request to hold for
                self.limiter.finish(ticket, 0)
                self._give_back_later(reserved, request_id)
                raise
        else:
            try:
                result = await reserving
            except BaseException:  # failed, or cancelled while it ran (the store gives such a hold back)
                self.limiter.finish(ticket, 0)
                raise
        call = Call(
            id=request_id,
            key=key,
            endpoint=endpoint,
            routes=routes,
            attempts=attempts,
            hold=hold,
            input_bound=bound,
            max_output=max_output,
            ticket=ticket,
            started=started,
            created_at=stamp,
            stream=stream,
            unit=unit,
            units=units,
        )
        if not result.ok:
            self.limiter.finish(ticket, 0)
            self.refusals.add((key.id, result.reason))
            raise billing.refusal(result, hold, dearest, bound, n, units)
        self.metrics.open_holds += 1
        return call

    def _held_back(self, key_id: str) -> bool:
        """Whether this key's limits refused it lately: its reserves wait for them again."""
        until = self._refused_until.get(key_id)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        del self._refused_until[key_id]
        return False

    def _hold_back(self, key_id: str, retry_after: float) -> None:
        if len(self._refused_until) >= 10_000:  # keys refused long ago go first
            now = time.monotonic()
            self._refused_until = {k: t for k, t in self._refused_until.items() if t > now}
        self._refused_until[key_id] = time.monotonic() + min(float(retry_after), HOLD_BACK)

    def _give_back_later(
        self, reserved: asyncio.Future[ReserveResult], request_id: str
    ) -> asyncio.Future[None]:
        later = asyncio.ensure_future(self._give_back(reserved, request_id))
        self._later.add(later)
        later.add_done_callback(self._later.discard)
        return later

    async def _give_back(self, reserved: asyncio.Future[ReserveResult], request_id: str) -> None:
        """The hold reserved beside an admission its limits refused, given back exactly."""
        unreserve = self._unreserve
        assert unreserve is not None
        try:
            result = await asyncio.shield(reserved)
        except Exception:  # the reserve failed: nothing was held
            return
        except asyncio.CancelledError:
            if reserved.cancelled():  # cut off while it ran: the store gives that hold back itself
                return
            raise
        if not result.ok:
            return
        try:
            await unreserve(request_id)
        except Exception as exc:  # left open: recovered with its owner's holds (docs/failures.md)
            log.error("a hold could not be given back", extra={"request": request_id, "error": str(exc)})
