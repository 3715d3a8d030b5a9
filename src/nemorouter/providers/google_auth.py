"""OAuth access tokens for Google service accounts (the `vertex` kind's vault secrets), minted
by google-auth: the `Minter` the engine calls off the event loop (engine/minted.py caches and
refreshes what it returns). A token is never logged, and neither is the account's key: failures
carry a fixed message and the OAuth error code.

What a failure means (google-auth's `oauth2/_client.py`): a token endpoint that refuses the
grant (`invalid_grant`, a 400/401, `RefreshError` not retryable) refuses the key itself, an
AUTH failure that quarantines it; a token endpoint that is down (5xx, 429, timeouts: retryable,
already retried by google-auth with back-off, or a transport error) is not the key's fault.
"""

from __future__ import annotations

from typing import Any

from nemorouter.providers.types import Failure, FailureKind, Minter, Upstream

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
TOKEN_TIMEOUT = 10.0  # seconds for one call to the token endpoint


def mint(upstream: Upstream) -> tuple[str, float]:
    """A fresh access token for the service-account JSON `upstream.secret`, and its lifetime in
    seconds (blocking: run in a worker thread)."""
    import json

    from google.auth.transport.requests import Request
    from google.oauth2 import service_account

    info = json.loads(upstream.secret)
    factory: Any = service_account.Credentials.from_service_account_info  # untyped in google-auth
    credentials: Any = factory(info, scopes=list(SCOPES))
    transport = Request()

    def bounded(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", TOKEN_TIMEOUT)  # google-auth's own default is 120 s
        return transport(*args, **kwargs)

    credentials.refresh(bounded)
    expiry = credentials.expiry  # naive UTC, as google-auth keeps it
    lifetime = 3600.0
    if expiry is not None:
        from datetime import UTC, datetime

        lifetime = (expiry.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds()
    return str(credentials.token), lifetime


def classify(exc: BaseException) -> Failure:
    """The failure a token refresh raised, without any of the secret's text."""
    from google.auth import exceptions

    if isinstance(exc, exceptions.RefreshError):
        data = exc.args[1] if len(exc.args) > 1 else None
        code = data.get("error") if isinstance(data, dict) else None
        shown = f" ({code})" if isinstance(code, str) and code.isascii() and len(code) < 64 else ""
        if getattr(exc, "retryable", False):
            message = f"the service account's token endpoint is unavailable{shown}"
            return Failure(FailureKind.SERVER, 503, message, retryable=True)
        message = f"the token endpoint refused the service account{shown}"
        return Failure(FailureKind.AUTH, 401, message, retryable=True)
    if isinstance(exc, exceptions.TransportError):
        return Failure(FailureKind.CONNECT, 502, "the token endpoint could not be reached", retryable=True)
    # A secret google-auth cannot use (the admin API checks it, so: changed under us).
    return Failure(FailureKind.AUTH, 401, "the service account's key could not be used", retryable=True)


GOOGLE = Minter(mint, classify)
