"""Customer key format (CONTRACT.md "Keys"): prefix + 43 base62 random chars + 6-char base62 CRC32."""

from __future__ import annotations

import hashlib
import string
import zlib

import pytest

from nemorouter.service.keyformat import (
    INFERENCE_PREFIX,
    KEY_PATTERN,
    MANAGEMENT_PREFIX,
    display_hint,
    hash_key,
    key_scope,
    new_key,
)

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
SCOPES = [("inference", INFERENCE_PREFIX), ("management", MANAGEMENT_PREFIX)]


def _checksum(body: str) -> str:
    """The contract's checksum, computed independently: CRC32 of everything before it, 6 base62 digits."""
    number = zlib.crc32(body.encode())
    digits = ""
    for _ in range(6):
        number, digit = divmod(number, 62)
        digits = BASE62[digit] + digits
    return digits


def test_prefixes() -> None:
    assert INFERENCE_PREFIX == "sk-nemo-v1-"
    assert MANAGEMENT_PREFIX == "sk-nemo-mgmt-v1-"


@pytest.mark.parametrize(("scope", "prefix"), SCOPES)
def test_new_key_format(scope: str, prefix: str) -> None:
    keys = {new_key(scope) for _ in range(50)}
    assert len(keys) == 50
    for key in keys:
        assert key.startswith(prefix)
        assert len(key) == len(prefix) + 43 + 6  # 43 base62 chars = 256.03 bits
        rest = key[len(prefix) :]
        assert set(rest) <= set(BASE62)
        assert key[-6:] == _checksum(key[:-6])
        assert key_scope(key) == scope


def test_random_part_uses_the_whole_alphabet() -> None:
    seen = set("".join(new_key("inference")[11:-6] for _ in range(200)))
    assert seen == set(BASE62)


@pytest.mark.parametrize(("scope", "prefix"), SCOPES)
def test_a_hand_built_key_is_accepted(scope: str, prefix: str) -> None:
    body = prefix + "A" * 43
    assert key_scope(body + _checksum(body)) == scope
    assert key_scope(body + "000000") is None


@pytest.mark.parametrize(("scope", "prefix"), SCOPES)
def test_any_single_character_change_is_rejected(scope: str, prefix: str) -> None:
    key = new_key(scope)
    for index in range(len(key)):
        for char in BASE62 + "-_":
            if char == key[index]:
                continue
            changed = key[:index] + char + key[index + 1 :]
            assert key_scope(changed) is None, (index, char)


@pytest.mark.parametrize(("scope", "prefix"), SCOPES)
def test_adjacent_swaps_are_rejected(scope: str, prefix: str) -> None:
    key = new_key(scope)
    for index in range(len(prefix), len(key) - 1):
        if key[index] != key[index + 1]:
            swapped = key[:index] + key[index + 1] + key[index] + key[index + 2 :]
            assert key_scope(swapped) is None


@pytest.mark.parametrize(("scope", "prefix"), SCOPES)
def test_wrong_length_is_rejected(scope: str, prefix: str) -> None:
    key = new_key(scope)
    body = key[:-6]
    for shorter in (body[:-1], body + "A"):  # 42 or 44 random chars with a valid checksum
        assert key_scope(shorter + _checksum(shorter)) is None
    assert key_scope(key[:-1]) is None
    assert key_scope(key + "A") is None
    assert key_scope(prefix) is None


@pytest.mark.parametrize(
    "prefix",
    ["sk-nemo-v2-", "sk-nemo-", "SK-NEMO-V1-", "sk-other-v1-", "sk-nemo-mgmt-v2-", "", "sk_nemo_v1_"],
)
def test_wrong_prefix_is_rejected(prefix: str) -> None:
    body = prefix + "b" * (60 - 6 - len(prefix))
    assert key_scope(body + _checksum(body)) is None


@pytest.mark.parametrize("bad", [" ", "-", "_", "é", "٣", "Ａ", "\n", "+", "/"])
def test_non_alphanumerics_are_rejected_even_with_a_valid_checksum(bad: str) -> None:
    body = INFERENCE_PREFIX + "x" * 21 + bad + "y" * 21
    assert key_scope(body + _checksum(body)) is None


def test_scope_is_taken_from_the_prefix() -> None:
    management = new_key("management")
    inference = new_key("inference")
    assert key_scope(management) == "management"
    assert key_scope(inference) == "inference"
    # Re-labelling a key's scope breaks it (the checksum covers the prefix).
    assert key_scope(MANAGEMENT_PREFIX + inference[len(INFERENCE_PREFIX) :]) is None
    assert key_scope(INFERENCE_PREFIX + management[len(MANAGEMENT_PREFIX) :]) is None


def test_key_pattern_matches_both_kinds() -> None:
    r"""KEY_PATTERN is `sk-nemo-(?:mgmt-)?v1-[0-9A-Za-z]{49}`: either prefix, then the 43-character
    random part and the 6-character checksum (49 base62 characters), for secret scanners."""
    assert KEY_PATTERN.pattern == r"sk-nemo-(?:mgmt-)?v1-[0-9A-Za-z]{49}"
    inference, management = new_key("inference"), new_key("management")
    assert KEY_PATTERN.fullmatch(inference)
    assert KEY_PATTERN.fullmatch(management)
    text = f"export A={inference}\nconfig: {{key: '{management}'}}"
    assert KEY_PATTERN.findall(text) == [inference, management]
    assert not KEY_PATTERN.search(inference[:-1])  # 48 characters after the prefix
    assert not KEY_PATTERN.search("sk-nemo-v2-" + inference[11:])
    assert not KEY_PATTERN.search(inference[:30] + "-" + inference[31:])


def test_hash_key_is_sha256_hex() -> None:
    # FIPS 180-2 test vector.
    assert hash_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    key = new_key("inference")
    digest = hash_key(key)
    assert digest == hashlib.sha256(key.encode()).hexdigest()
    assert len(digest) == 64 and set(digest) <= set("0123456789abcdef")
    assert key not in digest


def test_management_hint_shows_no_random_part() -> None:
    key = new_key("management")
    hint = display_hint(key)
    head, _, tail = hint.partition("...")
    assert tail == key[-4:]  # the last four are checksum characters, not random ones
    assert MANAGEMENT_PREFIX.startswith(head)
    assert key[len(MANAGEMENT_PREFIX) : -6] not in hint


def test_inference_hint_keeps_the_tail() -> None:
    key = new_key("inference")
    hint = display_hint(key)
    assert hint.endswith("..." + key[-4:])
    assert key[len(INFERENCE_PREFIX) : -6] not in hint
    assert len(hint) < 20


def test_inference_hint_shows_no_random_character() -> None:
    key = new_key("inference")
    head = display_hint(key).partition("...")[0]
    assert INFERENCE_PREFIX.startswith(head)  # actual head: 'sk-nemo-v1-' + key[11]
