"""OAuth access tokens for Google service accounts (the `vertex` kind's vault secrets).

google-auth signs the JWT-bearer grant and posts it to the account's `token_uri`, in a worker
thread (its transport is blocking `requests`), so the event loop never waits on it. Tokens are
cached per vault key and refreshed before they expire (5 minutes early, or at half their life
if they live shorter), the old one serving meanwhile (until a minute before it expires);
concurrent requests for one key share one refresh. A token is never
logged, and neither is the account's key: failures carry a fixed message and the OAuth error code.

What a failure means (google-auth's `oauth2/_client.py`): a token endpoint that refuses the
grant (`invalid_grant`, a 400/401, `RefreshError` not retryable) refuses the key itself, an
AUTH failure that quarantines it; a token endpoint that is down (5xx, 429, timeouts: retryable,
already retried by google-auth with back-off, or a transport error) is not the key's fault.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from nemorouter.providers.types import Failure, FailureKind, Upstream

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
EARLY = 300.0  # seconds before expiry at which a token's successor is minted
LAST = 60.0  # seconds before expiry after which a token is no longer sent
RETRY = 5.0  # seconds between tries to mint a successor while the old token serves
TOKEN_TIMEOUT = 10.0  # seconds for one call to the token endpoint

Minter = Callable[[str], tuple[str, float]]


def mint(secret: str) -> tuple[str, float]:
    """A fresh access token for a service-account JSON and its lifetime in seconds (blocking)."""
    import json

    from google.auth.transport.requests import Request
    from google.oauth2 import service_account

    info = json.loads(secret)
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


class _Token:
    __slots__ = ("refresh_at", "usable_until", "value")

    def __init__(self, value: str, refresh_at: float, usable_until: float) -> None:
        self.value = value
        self.refresh_at = refresh_at  # from here a successor is minted...
        self.usable_until = usable_until  # ...while this one still serves, until here


def _retrieved(future: asyncio.Future[_Token]) -> None:
    if not future.cancelled():
        future.exception()


class GoogleTokens:
    """Access tokens per vault key, minted off the event loop, shared, refreshed early."""

    def __init__(self, minter: Minter = mint, clock: Callable[[], float] = time.monotonic) -> None:
        self._mint = minter
        self._clock = clock
        self._tokens: dict[str, _Token] = {}
        self._pending: dict[str, asyncio.Future[_Token]] = {}

    async def upstream_for(self, key_id: str, upstream: Upstream) -> Upstream | Failure:
        """The upstream with a live access token as its secret, or why none could be had. A
        token due for refresh still serves while its successor is minted; a request waits for
        the token endpoint only when there is no usable token."""
        token = self._tokens.get(key_id)
        now = self._clock()
        if token is None or now >= token.refresh_at:
            pending = self._pending.get(key_id)
            if pending is None:
                pending = asyncio.ensure_future(self._refresh(key_id, upstream.secret))
                pending.add_done_callback(_retrieved)  # read even if every waiter went away
                self._pending[key_id] = pending
            if token is None or now >= token.usable_until:
                try:
                    token = await asyncio.shield(pending)
                except Exception as exc:  # every refresh failure is classified
                    return classify(exc)
        return Upstream(upstream.model, upstream.base_url, token.value, upstream.max_output, upstream.config)

    async def _refresh(self, key_id: str, secret: str) -> _Token:
        try:
            value, lifetime = await asyncio.to_thread(self._mint, secret)
            life = max(lifetime, 0.0)
            now = self._clock()
            token = _Token(value, now + life - min(EARLY, life / 2), now + life - min(LAST, life / 4))
            self._tokens[key_id] = token
            return token
        except Exception:
            serving = self._tokens.get(key_id)
            if serving is not None:  # the old token serves on; try again a little later, not per request
                serving.refresh_at = min(self._clock() + RETRY, serving.usable_until)
            raise
        finally:
            self._pending.pop(key_id, None)

    def forget(self, key_id: str) -> None:
        """Drop a token the provider refused; the next attempt mints a fresh one."""
        self._tokens.pop(key_id, None)
