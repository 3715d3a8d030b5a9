"""Authentication of customer keys: checksum first, then one indexed lookup of the hash."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from nemorouter.errors import AuthError, Forbidden
from nemorouter.service.keyformat import hash_key, key_scope
from nemorouter.service.routing import RoutingTable
from nemorouter.store.base import Store
from nemorouter.store.records import ApiKey
from nemorouter.timeutil import iso


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


class Authenticates(Protocol):
    """What the app authenticates through: an Authenticator, or a wrapper of one (tracing's)."""

    async def authenticate(self, secret: str | None, scope: str, *, cached: bool = False) -> ApiKey: ...


class Authenticator:
    """Checks keys. On the inference path a key record may come from a cache that is dropped
    whenever the store's config version moves (every key change bumps it); that is safe
    because `reserve` re-checks revocation, disabling and expiry in the same atomic step that
    holds the money, so a revoked key still fails on its very next request."""

    CACHE_MAX = 100_000

    def __init__(
        self, store: Store, clock: Callable[[], datetime], routes: RoutingTable | None = None
    ) -> None:
        self._store = store
        self._clock = clock
        self._routes = routes
        self._cache: dict[str, tuple[ApiKey, str | None]] = {}
        self._cache_version = -1

    async def authenticate(self, secret: str | None, scope: str, *, cached: bool = False) -> ApiKey:
        """The live key for `secret`, of the given scope (`inference` or `management`)."""
        if secret is None:
            raise AuthError("missing API key: send `Authorization: Bearer sk-nemo-...`")
        digest = hash_key(secret)
        found = self._cached(digest) if cached else None
        if found is None:
            found_scope = key_scope(secret)
            if found_scope is None:
                raise AuthError("malformed API key (bad format or checksum)")
            if found_scope != scope:
                raise Forbidden(f"this endpoint needs an {scope} key, not an {found_scope} key")
            found = await self._store.find_key(digest)
            if found is None:
                raise AuthError("unknown API key")
            if cached:
                self._remember(digest, found)
        key, valid_until = found
        if key.revoked_at is not None or key.disabled:
            check_live(key, "")
        if key.expires_at is not None or valid_until is not None:
            now = iso(self._clock())
            check_live(key, now)
            if valid_until is not None and valid_until <= now:
                raise AuthError("this key was rotated and its grace period has ended", type="key_revoked")
        return key

    def _cached(self, digest: str) -> tuple[ApiKey, str | None] | None:
        version = self._routes.version if self._routes is not None else -1
        if version != self._cache_version or version < 0:
            self._cache.clear()
            self._cache_version = version
            return None
        return self._cache.get(digest)

    def _remember(self, digest: str, found: tuple[ApiKey, str | None]) -> None:
        if self._cache_version < 0:
            return
        if len(self._cache) >= self.CACHE_MAX:
            self._cache.clear()
        self._cache[digest] = found


def check_live(key: ApiKey, now: str) -> None:
    if key.revoked_at is not None:
        raise AuthError("this key has been revoked", type="key_revoked")
    if key.disabled:
        raise AuthError("this key is disabled", type="key_disabled")
    if key.expires_at is not None and key.expires_at <= now:
        raise AuthError("this key has expired", type="key_expired")
