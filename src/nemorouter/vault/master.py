"""Loading (and first-time creation) of the master key."""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from nemorouter.vault.crypto import VaultError


def load_master_key(env_value: str | None, data_dir: Path, *, create: bool = False) -> bytes:
    """`NEMO_MASTER_KEY` (base64 of 32 bytes) wins; else `master.key` in the data dir (0600).

    With `create`, a missing file is made with a fresh random key (what `init` does).
    """
    if env_value:
        try:
            key = base64.b64decode(env_value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise VaultError("NEMO_MASTER_KEY is not valid base64") from None
        if len(key) != 32:
            raise VaultError("NEMO_MASTER_KEY must decode to exactly 32 bytes")
        return key
    path = data_dir / "master.key"
    if not path.exists():
        if not create:
            raise VaultError(f"no master key: set NEMO_MASTER_KEY or run `nemorouter init` ({path} missing)")
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(os.urandom(32)).decode() + "\n")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise VaultError(f"{path} must not be readable by group or others (mode {mode:o}); chmod 600 it")
    text = path.read_text().strip()
    if not text:
        raise VaultError(f"{path} is empty; restore the master key or set NEMO_MASTER_KEY")
    return load_master_key(text, data_dir)
