"""The customer key format: prefix + 256-bit base62 random part + CRC32 checksum (base62, 6 chars).

A key whose checksum fails is rejected without touching the database; only a SHA-256 hash
of a key is ever stored (keys carry 256 bits of entropy, so a slow hash adds nothing).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import zlib

INFERENCE_PREFIX = "sk-nemo-v1-"
MANAGEMENT_PREFIX = "sk-nemo-mgmt-v1-"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RANDOM_CHARS = 43  # 43 * log2(62) = 256.03 bits
_CHECK_CHARS = 6

# For secret scanners: matches both key kinds (the checksum is the last 6 characters).
KEY_PATTERN = re.compile(r"sk-nemo-(?:mgmt-)?v1-[0-9A-Za-z]{49}")


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), _CHECK_CHARS)


def new_key(scope: str) -> str:
    """A fresh key of scope `inference` or `management`."""
    prefix = MANAGEMENT_PREFIX if scope == "management" else INFERENCE_PREFIX
    body = prefix + "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_CHARS))
    return body + _checksum(body)


def key_scope(key: str) -> str | None:
    """`inference`, `management`, or None when the key is malformed or its checksum fails."""
    if key.startswith(INFERENCE_PREFIX):
        scope, rest = "inference", key[len(INFERENCE_PREFIX) :]
    elif key.startswith(MANAGEMENT_PREFIX):
        scope, rest = "management", key[len(MANAGEMENT_PREFIX) :]
    else:
        return None
    if len(rest) != _RANDOM_CHARS + _CHECK_CHARS or not rest.isascii() or not rest.isalnum():
        return None
    body, check = key[:-_CHECK_CHARS], key[-_CHECK_CHARS:]
    return scope if secrets.compare_digest(_checksum(body), check) else None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_hint(key: str) -> str:
    """What a UI may show of a key: its prefix and last four characters."""
    prefix = MANAGEMENT_PREFIX if key.startswith(MANAGEMENT_PREFIX) else INFERENCE_PREFIX
    return f"{prefix}...{key[-4:]}"
