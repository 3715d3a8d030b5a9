"""Alerts out: what becomes an alert, and when. Delivery is `service.alerting.outbox`.

Events, each a JSON body `{"type", "timestamp", "data": {...}}` (Standard Webhooks' shape):

- `credits.low` — the account's balance is below its `low_balance_threshold`. Found off the
  request path by a watcher that compares balances with thresholds every second; sent once,
  and again only after the balance was back at or above the threshold.
- `key.limit_reached` — a request was refused 402 `key_limit_exceeded`. The gateway only
  notes the key in a set (O(1)); the watcher turns the set into alerts, once per key, limit
  and budget window.
- `key.revoked` — a key was revoked (API or leak report); once per key.
- `key.leaked` — a leak report revoked a key (sent with its `key.revoked`); once per key.
- `provider_key.quarantined` — operator alert (to NEMO_OPERATOR_ALERT_URL): a provider refused
  a vault key; once per quarantine.
- `provider.overrun` — operator alert: a provider reported more than a request's hold covered;
  the customer was charged the hold and the difference is the operator's (once per request).

An account's alerts are queued only while it has a webhook (`PUT /v1/alerts`). One-off facts
get ids derived from the fact, so a fact noticed twice (two replicas, a retry) queues once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from nemorouter import jsonx
from nemorouter.errors import InvalidRequest
from nemorouter.money import Usd, window_start
from nemorouter.service import audit, fields
from nemorouter.service.alerting import destinations
from nemorouter.service.alerting.outbox import VAULT_PROVIDER, new_secret
from nemorouter.settings import Settings
from nemorouter.store.alert_records import Alert, AlertSettings
from nemorouter.store.base import Store
from nemorouter.store.records import ApiKey, Overrun
from nemorouter.timeutil import iso, to_api
from nemorouter.vault import Vault

log = logging.getLogger("nemorouter.alerts")
LIMIT_REFUSAL = "key_limit_exceeded"


def _fact_id(*parts: str) -> str:
    return "msg_" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def make_alert(
    event_type: str, account_id: str | None, now: datetime, data: dict[str, Any], alert_id: str | None = None
) -> Alert:
    stamp = iso(now)
    body = {"type": event_type, "timestamp": to_api(stamp), "data": data}
    return Alert(
        id=alert_id or "msg_" + secrets.token_hex(16),
        account_id=account_id,
        event_type=event_type,
        payload=jsonx.dumps(body).decode(),
        created_at=stamp,
    )


def _key_data(key: ApiKey) -> dict[str, Any]:
    return {"account_id": key.account_id, "key_id": key.id, "name": key.name, "label": key.hint}


async def key_revoked(store: Store, key: ApiKey, now: datetime, cause: str) -> None:
    """`cause`: `api` (an owner or the operator revoked it) or `leak` (a leak report)."""
    data = {**_key_data(key), "revoked_at": to_api(key.revoked_at or iso(now)), "cause": cause}
    await store.enqueue_alert(
        make_alert("key.revoked", key.account_id, now, data, _fact_id("revoked", key.id))
    )


async def key_leaked(store: Store, key: ApiKey, now: datetime, url: str | None, source: str | None) -> None:
    data = {**_key_data(key), "url": url, "source": source, "reported_at": to_api(iso(now))}
    await store.enqueue_alert(make_alert("key.leaked", key.account_id, now, data, _fact_id("leaked", key.id)))


# -- PUT /v1/alerts -----------------------------------------------------------------------


async def configure(
    store: Store,
    vault: Vault,
    account_id: str,
    body: dict[str, Any],
    now: datetime,
    *,
    allow_private: bool,
) -> tuple[AlertSettings, str | None]:
    """Set the account's webhook. Returns the settings and the signing secret when it is new
    (the first time only: it is kept only sealed by the vault and never shown again)."""
    unknown = set(body) - {"url", "low_balance_threshold"}
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    url = fields.text(body, "url", maximum=2000)
    assert url is not None
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidRequest("`url` must be an http(s) URL")
    refused = None if allow_private else destinations.literal_refusal(url)
    if refused is not None:  # (service/alerting/destinations.py)
        raise InvalidRequest(f"`url`: {refused}")
    raw = body.get("low_balance_threshold")
    threshold = None if raw is None else fields.money(raw, "low_balance_threshold")
    secret = new_secret()
    envelope = vault.encrypt(VAULT_PROVIDER, account_id, secret)
    found, created = await store.put_alert_settings(account_id, url, threshold, envelope, iso(now))
    await audit.record(
        store,
        now,
        "alerts.configure",
        account_id=account_id,
        targets={"account_id": account_id},
        # Where deliveries go, without userinfo or query (either may carry a credential).
        params={
            "url": f"{parsed.scheme}://{parsed.hostname}{parsed.path}",
            "low_balance_threshold_pico": threshold,
            "signing_secret_created": created,
        },
    )
    return found, secret if created else None


def settings_view(found: AlertSettings) -> dict[str, Any]:
    threshold = found.low_balance_threshold
    return {
        "url": found.url,
        "low_balance_threshold": Usd(threshold) if threshold is not None else None,
        "low_balance": found.low_since is not None,
        "created_at": to_api(found.created_at),
        "updated_at": to_api(found.updated_at),
    }


def put_answer(found: AlertSettings, secret: str | None) -> dict[str, Any]:
    """The answer to PUT /v1/alerts: the contract's top-level fields (`signing_secret` only when
    it is new) and the settings as `data`."""
    view = settings_view(found)
    head = {"signing_secret": secret} if secret is not None else {}
    return {**head, "url": view["url"], "low_balance_threshold": view["low_balance_threshold"], "data": view}


def delivery_view(row: dict[str, Any]) -> dict[str, Any]:
    state = "delivered" if row["delivered_at"] else "failed" if row["failed_at"] else "pending"
    return {
        "id": row["id"],
        "type": row["event_type"],
        "status": state,
        "attempts": row["attempts"],
        "last_error": row["last_error"],
        "created_at": to_api(row["created_at"]),
        "delivered_at": to_api(row["delivered_at"]),
        "next_attempt_at": to_api(row["next_attempt_at"]),
    }


# -- the watcher --------------------------------------------------------------------------


class AlertWatcher:
    """Turns state into alerts, off the request path, once a second."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        clock: Callable[[], datetime],
        refusals: set[tuple[str, str]],
        every: float = 1.0,
        overruns: list[Overrun] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.refusals = refusals  # (key id, reason) of refused reserves, filled by the gateway
        self.overruns = [] if overruns is None else overruns  # operator overruns, filled by the gateway
        self.every = every
        self._queued: set[str] = set()  # facts this process has queued (the store dedupes across processes)

    def _remember(self, fact: str) -> bool:
        """Whether `fact` is new to this process (saves a write per second while it lasts)."""
        if fact in self._queued:
            return False
        if len(self._queued) > 100_000:
            self._queued.clear()  # forgetting only costs a write the store ignores
        self._queued.add(fact)
        return True

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("alert watcher round failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.every)

    async def tick(self) -> None:
        now = self.clock()
        await self._low_balances(now)
        await self._limits_reached(now)
        if self.settings.operator_alert_url:
            await self._quarantines(now)
            await self._overruns(now)
        else:
            self.overruns.clear()  # logged and counted already; nowhere to send them

    async def _low_balances(self, now: datetime) -> None:
        for found, balance in await self.store.low_balance_watch():
            threshold = found.low_balance_threshold
            assert threshold is not None
            if balance < threshold and found.low_since is None:
                data = {
                    "account_id": found.account_id,
                    "balance": Usd(balance),
                    "low_balance_threshold": Usd(threshold),
                }
                alert = make_alert("credits.low", found.account_id, now, data)
                await self.store.set_low_balance(found.account_id, alert, iso(now))
            elif balance >= threshold and found.low_since is not None:
                await self.store.set_low_balance(found.account_id, None, iso(now))

    async def _limits_reached(self, now: datetime) -> None:
        if not self.refusals:
            return
        hits = {key_id for key_id, reason in self.refusals if reason == LIMIT_REFUSAL}
        self.refusals.clear()
        for key_id in sorted(hits):
            key = await self.store.get_key(key_id)
            if key is None or key.limit is None:
                continue
            window = window_start(key.limit_reset, now)
            data = {
                **_key_data(key),
                "limit": Usd(key.limit),
                "limit_reset": key.limit_reset,
                "window": window,
            }
            fact = _fact_id("limit", key.id, window, str(key.limit))
            if self._remember(fact):
                await self.store.enqueue_alert(
                    make_alert("key.limit_reached", key.account_id, now, data, fact)
                )

    async def _overruns(self, now: datetime) -> None:
        found, self.overruns[:] = list(self.overruns), []
        for o in found:
            data = {
                "request_id": o.request_id,
                "provider": o.provider,
                "provider_key_id": o.provider_key_id,
                "model": o.model,
                "hold": Usd(o.hold),
                "charged": Usd(o.charged),
                "reported_cost": Usd(o.reported_cost),
                "overrun": Usd(o.overrun),
                "reason": o.reason,
            }
            fact = _fact_id("overrun", o.request_id)
            await self.store.enqueue_alert(make_alert("provider.overrun", None, now, data, fact))

    async def _quarantines(self, now: datetime) -> None:
        names = {p.id: p.name for p in await self.store.list_providers()}
        for pk in await self.store.list_provider_keys():
            if pk.quarantined_at is None:
                continue
            data = {
                "provider": names.get(pk.provider_id, pk.provider_id),
                "provider_key_id": pk.id,
                "label": pk.label,
                "fingerprint": pk.fingerprint,
                "quarantined_at": to_api(pk.quarantined_at),
            }
            fact = _fact_id("quarantined", pk.id, pk.quarantined_at)
            if self._remember(fact):
                await self.store.enqueue_alert(make_alert("provider_key.quarantined", None, now, data, fact))
