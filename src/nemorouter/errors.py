"""The one error tree: every error knows its HTTP status and contract `type`.

    NemoError                      (base; status + type + message + extra fields)
    ├── InvalidRequest             400 invalid_request
    ├── AuthError                  401 invalid_key | key_revoked | key_expired | key_disabled
    ├── PaymentRequired            402 insufficient_credits | key_limit_exceeded
    ├── Forbidden                  403 forbidden | model_not_allowed | upstream_forbidden
    ├── NotFound                   404 not_found | model_not_found
    ├── Conflict                   409 conflict
    ├── RequestTooLarge            413 request_too_large
    ├── RateLimited                429 rate_limited | upstream_rate_limited
    ├── UpstreamError              502 upstream_error
    ├── NoDeploymentAvailable      503 no_deployment_available
    └── UpstreamTimeout            504 upstream_timeout

Messages are written for humans and never contain a secret.
"""

from __future__ import annotations

from typing import Any


class NemoError(Exception):
    status = 500
    type = "internal_error"

    def __init__(self, message: str, *, type: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        if type is not None:
            self.type = type
        self.extra = extra
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, Any]:
        """The contract's error object."""
        return {"error": {"code": self.status, "type": self.type, "message": self.message, **self.extra}}


class InvalidRequest(NemoError):
    status = 400
    type = "invalid_request"


class AuthError(NemoError):
    status = 401
    type = "invalid_key"


class PaymentRequired(NemoError):
    status = 402
    type = "insufficient_credits"


class Forbidden(NemoError):
    status = 403
    type = "forbidden"


class NotFound(NemoError):
    status = 404
    type = "not_found"


class Conflict(NemoError):
    status = 409
    type = "conflict"


class RequestTooLarge(NemoError):
    status = 413
    type = "request_too_large"


class RateLimited(NemoError):
    status = 429
    type = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, type: str | None = None, **extra: Any) -> None:
        super().__init__(message, type=type, **extra)
        self.retry_after = retry_after
        self.headers["retry-after"] = str(retry_after)


class UpstreamError(NemoError):
    status = 502
    type = "upstream_error"


class NoDeploymentAvailable(NemoError):
    status = 503
    type = "no_deployment_available"


class UpstreamTimeout(NemoError):
    status = 504
    type = "upstream_timeout"
