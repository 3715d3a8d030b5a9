"""Parsing of management/admin request fields: exact money, clear 400s."""

from __future__ import annotations

from typing import Any

from nemorouter.errors import InvalidRequest
from nemorouter.money import LIMIT_RESETS, parse_usd
from nemorouter.money.amounts import MAX_AMOUNT, MoneyFormatError
from nemorouter.timeutil import iso, parse_iso

KEY_FIELDS = (
    "name",
    "limit",
    "limit_reset",
    "expires_at",
    "rpm",
    "tpm",
    "max_concurrency",
    "allowed_models",
    "disabled",
)


MAX_INT = MAX_AMOUNT  # a count (rate limit, size) is held in the same 64-bit columns as an amount


def money(value: Any, name: str, *, positive: bool = False) -> int:
    """A USD amount from a request field: exact pico-USD within the ledger's range (MAX_AMOUNT),
    else a 400 naming the field and the maximum."""
    try:
        amount = parse_usd(
            str(value) if not isinstance(value, (str, int)) or isinstance(value, bool) else value
        )
    except MoneyFormatError as exc:
        raise InvalidRequest(f"`{name}`: {exc}") from None
    if amount < 0 or (positive and amount == 0):
        raise InvalidRequest(f"`{name}` must be {'positive' if positive else 'zero or more'}")
    return amount


def optional_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_INT:
        raise InvalidRequest(f"`{name}` must be a positive integer (at most {MAX_INT}) or null")
    return value


def key_fields(body: dict[str, Any], *, creating: bool, now: str) -> dict[str, Any]:
    """Validated key settings from a request body (only the fields present, unless creating)."""
    unknown = set(body) - set(KEY_FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    if creating or "name" in body:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise InvalidRequest("`name` must be a non-empty string of at most 200 characters")
        out["name"] = name.strip()
    if "limit" in body:
        out["limit"] = None if body["limit"] is None else money(body["limit"], "limit")
    if "limit_reset" in body:
        if body["limit_reset"] not in (*LIMIT_RESETS, None):
            raise InvalidRequest("`limit_reset` must be daily, weekly, monthly or null")
        out["limit_reset"] = body["limit_reset"]
    if "expires_at" in body:
        value = body["expires_at"]
        if value is None:
            out["expires_at"] = None
        else:
            try:
                stored = iso(parse_iso(value)) if isinstance(value, str) else None
            except ValueError:
                stored = None
            if stored is None:
                raise InvalidRequest("`expires_at` must be an ISO 8601 time")
            if stored <= now:
                raise InvalidRequest("`expires_at` is in the past")
            out["expires_at"] = stored
    for name in ("rpm", "tpm", "max_concurrency"):
        if name in body:
            out[name] = optional_int(body[name], name)
    if "allowed_models" in body:
        value = body["allowed_models"]
        if value is not None and (not isinstance(value, list) or not all(isinstance(m, str) for m in value)):
            raise InvalidRequest("`allowed_models` must be a list of model ids or null")
        out["allowed_models"] = tuple(value) if value is not None else None
    if "disabled" in body:
        if creating or not isinstance(body["disabled"], bool):
            raise InvalidRequest("`disabled` must be a boolean (and is set with PATCH)")
        out["disabled"] = body["disabled"]
    return out


def text(body: dict[str, Any], name: str, *, required: bool = True, maximum: int = 500) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > maximum:
        raise InvalidRequest(f"`{name}` must be a non-empty string of at most {maximum} characters")
    return value.strip()


def positive_int(body: dict[str, Any], name: str, default: int) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_INT:
        raise InvalidRequest(f"`{name}` must be a non-negative integer (at most {MAX_INT})")
    return value
