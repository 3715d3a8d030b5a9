"""Small HTTP helpers of the framework's routes: bounded body reads, JSON replies, error replies
(the reader and the error rendering are the hot routes' own too: web/body.py, app/error_replies.py)."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from nemorouter import jsonx
from nemorouter.app.error_replies import error_headers, error_json, unexpected
from nemorouter.errors import InvalidRequest, NemoError, NotFound
from nemorouter.web.body import read_body

JSON = "application/json"


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(jsonx.dumps(data), status_code=status, headers=headers, media_type=JSON)


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


def error_response(error: NemoError) -> Response:
    return Response(
        error_json(error), status_code=error.status, headers=error_headers(error), media_type=JSON
    )


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
    return error_response(unexpected(request.url.path))
