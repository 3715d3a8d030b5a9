"""The vault's key check value (vault/check.py) on a real SQLite store: sealed once, opened by
the right master key only, and backfilled for an older vault only when its secrets agree."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nemorouter.store.base import Store
from nemorouter.store.open import open_store
from nemorouter.vault import Vault
from nemorouter.vault.check import (
    CHECK_META,
    WrongMasterKey,
    opens_check,
    seal_check,
    vault_in_use,
    verify_master_key,
)

RIGHT, WRONG = Vault(os.urandom(32)), Vault(os.urandom(32))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    db = open_store(f"sqlite:///{tmp_path / 'vault.db'}")
    await db.migrate()
    yield db
    await db.close()


async def add_key(store: Store, vault: Vault, key_id: str, provider: str = "up") -> None:
    found = await store.get_provider(provider)
    if found is None:
        found = await store.create_provider(provider, "openai", "http://127.0.0.1:9/v1", {})
    envelope = vault.encrypt(found.name, key_id, "sk-secret-" + key_id)
    await store.add_provider_key(found.id, key_id, "label", 1, "sha256:x", envelope)


def test_the_check_opens_under_its_own_key_only() -> None:
    check = seal_check(RIGHT)
    assert opens_check(RIGHT, check)
    assert not opens_check(WRONG, check)
    assert not opens_check(RIGHT, check[:-2] + ("AA" if check[-2:] != "AA" else "BB"))
    assert not opens_check(RIGHT, "not an envelope")


async def test_a_fresh_database_is_sealed_and_then_refuses_another_key(store: Store) -> None:
    assert not await vault_in_use(store)
    await verify_master_key(store, RIGHT, "NEMO_MASTER_KEY")
    assert await vault_in_use(store)
    await verify_master_key(store, RIGHT, "NEMO_MASTER_KEY")  # idempotent
    with pytest.raises(WrongMasterKey, match=r"^the master key \(NEMO_MASTER_KEY\) does not open"):
        await verify_master_key(store, WRONG, "NEMO_MASTER_KEY")


async def test_an_older_vault_is_backfilled_only_under_the_key_of_its_secrets(store: Store) -> None:
    await add_key(store, RIGHT, "pk_1")
    await add_key(store, RIGHT, "pk_2")
    with pytest.raises(WrongMasterKey):
        await verify_master_key(store, WRONG, "/data/master.key")
    assert await store.get_meta(CHECK_META) is None
    await verify_master_key(store, RIGHT, "/data/master.key")
    check = await store.get_meta(CHECK_META)
    assert check is not None and opens_check(RIGHT, check)


async def test_a_vault_under_two_master_keys_gets_no_check_value(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    await add_key(store, RIGHT, "pk_1")
    await add_key(store, WRONG, "pk_2")  # the old mistake: a key added under a wrong master key
    with caplog.at_level(logging.WARNING, logger="nemorouter.vault"):
        await verify_master_key(store, RIGHT, "NEMO_MASTER_KEY")
    assert await store.get_meta(CHECK_META) is None
    assert any("sealed under another master key" in r.getMessage() for r in caplog.records)


async def test_a_never_initialized_database_is_left_alone(tmp_path: Path) -> None:
    db = open_store(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        assert not await vault_in_use(db)
        await verify_master_key(db, RIGHT, "NEMO_MASTER_KEY")
        assert await db.applied_migrations() == {}
    finally:
        await db.close()
