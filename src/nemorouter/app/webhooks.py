"""Webhooks in (no key; each is verified by its sender's own signature scheme)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nemorouter.app.http import json_response
from nemorouter.service.accounting.stripe_webhook import handle_event, not_configured
from nemorouter.web.body import read_body
from nemorouter.web.state import services_of

MAX_EVENT_BYTES = 1024 * 1024  # Stripe events are a few kilobytes


async def stripe_webhook(request: Request) -> Response:
    services = services_of(request)
    secret = services.settings.stripe_webhook_secret
    if secret is None:
        raise not_configured()
    raw = await read_body(request, MAX_EVENT_BYTES)
    answer = await handle_event(services.store, raw, request.headers.get("stripe-signature"), secret)
    return json_response(answer)


routes = [Route("/webhooks/stripe", stripe_webhook, methods=["POST"])]
