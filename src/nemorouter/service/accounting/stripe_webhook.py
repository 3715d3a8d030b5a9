"""Stripe top-ups: a paid Checkout Session credits its account, once per Stripe event.

The signature is verified with Stripe's own library (`stripe.Webhook.construct_event`:
HMAC-SHA256 of `{t}.{body}` under the endpoint secret, timestamps older than 5 minutes
refused). Decisions where the contract is silent:

- NEMO_STRIPE_WEBHOOK_SECRET unset: 503 `not_configured`. Stripe retries a failed delivery
  for up to three days, so payments made while the secret was missing are still credited
  once it is set (a 404 would be retried as well, but reads as "wrong URL").
- A paid session in another currency than USD, without `metadata.nemo_account_id`, or for an
  account that does not exist: 400 and nothing changes. Stripe shows the failed delivery in
  its dashboard and keeps retrying, so the operator can fix the cause and let it through.
- `amount_total` is integer cents: credited exactly as cents x 10^10 pico-USD. A paid session
  of 0 is acknowledged (200) and credits nothing. An amount past what the ledger holds
  (MAX_AMOUNT, alone or added to the account's total credits) is a 400 and credits nothing.
- Other event types, and sessions not `paid` yet: 200, ignored.

The credit's idempotency key is `stripe:<event id>`: the same event delivered again (Stripe
retries, or replays it) answers 200 and credits nothing more.
"""

from __future__ import annotations

from typing import Any

from nemorouter.errors import InvalidRequest, NemoError
from nemorouter.money import PICO_PER_USD
from nemorouter.money.amounts import AmountRangeError, check_amount
from nemorouter.store.base import Store

PICO_PER_CENT = PICO_PER_USD // 100
PAID_EVENT = "checkout.session.completed"


def not_configured() -> NemoError:
    error = NemoError(
        "Stripe top-ups are not configured on this server (set NEMO_STRIPE_WEBHOOK_SECRET)",
        type="not_configured",
    )
    error.status = 503
    return error


def verified_event(payload: bytes, signature: str | None, secret: str) -> dict[str, Any]:
    """The event, if `signature` (the Stripe-Signature header) signs `payload` under `secret`."""
    import stripe  # imported on first use: a quarter of a second a server without Stripe need not pay

    try:
        event = stripe.Webhook.construct_event(payload, signature, secret)
    except (stripe.SignatureVerificationError, ValueError):
        raise InvalidRequest("the Stripe-Signature header does not verify this body") from None
    data: dict[str, Any] = event.to_dict()
    return data


async def handle_event(store: Store, payload: bytes, signature: str | None, secret: str) -> dict[str, Any]:
    """Verify and apply one Stripe event; the JSON answer for Stripe."""
    event = verified_event(payload, signature, secret)
    event_id, kind = event.get("id"), event.get("type")
    obj = (event.get("data") or {}).get("object") or {}
    if kind != PAID_EVENT:
        return {"received": True, "credited": False, "ignored": f"event type {kind}"}
    if obj.get("payment_status") != "paid":
        return {"received": True, "credited": False, "ignored": "the session is not paid"}
    if not isinstance(event_id, str) or not event_id:
        raise InvalidRequest("the event has no id")
    if str(obj.get("currency", "")).lower() != "usd":
        raise InvalidRequest(f"only USD top-ups are credited (this session is in {obj.get('currency')!r})")
    cents = obj.get("amount_total")
    if not isinstance(cents, int) or isinstance(cents, bool) or cents < 0:
        raise InvalidRequest("`amount_total` must be a whole number of cents")
    account_id = (obj.get("metadata") or {}).get("nemo_account_id")
    if not isinstance(account_id, str) or await store.get_account(account_id) is None:
        raise InvalidRequest("`metadata.nemo_account_id` does not name an account")
    if cents == 0:
        return {"received": True, "credited": False, "ignored": "nothing to credit"}
    reason = f"Stripe Checkout {str(obj.get('id', ''))[:200]}".strip()
    try:
        amount = check_amount(cents * PICO_PER_CENT)
        credit, created = await store.add_credit(account_id, amount, reason, f"stripe:{event_id}")
    except AmountRangeError as exc:  # past what the ledger holds, alone or in the account's total
        raise InvalidRequest(f"`amount_total`: {exc}") from None
    return {"received": True, "credited": created, "credit_id": credit.id}
