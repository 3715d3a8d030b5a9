"""What a provider secret may be: it is sent in an HTTP header, so printable ASCII only.

A CR or LF in a header value could split the upstream request (header injection), a NUL or
other control character breaks it, and a space inside is a paste mistake ("Bearer sk-..."):
refused when the secret is added (API, CLI, console), never stored. Surrounding whitespace,
such as the newline `echo` adds on the CLI's stdin, is dropped.
"""

from __future__ import annotations

import unicodedata

from nemorouter.errors import InvalidRequest
from nemorouter.service.administration.service_account import checked_service_account

MAX_LENGTH = 8192


def checked_secret(value: object, kind: str | None = None) -> str:
    """The secret, stripped, or InvalidRequest naming what is wrong (never echoing the secret).
    A `vertex` provider's secret is a service-account JSON, exchanged for tokens, never sent."""
    if kind == "vertex":
        return checked_service_account(value)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest("`secret` must be a non-empty string")
    secret = value.strip()
    if len(secret) > MAX_LENGTH:
        raise InvalidRequest(f"`secret` is longer than {MAX_LENGTH} characters")
    if any(unicodedata.category(c) == "Cc" for c in secret):  # C0, DEL and C1
        raise InvalidRequest(
            "`secret` contains a control character (CR, LF, NUL, tab, DEL or similar): paste the key alone"
        )
    if not all("!" <= c <= "~" for c in secret):
        raise InvalidRequest("`secret` must be printable ASCII without spaces (it is sent in an HTTP header)")
    return secret
