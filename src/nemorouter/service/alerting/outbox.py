"""Alerts out: the delivery worker. Sends each due outbox row as a Standard Webhook.

Every delivery is a POST of the row's stored body with the headers of the Standard Webhooks
specification (https://www.standardwebhooks.com/):

    webhook-id         the row id, the same on every retry (receivers deduplicate on it)
    webhook-timestamp  unix seconds of this attempt
    webhook-signature  "v1," + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}"))

where `key` is the signing secret with its `whsec_` prefix stripped, base64-decoded. A 2xx
answer marks the row delivered: it is never sent again. Anything else (another status, a
refused connection, a timeout) is retried with the same id: first after `alert_retry_base`
seconds (5 by default), doubling each time up to `alert_retry_cap` apart (an hour), until
`alert_retry_for` (a day) after the alert was written; then it is marked failed. The rows
live in the database, so a restart loses nothing. Delivery is at least once: a crash
between a receiver's 2xx and the mark sends that row again after its lease (30 s).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from nemorouter.service.alerting import destinations
from nemorouter.settings import Settings
from nemorouter.store.alert_records import OutboxItem
from nemorouter.store.base import Store
from nemorouter.timeutil import iso, parse_iso
from nemorouter.vault import Vault, VaultError

if TYPE_CHECKING:  # aiohttp loads in ~0.3 s: at the first delivery (_Sessions), not at every start
    import aiohttp

log = logging.getLogger("nemorouter.alerts")

SECRET_PREFIX = "whsec_"
VAULT_PROVIDER = "alerts"  # associated data of the sealed secrets: ("alerts", account id)
TIMEOUT = 10.0  # seconds for one delivery, connect to last byte
LEASE = 30.0  # a claimed row is not claimed again for this long (crash mid-send: retried then)
BATCH = 50


def new_secret() -> str:
    """A fresh signing secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret: the base64 after the `whsec_` prefix, decoded."""
    try:
        return base64.b64decode(secret.strip().removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a signing secret is `whsec_` followed by base64") from None


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def retry_delay(attempts: int, base: float, cap: float) -> float:
    """Seconds until the next attempt after `attempts` failed ones: base, 2 base, 4 base, ... cap."""
    return float(min(cap, base * 2 ** min(max(attempts - 1, 0), 64)))


class _Sessions:
    """The two aiohttp sessions deliveries go out on, made at the first delivery: aiohttp loads in
    ~0.3 s of CPU, which a server that never sends an alert need not pay at its start.

    trust_env: HTTP(S)_PROXY and NO_PROXY apply here as they do to calls to providers. Customers'
    webhooks go through a session that reaches public addresses only (webhook_session.py)."""

    def __init__(self, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._open: tuple[aiohttp.ClientSession, aiohttp.ClientSession] | None = None

    def opened(self) -> tuple[aiohttp.ClientSession, aiohttp.ClientSession]:
        """(the operator's session, the customers'), made now if need be (on the running loop)."""
        if self._open is None:
            import aiohttp

            from nemorouter.service.alerting.webhook_session import customer_session

            timeout = aiohttp.ClientTimeout(total=TIMEOUT)
            operator = aiohttp.ClientSession(timeout=timeout, trust_env=True)
            self._open = (operator, customer_session(timeout, self._allow_private))
        return self._open

    async def close(self) -> None:
        """Close both sessions: the customers' even if closing the operator's raised."""
        opened, self._open = self._open, None
        if opened is not None:
            operator, customers = opened
            try:
                await operator.close()
            finally:
                await customers.close()


class OutboxWorker:
    def __init__(
        self, store: Store, vault: Vault, settings: Settings, clock: Callable[[], datetime], poll: float = 0.5
    ) -> None:
        self.store = store
        self.vault = vault
        self.settings = settings
        self.clock = clock
        self.poll = min(poll, max(settings.alert_retry_base / 2, 0.05))
        # Checked here, at start: a malformed operator secret stops the server with a clear error.
        secret = settings.operator_alert_secret
        self._operator_key = signing_key(secret) if secret else None

    async def run(self, stopping: asyncio.Event) -> None:
        sessions = _Sessions(self.settings.webhooks_allow_private)
        try:
            while not stopping.is_set():
                try:
                    await self.deliver_due(sessions)
                except Exception:
                    log.exception("alert delivery round failed; trying again")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), self.poll)
        finally:
            await sessions.close()

    async def deliver_due(self, sessions: _Sessions) -> int:
        now = self.clock()
        items = await self.store.claim_alerts(iso(now), iso(now + timedelta(seconds=LEASE)), BATCH)
        if items:
            operator, customers = sessions.opened()
            await asyncio.gather(
                *(self._deliver(operator if i.account_id is None else customers, i) for i in items)
            )
        return len(items)

    def _target(self, item: OutboxItem) -> tuple[str, bytes | None] | None:
        if item.account_id is None:
            url = self.settings.operator_alert_url
            return (url, self._operator_key) if url else None
        if item.url is None or item.secret_envelope is None:
            return None
        secret = self.vault.decrypt(VAULT_PROVIDER, item.account_id, item.secret_envelope)
        return item.url, signing_key(secret.reveal())

    async def _deliver(self, session: aiohttp.ClientSession, item: OutboxItem) -> None:
        import aiohttp  # loaded by `_Sessions.opened` already: a dictionary lookup

        error: str | None = None
        try:
            target = self._target(item)
        except (VaultError, ValueError) as exc:
            target, error = None, f"the signing secret cannot be used: {exc}"
        if target is None:
            await self._finish(item, error or "no webhook URL is set", give_up=True)
            return
        url, key = target
        refused = None if item.account_id is None else self._refusal(url)
        if refused is not None:
            await self._finish(item, refused, give_up=True)
            return
        body = item.payload.encode()
        stamp = int(self.clock().timestamp())
        headers = {
            "content-type": "application/json",
            "user-agent": "NemoRouter-Webhooks/1",
            "webhook-id": item.id,
            "webhook-timestamp": str(stamp),
        }
        if key is not None:
            headers["webhook-signature"] = sign(key, item.id, stamp, body)
        try:
            async with session.post(url, data=body, headers=headers, allow_redirects=False) as answer:
                if not 200 <= answer.status < 300:
                    error = f"HTTP {answer.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(
                exc.os_error, destinations.PrivateAddress
            ):  # not retried: it won't change
                await self._finish(item, destinations.REFUSED, give_up=True)
                return
            error = type(exc).__name__  # never the URL: it may carry the receiver's own token
        await self._finish(item, error)

    def _refusal(self, url: str) -> str | None:
        return None if self.settings.webhooks_allow_private else destinations.literal_refusal(url)

    async def _finish(self, item: OutboxItem, error: str | None, give_up: bool = False) -> None:
        now = self.clock()
        if error is None:
            await self.store.alert_attempted(item.id, delivered=True, now=iso(now), retry_at=None, error=None)
            return
        settings = self.settings
        retry = now + timedelta(
            seconds=retry_delay(item.attempts, settings.alert_retry_base, settings.alert_retry_cap)
        )
        deadline = parse_iso(item.created_at) + timedelta(seconds=settings.alert_retry_for)
        retry_at = None if give_up or retry > deadline else iso(retry)
        log.warning(
            "alert not delivered" + ("; retrying" if retry_at else "; given up"),
            extra={"alert": item.id, "event": item.event_type, "attempts": item.attempts, "error": error},
        )
        await self.store.alert_attempted(
            item.id, delivered=False, now=iso(now), retry_at=retry_at, error=error
        )
