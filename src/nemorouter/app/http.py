"""Small HTTP helpers shared by the routes: bounded body reads, JSON replies, error replies."""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from nemorouter import jsonx
from nemorouter.errors import InvalidRequest, NemoError, NotFound, RequestTooLarge

log = logging.getLogger("nemorouter.app")
JSON = "application/json"


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(jsonx.dumps(data), status_code=status, headers=headers, media_type=JSON)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit` (never read whole)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"the request body is over the limit of {limit} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"the request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """A management/admin body: money literals parse exactly (Decimal), never through float."""
    raw = await read_body(request, limit)
    if not raw.strip():
        return {}
    try:
        body = jsonx.loads_exact(raw, int64=True)
    except (jsonx.TooDeep, jsonx.OutOfRange) as exc:
        raise InvalidRequest(str(exc)) from None
    except ValueError:
        raise InvalidRequest("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


def error_response(error: NemoError, extra_headers: dict[str, str] | None = None) -> Response:
    headers = dict(error.headers)
    if extra_headers:
        headers.update(extra_headers)
    return json_response(error.body(), status=error.status, headers=headers)


async def on_nemo_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NemoError)
    return error_response(exc)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(NotFound(f"no route {request.method} {request.url.path}"))
    error = NemoError(
        exc.detail or "request refused", type="method_not_allowed" if exc.status_code == 405 else None
    )
    error.status = exc.status_code
    return error_response(error)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error", extra={"path": request.url.path})
    return error_response(NemoError("internal error"))
