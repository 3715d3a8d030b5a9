"""Envelope encryption of provider secrets: AES-256-GCM, provider and key id as associated data."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemorouter.vault import Secret, Vault, VaultError, fingerprint

SECRET = "sk-proj-Zq8vN3kL0pR7sT2wX5yA9bC4dE6fG1hJ"


@pytest.fixture
def vault() -> Vault:
    return Vault(os.urandom(32))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_round_trip(vault: Vault) -> None:
    envelope = vault.encrypt("openai", "pk_1", SECRET)
    opened = vault.decrypt("openai", "pk_1", envelope)
    assert isinstance(opened, Secret)
    assert opened.reveal() == SECRET


@settings(max_examples=40, deadline=None, database=None)
@given(st.text(min_size=0, max_size=200))
def test_round_trip_any_text(secret: str) -> None:
    vault = Vault(b"k" * 32)
    assert vault.decrypt("p", "k", vault.encrypt("p", "k", secret)).reveal() == secret


def test_envelope_shape_and_no_secret_inside(vault: Vault) -> None:
    envelope = vault.encrypt("openai", "pk_1", SECRET)
    version, kek_id, wrapped, sealed = envelope.split(".")
    assert version == "v1"
    assert kek_id == vault.key_id
    # wrapped DEK: 12-byte nonce + 32-byte key + 16-byte tag; secret: nonce + text + tag.
    assert len(_unb64(wrapped)) == 12 + 32 + 16
    assert len(_unb64(sealed)) == 12 + len(SECRET) + 16
    assert SECRET not in envelope
    for piece in (SECRET[:8], SECRET[-8:]):
        assert piece not in envelope
        assert piece.encode() not in _unb64(sealed)
        assert _b64(piece.encode()) not in envelope


def test_each_encryption_is_fresh(vault: Vault) -> None:
    first = vault.encrypt("openai", "pk_1", SECRET)
    second = vault.encrypt("openai", "pk_1", SECRET)
    assert first != second
    assert first.split(".")[2] != second.split(".")[2]
    assert first.split(".")[3] != second.split(".")[3]


@pytest.mark.parametrize(
    ("provider", "key_id"), [("anthropic", "pk_1"), ("openai", "pk_2"), ("OpenAI", "pk_1")]
)
def test_associated_data_binds_provider_and_key_id(vault: Vault, provider: str, key_id: str) -> None:
    envelope = vault.encrypt("openai", "pk_1", SECRET)
    with pytest.raises(VaultError) as caught:
        vault.decrypt(provider, key_id, envelope)
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)
    assert caught.value.__cause__ is None or SECRET not in str(caught.value.__cause__)


def test_envelope_copied_onto_another_row_does_not_decrypt(vault: Vault) -> None:
    # Moving pk_1's sealed secret onto pk_2's row (same provider) must fail, in both layers.
    one = vault.encrypt("openai", "pk_1", SECRET).split(".")
    two = vault.encrypt("openai", "pk_2", "other").split(".")
    mixed = ".".join([one[0], one[1], two[2], one[3]])  # pk_2's DEK wrapper with pk_1's ciphertext
    with pytest.raises(VaultError):
        vault.decrypt("openai", "pk_2", mixed)
    with pytest.raises(VaultError):
        vault.decrypt("openai", "pk_1", mixed)


def _flip(text: str, index: int) -> str:
    data = bytearray(_unb64(text))
    data[index] ^= 0x01
    return _b64(bytes(data))


@pytest.mark.parametrize("part", [2, 3])
def test_tampering_any_byte_fails(vault: Vault, part: int) -> None:
    envelope = vault.encrypt("openai", "pk_1", SECRET)
    parts = envelope.split(".")
    size = len(_unb64(parts[part]))
    for index in range(size):  # nonce, ciphertext and tag
        tampered = list(parts)
        tampered[part] = _flip(parts[part], index)
        with pytest.raises(VaultError) as caught:
            vault.decrypt("openai", "pk_1", ".".join(tampered))
        assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: ["v2", *p[1:]],
        lambda p: [p[0], "000000000000", *p[2:]],
        lambda p: [*p[:2], p[2][:-4], p[3]],  # truncated wrapped DEK
        lambda p: [*p[:3], p[3][:10]],  # truncated ciphertext
        lambda p: [*p[:3], ""],
        lambda p: [*p[:3], p[3] + "A"],  # not valid base64 any more
        lambda p: p[:3],
        lambda p: [*p, "extra"],
        lambda p: [*p[:2], p[3], p[2]],  # layers swapped
    ],
)
def test_malformed_envelopes_fail_with_vault_error(vault: Vault, mutate: object) -> None:
    parts = vault.encrypt("openai", "pk_1", SECRET).split(".")
    with pytest.raises(VaultError):
        vault.decrypt("openai", "pk_1", ".".join(mutate(parts)))  # type: ignore[operator]


def test_another_master_key_fails(vault: Vault) -> None:
    envelope = vault.encrypt("openai", "pk_1", SECRET)
    other = Vault(os.urandom(32))
    assert other.key_id != vault.key_id
    with pytest.raises(VaultError) as caught:
        other.decrypt("openai", "pk_1", envelope)
    assert SECRET not in str(caught.value)
    # Even with the key id part forged to match, the wrapped DEK does not open.
    parts = envelope.split(".")
    forged = ".".join([parts[0], other.key_id, *parts[2:]])
    with pytest.raises(VaultError):
        other.decrypt("openai", "pk_1", forged)


def test_master_key_must_be_32_bytes() -> None:
    for size in (0, 16, 31, 33, 64):
        with pytest.raises(VaultError):
            Vault(os.urandom(size))


def test_key_id_is_stable_per_master_key() -> None:
    master = os.urandom(32)
    assert Vault(master).key_id == Vault(master).key_id
    assert len(Vault(master).key_id) == 12


def test_rewrap_moves_to_the_new_master_key(vault: Vault) -> None:
    envelope = vault.encrypt("openai", "pk_1", SECRET)
    new = Vault(os.urandom(32))
    rewrapped = vault.rewrap("openai", "pk_1", envelope, new)
    assert rewrapped.split(".")[1] == new.key_id
    assert rewrapped.split(".")[3] == envelope.split(".")[3]  # only the DEK is re-sealed
    assert SECRET not in rewrapped
    assert new.decrypt("openai", "pk_1", rewrapped).reveal() == SECRET
    with pytest.raises(VaultError):
        vault.decrypt("openai", "pk_1", rewrapped)
    # The new master key cannot read the old envelope.
    with pytest.raises(VaultError):
        new.decrypt("openai", "pk_1", envelope)


def test_rewrap_refuses_wrong_master_key_and_wrong_row(vault: Vault) -> None:
    envelope = vault.encrypt("openai", "pk_1", SECRET)
    new = Vault(os.urandom(32))
    with pytest.raises(VaultError):
        new.rewrap("openai", "pk_1", envelope, vault)
    with pytest.raises(VaultError) as caught:
        vault.rewrap("openai", "pk_2", envelope, new)
    assert SECRET not in str(caught.value)


def test_rewrap_of_malformed_base64_fails_with_vault_error(vault: Vault) -> None:
    parts = vault.encrypt("openai", "pk_1", SECRET).split(".")
    broken = ".".join([*parts[:2], parts[2] + "A", parts[3]])  # 81 characters: not base64
    with pytest.raises(VaultError):
        vault.decrypt("openai", "pk_1", broken)
    with pytest.raises(VaultError):
        vault.rewrap("openai", "pk_1", broken, Vault(os.urandom(32)))


def test_secret_never_prints_itself() -> None:
    secret = Secret(SECRET)
    assert secret.reveal() == SECRET
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", repr([secret]), repr({"k": secret})):
        assert SECRET not in text
        assert "***" in text


def test_fingerprint_is_stable_and_safe() -> None:
    value = fingerprint(SECRET)
    assert value == fingerprint(SECRET)
    assert value.startswith("sha256:")
    assert len(value) == len("sha256:") + 16
    assert value != fingerprint(SECRET + "x")
    assert SECRET not in value
    for piece in (SECRET[:6], SECRET[-6:]):
        assert piece not in value
    # The first 16 hex digits of SHA-256("abc") (the FIPS 180-2 test vector ba7816bf8f01cfea...).
    assert fingerprint("abc") == "sha256:ba7816bf8f01cfea"
