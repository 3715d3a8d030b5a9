"""Public endpoints (no key): the leaked-key report for secret scanners.

Anyone may call it, so what it may cost is budgeted before the work is done, per client address
(the peer, or the client a proxy in NEMO_TRUSTED_PROXIES names: cli/server.py) and for all
addresses together, so that no flood of reports, from one address or many, can take the event
loop or the store from inference: reports are counted before the body is read, and the
database lookups a report needs (its distinct well-formed keys) before any is made.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nemorouter import jsonx
from nemorouter.app.http import json_response
from nemorouter.errors import InvalidRequest, RateLimited
from nemorouter.limits.gcra import gcra
from nemorouter.service.alerting.leaks import MAX_ITEMS, parse_report, report_leaks
from nemorouter.web.body import read_body
from nemorouter.web.state import services_of

REPORTS_PER_MINUTE = 30  # per client address
LOOKUPS_PER_MINUTE = MAX_ITEMS  # well-formed keys looked up, per client address: one full report
ALL_REPORTS_PER_MINUTE = 300  # every address together
ALL_LOOKUPS_PER_MINUTE = 10_000
MAX_REPORT_BYTES = 2 * 1024 * 1024
_MINUTE = 60.0
_PRUNE_AT = 100_000  # addresses remembered before the drained ones are forgotten


class _Budget:
    """GCRA buckets of units per minute: one per address, and one for all addresses together."""

    def __init__(self, per_address: int, overall: int, clock: Callable[[], float]) -> None:
        self._per_address = per_address
        self._overall = overall
        self._clock = clock
        self._tat: dict[str, float] = {}
        self._all_tat = 0.0

    def take(self, address: str, cost: int, what: str) -> None:
        """Charge `cost` (at most the per-address rate) to the address and to everyone, or raise
        RateLimited charging nothing."""
        assert 1 <= cost <= self._per_address, cost
        now = self._clock()
        if len(self._tat) > _PRUNE_AT:
            self._tat = {a: t for a, t in self._tat.items() if t > now}
        mine, mine_tat = gcra(self._tat.get(address, now), now, self._per_address, _MINUTE, cost)
        if not mine.allowed:
            raise _refused(f"too many {what} from this address", mine.retry_after)
        everyone, all_tat = gcra(self._all_tat, now, self._overall, _MINUTE, cost)
        if not everyone.allowed:
            raise _refused(f"too many {what} from all addresses", everyone.retry_after)
        self._tat[address] = mine_tat
        self._all_tat = all_tat


def _refused(message: str, retry_after: float) -> RateLimited:
    return RateLimited(f"{message}; retry later", retry_after=max(1, int(retry_after + 0.999)))


class LeakLimits:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.reports = _Budget(REPORTS_PER_MINUTE, ALL_REPORTS_PER_MINUTE, clock)
        self.lookups = _Budget(LOOKUPS_PER_MINUTE, ALL_LOOKUPS_PER_MINUTE, clock)


async def leaks(request: Request) -> Response:
    services = services_of(request)
    limits: LeakLimits = request.app.state.leak_limits
    client = request.client.host if request.client else "unknown"
    limits.reports.take(client, 1, "leak reports")
    raw = await read_body(request, MAX_REPORT_BYTES)
    try:
        body = jsonx.loads(raw)
    except jsonx.TooDeep as exc:
        raise InvalidRequest(str(exc)) from None
    except ValueError:
        raise InvalidRequest("the request body is not valid JSON") from None
    report = parse_report(body)
    if report.candidates:
        limits.lookups.take(client, len(report.candidates), "keys reported")
    revoked = await report_leaks(services.store, report, client, services.clock)
    if revoked and services.routes is not None:
        await services.routes.refresh(force=True)  # revoked keys leave this replica's cache now
    return json_response({"received": report.received}, status=202)


routes = [Route("/v1/leaks", leaks, methods=["POST"])]
