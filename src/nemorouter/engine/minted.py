"""Secrets minted from vault secrets, per vault key: a Google service account's OAuth access
token (providers/google_auth.py), an AWS role's temporary credentials (providers/bedrock_sts.py).

The adapter's `Minter` runs in a worker thread (the libraries that do it block), so the event
loop never waits on it. What it mints is cached per vault key and refreshed before it expires
(5 minutes early, or at half its life if it lives shorter), the old one serving meanwhile
(until a minute before it expires); concurrent requests for one key share one refresh. A
refresh that fails is classified by the adapter's `Minter` without any of the secret's text.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from nemorouter.providers.types import Failure, Minter, Upstream

EARLY = 300.0  # seconds before expiry at which a successor is minted
LAST = 60.0  # seconds before expiry after which a minted secret is no longer sent
RETRY = 5.0  # seconds between tries to mint a successor while the old one serves


class _Token:
    __slots__ = ("refresh_at", "usable_until", "value")

    def __init__(self, value: str, refresh_at: float, usable_until: float) -> None:
        self.value = value
        self.refresh_at = refresh_at  # from here a successor is minted...
        self.usable_until = usable_until  # ...while this one still serves, until here


def _retrieved(future: asyncio.Future[_Token]) -> None:
    if not future.cancelled():
        future.exception()


class MintedSecrets:
    """Minted secrets per vault key, minted off the event loop, shared, refreshed early."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[str, _Token] = {}
        self._pending: dict[str, asyncio.Future[_Token]] = {}

    async def upstream_for(self, key_id: str, upstream: Upstream, minter: Minter) -> Upstream | Failure:
        """The upstream with a live minted secret as its secret, or why none could be had. One
        due for refresh still serves while its successor is minted; a request waits for the
        minting only when there is no usable one."""
        token = self._tokens.get(key_id)
        now = self._clock()
        if token is None or now >= token.refresh_at:
            pending = self._pending.get(key_id)
            if pending is None:
                pending = asyncio.ensure_future(self._refresh(key_id, upstream, minter))
                pending.add_done_callback(_retrieved)  # read even if every waiter went away
                self._pending[key_id] = pending
            if token is None or now >= token.usable_until:
                try:
                    token = await asyncio.shield(pending)
                except Exception as exc:  # every refresh failure is classified
                    return minter.classify(exc)
        return Upstream(upstream.model, upstream.base_url, token.value, upstream.max_output, upstream.config)

    async def _refresh(self, key_id: str, upstream: Upstream, minter: Minter) -> _Token:
        try:
            value, lifetime = await asyncio.to_thread(minter.mint, upstream)
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
        """Drop what the provider refused; the next attempt mints afresh."""
        self._tokens.pop(key_id, None)
