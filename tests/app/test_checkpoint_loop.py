"""The server's SQLite checkpoint loop (app/__init__.py `_checkpoints`) on a real database file:
an idle server hands no checkpoint round to a worker thread; a write makes the next round run."""

from __future__ import annotations

import asyncio
from pathlib import Path

from eventually import until
from nemorouter.app import _checkpoints
from nemorouter.store.open import open_store
from nemorouter.store.sqlite.store import SqliteStore


async def test_an_idle_server_runs_no_checkpoint_rounds(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'nemo.db'}")
    assert isinstance(store, SqliteStore)
    await store.migrate()
    rounds: list[None] = []  # one entry per checkpoint round the loop handed to its thread
    real = store.checkpoint

    def counted() -> None:
        rounds.append(None)
        real()

    store.checkpoint = counted  # type: ignore[method-assign]
    stopping = asyncio.Event()
    loop = asyncio.create_task(_checkpoints(store, stopping, every=0.005))
    try:
        await until(lambda: len(rounds) == 1)  # the first round copies what migrating wrote
        await asyncio.sleep(0.3)  # ~60 turns of the loop, idle
        assert len(rounds) == 1
        await store.set_meta("probe", "1")  # a write: the next round runs, and only it
        await until(lambda: len(rounds) == 2)
        await asyncio.sleep(0.3)
        assert len(rounds) == 2
    finally:
        stopping.set()
        await loop
        await store.close()
