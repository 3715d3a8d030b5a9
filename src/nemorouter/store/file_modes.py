"""The data directory and the SQLite files are the operator's alone: 0700 and 0600.

The database holds key hashes, the ledger and the sealed vault; master.key opens the vault (it
is refused when looser than 0600, vault/master.py). `init`, `serve` and every CLI command make
the data directory 0700 and the SQLite database, -wal and -shm 0600, tightening looser modes
of existing ones with a warning (a chmod by their owner loses nothing; leaving them readable
would). SQLite creates -wal and -shm with the database file's mode, so they follow it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("nemorouter.store")

DIR_MODE = 0o700
FILE_MODE = 0o600


def _tighten(path: Path, mode: int) -> None:
    try:
        current = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if current & ~mode == 0:
        return
    try:
        os.chmod(path, current & mode)
    except OSError as exc:
        log.warning("%s is mode %o and cannot be tightened to %o: %s", path, current, mode, exc.strerror)
        return
    log.warning("%s was mode %o: tightened to %o", path, current, current & mode)


def secure_data_dir(data_dir: Path, *, create: bool) -> None:
    """Make (with `create`) the data directory 0700, or tighten an existing one."""
    if create:
        data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if data_dir.is_dir():
        _tighten(data_dir, DIR_MODE)


def secure_sqlite_files(database_url: str, *, create: bool) -> None:
    """The SQLite database (made empty at 0600 with `create`, so it never exists looser) and its
    -wal and -shm files 0600. A PostgreSQL URL: nothing to do."""
    if not database_url.startswith("sqlite:///"):
        return
    path = database_url.removeprefix("sqlite:///")
    if path == ":memory:":
        return
    if create and not os.path.exists(path):
        Path(path).parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    for suffix in ("", "-wal", "-shm"):
        _tighten(Path(path + suffix), FILE_MODE)
