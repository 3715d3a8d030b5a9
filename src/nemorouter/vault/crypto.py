"""Envelope encryption with AES-256-GCM.

Each secret gets its own random data key (DEK); the DEK is encrypted ("wrapped") under the
master key (KEK). Both layers bind the provider and key id as associated data, so a
ciphertext copied onto another key's row does not decrypt. Rotating the master key only
rewraps DEKs.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = "v1"
_NONCE_BYTES = 12


class VaultError(Exception):
    """A vault operation failed; the message never contains secret material."""


class Secret:
    """A decrypted secret that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__


def fingerprint(secret: str) -> str:
    """A stable, non-reversible label of a secret, safe to show operators."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    return AESGCM(key).decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], aad)


class Vault:
    """Encrypts and decrypts provider secrets under one master key."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise VaultError("the master key must be 32 bytes")
        self._kek = master_key
        self.key_id = hashlib.sha256(b"nemorouter-kek:" + master_key).hexdigest()[:12]

    @staticmethod
    def _aad(provider: str, key_id: str) -> bytes:
        return f"nemorouter:{provider}:{key_id}".encode()

    def encrypt(self, provider: str, key_id: str, secret: str) -> str:
        """Return the sealed envelope `v1.<kek id>.<wrapped dek>.<ciphertext>`."""
        aad = self._aad(provider, key_id)
        dek = AESGCM.generate_key(bit_length=256)
        wrapped = _seal(self._kek, dek, aad + b":dek")
        sealed = _seal(dek, secret.encode(), aad)
        return ".".join((_VERSION, self.key_id, _b64(wrapped), _b64(sealed)))

    def decrypt(self, provider: str, key_id: str, envelope: str) -> Secret:
        parts = envelope.split(".")
        if len(parts) != 4 or parts[0] != _VERSION:
            raise VaultError(f"unreadable envelope for provider key {key_id}")
        if parts[1] != self.key_id:
            raise VaultError(f"provider key {key_id} is sealed under another master key ({parts[1]})")
        aad = self._aad(provider, key_id)
        try:
            dek = _open(self._kek, _unb64(parts[2]), aad + b":dek")
            return Secret(_open(dek, _unb64(parts[3]), aad).decode())
        except (InvalidTag, ValueError):
            raise VaultError(f"provider key {key_id} failed authentication (tampered or misfiled)") from None

    def rewrap(self, provider: str, key_id: str, envelope: str, new: Vault) -> str:
        """Re-seal an envelope's data key under another master key (master-key rotation)."""
        parts = envelope.split(".")
        if len(parts) != 4 or parts[1] != self.key_id:
            raise VaultError(f"provider key {key_id} is not sealed under this master key")
        aad = self._aad(provider, key_id)
        try:
            dek = _open(self._kek, _unb64(parts[2]), aad + b":dek")
        except (InvalidTag, ValueError):
            raise VaultError(f"provider key {key_id} failed authentication (tampered or misfiled)") from None
        wrapped = _seal(new._kek, dek, aad + b":dek")
        return ".".join((_VERSION, new.key_id, _b64(wrapped), parts[3]))
