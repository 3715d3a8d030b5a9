"""A `vertex` provider's vault secret: a Google service-account key file (JSON), checked whole.

The file is what `gcloud iam service-accounts keys create` writes; the gateway signs the
JWT-bearer grant with its `private_key` and posts it to its `token_uri` (providers/google_auth.py, cached by engine/minted.py),
so those, with `client_email` (the JWT's issuer), must be there and usable. Errors name the
field, never its value.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlparse

from nemorouter.errors import InvalidRequest

MAX_LENGTH = 16384
_REQUIRED = ("client_email", "private_key", "token_uri")


def checked_service_account(value: object) -> str:
    """The service-account JSON as given (stripped), or InvalidRequest naming the missing or
    invalid field."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest("`secret` must be the service account's JSON key file")
    if len(value) > MAX_LENGTH:
        raise InvalidRequest(f"`secret` is longer than {MAX_LENGTH} characters")
    try:
        info: Any = json.loads(value)
    except ValueError:
        raise InvalidRequest("`secret` is not JSON: give the service account's JSON key file") from None
    if not isinstance(info, dict):
        raise InvalidRequest("`secret` must be a JSON object (the service account's key file)")
    if info.get("type") != "service_account":
        raise InvalidRequest('`secret.type` must be "service_account" (a service account\'s JSON key file)')
    for name in _REQUIRED:
        if not isinstance(info.get(name), str) or not info[name].strip():
            raise InvalidRequest(f"`secret.{name}` is missing (a service account's JSON key file has it)")
    if "@" not in info["client_email"]:
        raise InvalidRequest("`secret.client_email` is not an email address")
    parsed = urlparse(info["token_uri"])
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidRequest("`secret.token_uri` must be an http(s) URL")
    _check_key(info["private_key"])
    return value.strip()


def _check_key(pem: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise InvalidRequest("`secret.private_key` is not a PEM private key that can be read") from None
    # Google signs service-account grants with RS256 only (google-auth's `crypt.RSASigner`).
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InvalidRequest("`secret.private_key` must be an RSA key (Google's grants are RS256)")
