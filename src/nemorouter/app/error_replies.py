"""An error as the JSON answer a client gets: one rendering for the hot routes (app/fast.py) and
the framework's (app/http.py). The shape is the contract's (`{"error": {...}}`) unless the route's
front door has its own (Anthropic's on /v1/messages); the status and headers (Retry-After, ...)
come from the error."""

from __future__ import annotations

import logging

from nemorouter import jsonx
from nemorouter.errors import NemoError
from nemorouter.frontdoors.door import ErrorBody, contract_error_body

log = logging.getLogger("nemorouter.app")


def error_json(error: NemoError, shape: ErrorBody = contract_error_body) -> bytes:
    return jsonx.dumps(shape(error))


def error_headers(error: NemoError, defaults: dict[str, str] | None = None) -> dict[str, str]:
    """`defaults` (a fresh request id) under the error's own headers (Retry-After, the id of the
    request it refused)."""
    return {**defaults, **error.headers} if defaults else dict(error.headers)


def unexpected(path: str) -> NemoError:
    """What answers an exception nobody expected (logged here with its traceback): a bare 500."""
    log.exception("unexpected error", extra={"path": path})
    return NemoError("internal error")
