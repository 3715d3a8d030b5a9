"""The vault knows its master key: a key check value sealed in the store's meta table.

A known text sealed under the master key when the vault is made (`nemorouter init`), or, for a
vault made before this check existed, on the first start whose master key opens its provider
secrets. Every later start and CLI command opens it first, so a wrong `NEMO_MASTER_KEY` (or a
lost `master.key` replaced by a new one) is refused with one line, instead of serving with no
providers or sealing new secrets under a second key.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

from nemorouter.vault.crypto import Vault, VaultError

log = logging.getLogger("nemorouter.vault")

CHECK_META = "vault_check"
# Sealed like a provider secret, under names no provider key can have (ids are `pk_...`).
_CHECK_PROVIDER, _CHECK_KEY_ID, _CHECK_TEXT = "nemorouter", "vault-check", "nemorouter vault check v1"


class _Named(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...


class _Sealed(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def provider_id(self) -> str: ...
    @property
    def envelope(self) -> str: ...


class Store(Protocol):
    """What the check needs of the store (a part of `store.base.Store`): the vault sits below the
    store in the layers, so it names only these methods."""

    async def applied_migrations(self) -> Mapping[int, str]: ...
    async def get_meta(self, key: str) -> str | None: ...
    async def set_meta(self, key: str, value: str) -> None: ...
    async def list_providers(self) -> Sequence[_Named]: ...
    async def list_provider_keys(self) -> Sequence[_Sealed]: ...


class WrongMasterKey(VaultError):
    """The master key in use does not open this database's vault."""


def seal_check(vault: Vault) -> str:
    return vault.encrypt(_CHECK_PROVIDER, _CHECK_KEY_ID, _CHECK_TEXT)


def opens_check(vault: Vault, check: str) -> bool:
    try:
        return vault.decrypt(_CHECK_PROVIDER, _CHECK_KEY_ID, check).reveal() == _CHECK_TEXT
    except VaultError:
        return False


def wrong_key(source: str) -> WrongMasterKey:
    return WrongMasterKey(
        f"the master key ({source}) does not open this database's vault: its provider secrets were"
        " sealed under another one; set the right NEMO_MASTER_KEY or restore the data dir's master.key"
    )


def _kek_id(envelope: str) -> str | None:
    """The master key id an envelope names (`v1.<kek id>.<wrapped>.<sealed>`), if readable."""
    parts = envelope.split(".")
    return parts[1] if len(parts) == 4 else None


async def vault_in_use(store: Store) -> bool:
    """Does this database already hold a vault (a check value or sealed provider secrets)?"""
    if not await store.applied_migrations():
        return False  # never initialized: nothing sealed yet
    if await store.get_meta(CHECK_META) is not None:
        return True
    return bool(await store.list_provider_keys())


async def verify_master_key(store: Store, vault: Vault, source: str) -> None:
    """Refuse a master key that does not open the vault; record the check value when missing.

    Without a check value (a vault from before it existed, or a fresh database), the provider
    secrets decide: the key must open at least one of them and no secret may name another
    master key; then the check value is sealed now. A vault already sealed under two master keys
    (the old add-key-under-a-wrong-key mistake) gets no check value until its operator re-adds
    the stray keys: its start is allowed under a key that opens some of them, with a warning.
    """
    if not await store.applied_migrations():
        return  # `init` seals the check value once the schema exists
    check = await store.get_meta(CHECK_META)
    if check is not None:
        if not opens_check(vault, check):
            raise wrong_key(source)
        return
    names = {p.id: p.name for p in await store.list_providers()}
    keys = [k for k in await store.list_provider_keys() if k.provider_id in names]
    opened = 0
    others = 0
    for key in keys:
        if _kek_id(key.envelope) != vault.key_id:
            others += 1
            continue
        try:
            vault.decrypt(names[key.provider_id], key.id, key.envelope)
            opened += 1
        except VaultError:
            pass  # tampered or misfiled: a routing problem logged at load, not a wrong key
    if keys and not opened:
        raise wrong_key(source)
    if others:
        log.warning(
            "vault check not recorded: some provider secrets are sealed under another master key;"
            " re-add them under this one",
            extra={"sealed_elsewhere": others, "opened": opened},
        )
        return
    await store.set_meta(CHECK_META, seal_check(vault))
    if keys:
        log.info("vault check recorded for an existing vault", extra={"provider_keys": opened})
