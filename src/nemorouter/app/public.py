"""Public endpoints (no key): the leaked-key report for secret scanners."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nemorouter import jsonx
from nemorouter.app.http import json_response, read_body
from nemorouter.app.state import services_of
from nemorouter.errors import InvalidRequest, RateLimited
from nemorouter.limits.local import LimitExceeded
from nemorouter.service.leaks import report_leaks

REPORTS_PER_MINUTE = 30  # per client address
MAX_REPORT_BYTES = 2 * 1024 * 1024


async def leaks(request: Request) -> Response:
    services = services_of(request)
    client = request.client.host if request.client else "unknown"
    try:
        ticket = services.public_limiter.admit(f"leaks:{client}", REPORTS_PER_MINUTE, None, None, 0)
        services.public_limiter.finish(ticket, None)
    except LimitExceeded as exc:
        raise RateLimited(
            "too many leak reports from this address; retry later",
            retry_after=max(1, int(exc.decision.retry_after + 0.999)),
        ) from None
    raw = await read_body(request, MAX_REPORT_BYTES)
    try:
        body = jsonx.loads(raw)
    except jsonx.TooDeep as exc:
        raise InvalidRequest(str(exc)) from None
    except ValueError:
        raise InvalidRequest("the request body is not valid JSON") from None
    received, _ = await report_leaks(services.store, body, client, services.clock)
    if services.routes is not None:
        await services.routes.refresh(force=True)  # revoked keys leave this replica's cache now
    return json_response({"received": received}, status=202)


routes = [Route("/v1/leaks", leaks, methods=["POST"])]
