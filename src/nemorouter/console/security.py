"""The console's secrets: argon2id passwords, session and invite tokens (only their SHA-256 is
stored), CSRF tokens, and the security headers every console answer carries."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

SESSION_COOKIE = "nemo_session"
# Before sign-in there is no session to hold a CSRF token: the sign-in and set-password forms
# carry a double-submit token (a cookie and a hidden field that must be equal).
LOGIN_CSRF_COOKIE = "nemo_login_csrf"
SESSION_SECONDS = 12 * 3600
INVITE_SECONDS = 72 * 3600
MIN_PASSWORD = 12
MAX_PASSWORD = 1024

# argon2-cffi's defaults are RFC 9106's second recommended profile (argon2id, 64 MiB, t=3, p=4).
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the email is unknown, so a miss costs as long as a wrong password.
    Made at the first sign-in, not at import: a hash is ~0.3 s of CPU and 64 MiB, which every
    server's start would pay whether or not anyone signs in."""
    return _hasher.hash(secrets.token_urlsafe(16))


SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same(given: str | None, expected: str | None) -> bool:
    """Constant-time equality of two tokens; a missing one never matches."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


async def hash_password(password: str) -> str:
    # ~50-100 ms of CPU and 64 MiB: off the event loop.
    return await asyncio.to_thread(_hasher.hash, password)


async def password_ok(stored: str | None, password: str) -> bool:
    def check() -> bool:
        dummy = _dummy_hash()  # made (once) whether or not the email is known: the same time either way
        try:
            return _hasher.verify(stored or dummy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < MIN_PASSWORD:
        return f"use at least {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"use at most {MAX_PASSWORD} characters"
    return None
