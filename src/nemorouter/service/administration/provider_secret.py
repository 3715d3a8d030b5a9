"""What a provider secret may be: it is sent in an HTTP header, so printable ASCII only (an
AWS key for kind `bedrock` is JSON instead, checked as such).

A CR or LF in a header value could split the upstream request (header injection), a NUL or
other control character breaks it, and a space inside is a paste mistake ("Bearer sk-..."):
refused when the secret is added (API, CLI, console), never stored. Surrounding whitespace,
such as the newline `echo` adds on the CLI's stdin, is dropped.
"""

from __future__ import annotations

import unicodedata

import orjson

from nemorouter.errors import InvalidRequest
from nemorouter.providers import bedrock_signing
from nemorouter.service.administration.service_account import checked_service_account

MAX_LENGTH = 8192


def checked_secret(value: object, kind: str | None = None) -> str:
    """The secret, stripped, or InvalidRequest naming what is wrong (never echoing the secret).
    A `bedrock` provider's secret is an AWS key as JSON (`_aws_secret`); a `vertex` provider's, a
    service-account JSON, exchanged for tokens, never sent; other kinds', a header value."""
    if kind == "vertex":
        return checked_service_account(value)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest("`secret` must be a non-empty string")
    secret = value.strip()
    if len(secret) > MAX_LENGTH:
        raise InvalidRequest(f"`secret` is longer than {MAX_LENGTH} characters")
    if kind == "bedrock":
        return _aws_secret(secret)
    if any(unicodedata.category(c) == "Cc" for c in secret):  # C0, DEL and C1
        raise InvalidRequest(
            "`secret` contains a control character (CR, LF, NUL, tab, DEL or similar): paste the key alone"
        )
    if not all("!" <= c <= "~" for c in secret):
        raise InvalidRequest("`secret` must be printable ASCII without spaces (it is sent in an HTTP header)")
    return secret


def _aws_secret(secret: str) -> str:
    """A Bedrock secret: `{"access_key_id", "secret_access_key", "session_token"?, "role_arn"?,
    "external_id"?}`, checked by the adapter's own reader and stored compact (its values never
    in the error)."""
    try:
        key = bedrock_signing.credentials(secret)
    except ValueError as exc:
        raise InvalidRequest(f"`secret`: {exc}") from None
    stored = {"access_key_id": key.access_key_id, "secret_access_key": key.secret_access_key}
    for name in ("session_token", "role_arn", "external_id"):
        value = getattr(key, name)
        if value is not None:
            stored[name] = value
    return orjson.dumps(stored).decode()
