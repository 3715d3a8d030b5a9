"""Authentication of customer keys: checksum first, then one indexed lookup of the hash."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from nemorouter.errors import AuthError, Forbidden
from nemorouter.service.keyformat import hash_key, key_scope
from nemorouter.store.base import Store
from nemorouter.store.records import ApiKey
from nemorouter.timeutil import iso


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


class Authenticator:
    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock

    async def authenticate(self, secret: str | None, scope: str) -> ApiKey:
        """The live key for `secret`, of the given scope (`inference` or `management`)."""
        if secret is None:
            raise AuthError("missing API key: send `Authorization: Bearer sk-nemo-...`")
        found_scope = key_scope(secret)
        if found_scope is None:
            raise AuthError("malformed API key (bad format or checksum)")
        if found_scope != scope:
            raise Forbidden(f"this endpoint needs an {scope} key, not an {found_scope} key")
        found = await self._store.find_key(hash_key(secret))
        if found is None:
            raise AuthError("unknown API key")
        key, valid_until = found
        now = iso(self._clock())
        check_live(key, now)
        if valid_until is not None and valid_until <= now:
            raise AuthError("this key was rotated and its grace period has ended", type="key_revoked")
        return key


def check_live(key: ApiKey, now: str) -> None:
    if key.revoked_at is not None:
        raise AuthError("this key has been revoked", type="key_revoked")
    if key.disabled:
        raise AuthError("this key is disabled", type="key_disabled")
    if key.expires_at is not None and key.expires_at <= now:
        raise AuthError("this key has expired", type="key_expired")
