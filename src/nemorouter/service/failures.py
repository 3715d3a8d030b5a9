"""Upstream failures -> the contract's errors, with provider text scrubbed of anything key-like."""

from __future__ import annotations

import re

from nemorouter.engine.dispatch import AttemptsFailed
from nemorouter.errors import (
    Forbidden,
    InvalidRequest,
    NemoError,
    NoDeploymentAvailable,
    RateLimited,
    RequestTooLarge,
    UpstreamError,
    UpstreamTimeout,
)
from nemorouter.providers.types import Failure, FailureKind

_KEYLIKE = re.compile(r"(sk|pk|rk|key|AIza)[-_A-Za-z0-9*.]{8,}|Bearer\s+\S+", re.IGNORECASE)


def scrub(message: str) -> str:
    """Providers sometimes quote part of the key they were given; never pass that on."""
    return _KEYLIKE.sub("[redacted]", message)


def client_message(failure: Failure) -> str:
    if failure.kind is FailureKind.AUTH:
        return "the provider refused its credentials"
    return scrub(failure.message)


def to_error(exc: AttemptsFailed) -> NemoError:
    final = exc.final
    if final is not None and final.kind is FailureKind.FORBIDDEN:
        # The provider refused this request (a 403: a file, a model or a policy it may not use):
        # this client's failure, answered as such; no other key or deployment was tried for it.
        return Forbidden(
            f"the provider refused this request: {scrub(final.message)} (status {final.status})",
            type="upstream_forbidden",
        )
    if final is not None:
        text = f"the provider rejected the request: {client_message(final)}"
        if final.status in (400, 422):
            return InvalidRequest(text)
        if final.status == 413:
            return RequestTooLarge(text)
        return UpstreamError(f"{text} (status {final.status})")
    failures = exc.failures
    if not failures:
        return NoDeploymentAvailable("no deployment of this model is available right now")
    if all(f.kind is FailureKind.UNSUPPORTED for f in failures):
        return InvalidRequest(f"this model's provider cannot take the request: {failures[0].message}")
    if all(f.kind is FailureKind.RATE_LIMITED for f in failures):
        waits = [f.retry_after for f in failures if f.retry_after is not None]
        return RateLimited(
            "every provider for this model is rate-limiting us; retry shortly",
            type="upstream_rate_limited",
            retry_after=max(1, min(waits)) if waits else 1,
        )
    last = failures[-1]
    if last.kind is FailureKind.TIMEOUT:
        return UpstreamTimeout("the provider did not answer in time")
    return UpstreamError(f"every provider attempt failed; last: {client_message(last)}")
