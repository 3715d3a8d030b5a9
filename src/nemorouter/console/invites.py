"""Inviting an account's user: a one-time set-password link (CLI and admin API alike)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from nemorouter.console.security import INVITE_SECONDS, new_token, token_hash
from nemorouter.errors import Conflict, InvalidRequest
from nemorouter.service import fields
from nemorouter.service.container import Services
from nemorouter.store.base import StoreError
from nemorouter.timeutil import iso, to_api

INVITE_PATH = "/console/invite/"


def normal_email(value: object) -> str:
    if not isinstance(value, str) or "@" not in value.strip() or len(value.strip()) > 320:
        raise InvalidRequest("`email` must be an email address")
    return value.strip().lower()


async def invite(services: Services, account_id: str, body: dict[str, Any], base_url: str) -> dict[str, Any]:
    """Create (or reuse) the account's user with this email and a fresh set-password link.

    The link is valid for 72 hours and once; only its hash is stored, so it is shown here only.
    A new link for the same user leaves older unused links valid until they expire.
    """
    unknown = set(body) - {"email"}
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    email = normal_email(fields.text(body, "email", maximum=320))
    await services.admin.account(account_id)  # 404 for an unknown account
    now = services.clock()
    try:
        user = await services.store.upsert_console_user(account_id, email, iso(now))
    except StoreError as exc:
        raise Conflict(str(exc)) from None
    token = new_token()
    expires = iso(now + timedelta(seconds=INVITE_SECONDS))
    await services.store.create_console_invite(user.id, token_hash(token), expires, iso(now))
    return {
        "user_id": user.id,
        "account_id": account_id,
        "email": email,
        "link": base_url.rstrip("/") + INVITE_PATH + token,
        "expires_at": to_api(expires),
    }
