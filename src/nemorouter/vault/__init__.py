"""The vault: provider secrets encrypted at rest under the master key."""

from nemorouter.vault.crypto import Secret, Vault, VaultError, fingerprint
from nemorouter.vault.master import load_master_key

__all__ = ["Secret", "Vault", "VaultError", "fingerprint", "load_master_key"]
