"""Records of alerts out: an account's webhook settings and the outbox of deliveries."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AlertSettings:
    account_id: str
    url: str
    low_balance_threshold: int | None  # pico-USD; None: no credits.low alerts
    secret_envelope: str  # the signing secret, sealed by the vault
    low_since: str | None  # when credits.low was sent (cleared once the balance is back up)
    created_at: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class Alert:
    """A new outbox row. `id` is the webhook-id; `account_id` None is an operator alert."""

    id: str
    account_id: str | None
    event_type: str
    payload: str  # the exact JSON body that is signed and sent
    created_at: str


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A due delivery, with where it goes (None for an operator alert: from the settings)."""

    id: str
    account_id: str | None
    event_type: str
    payload: str
    attempts: int  # including the one this item was claimed for
    created_at: str
    url: str | None
    secret_envelope: str | None
