"""Master-key loading: `NEMO_MASTER_KEY` (base64 of 32 bytes) or `master.key` (mode 0600) in the data dir."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from nemorouter.vault import Vault, VaultError, load_master_key

RAW = bytes(range(32))
ENCODED = base64.b64encode(RAW).decode()  # "AAECAwQF...Hh8=" (44 characters)


def test_env_value_of_32_bytes(tmp_path: Path) -> None:
    assert ENCODED == "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    assert load_master_key(ENCODED, tmp_path) == RAW
    assert load_master_key(f"  {ENCODED}\n", tmp_path) == RAW
    # The environment wins: no file is read or made.
    assert load_master_key(ENCODED, tmp_path, create=True) == RAW
    assert not (tmp_path / "master.key").exists()


@pytest.mark.parametrize(
    "value",
    [
        base64.b64encode(bytes(31)).decode(),
        base64.b64encode(bytes(33)).decode(),
        base64.b64encode(bytes(16)).decode(),
        base64.b64encode(b"x").decode(),
    ],
)
def test_env_value_of_the_wrong_length(tmp_path: Path, value: str) -> None:
    with pytest.raises(VaultError, match="32 bytes"):
        load_master_key(value, tmp_path)


@pytest.mark.parametrize(
    "value",
    [
        "not base64 at all!",
        ENCODED[:-1],  # bad padding
        ENCODED.replace("A", "*", 1),
        base64.urlsafe_b64encode(bytes([0xFB] * 32)).decode(),  # '-' and '_' are not standard base64
    ],
)
def test_env_value_that_is_not_base64(tmp_path: Path, value: str) -> None:
    with pytest.raises(VaultError) as caught:
        load_master_key(value, tmp_path)
    assert value not in str(caught.value)


def test_missing_file_without_create(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="master key"):
        load_master_key(None, tmp_path)
    with pytest.raises(VaultError):
        load_master_key("", tmp_path)
    assert not (tmp_path / "master.key").exists()


def test_create_makes_a_0600_file_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data" / "nested"
    key = load_master_key(None, data_dir, create=True)
    path = data_dir / "master.key"
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert base64.b64decode(path.read_text().strip(), validate=True) == key
    # Loaded again, with or without create, it is the same key: the file is not replaced.
    assert load_master_key(None, data_dir) == key
    assert load_master_key(None, data_dir, create=True) == key
    Vault(key)  # usable as a master key


def test_two_data_dirs_get_different_keys(tmp_path: Path) -> None:
    assert load_master_key(None, tmp_path / "a", create=True) != load_master_key(
        None, tmp_path / "b", create=True
    )


def test_existing_0600_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text(ENCODED + "\n")
    os.chmod(path, 0o600)
    assert load_master_key(None, tmp_path) == RAW


@pytest.mark.parametrize("mode", [0o640, 0o644, 0o604, 0o660, 0o620, 0o602])
def test_group_or_other_access_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "master.key"
    path.write_text(ENCODED + "\n")
    os.chmod(path, mode)
    with pytest.raises(VaultError, match="chmod 600") as caught:
        load_master_key(None, tmp_path)
    assert ENCODED not in str(caught.value)
    with pytest.raises(VaultError):
        load_master_key(None, tmp_path, create=True)


def test_owner_only_read_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text(ENCODED)
    os.chmod(path, 0o400)
    assert load_master_key(None, tmp_path) == RAW


@pytest.mark.parametrize("content", ["short", base64.b64encode(bytes(16)).decode()])
def test_file_with_a_bad_key_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "master.key"
    path.write_text(content)
    os.chmod(path, 0o600)
    with pytest.raises(VaultError):
        load_master_key(None, tmp_path)


@pytest.mark.parametrize("content", ["", "\n"])
def test_empty_key_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "master.key"
    path.write_text(content)
    os.chmod(path, 0o600)
    with pytest.raises(VaultError):
        load_master_key(None, tmp_path)
