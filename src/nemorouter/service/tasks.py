"""Jobs off a request's path (a quarantine, an overrun's record), kept until they finish."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class Tasks:
    """Fire-and-forget, but referenced: the event loop keeps only a weak reference to a task,
    so one nobody holds may be collected before it ends."""

    def __init__(self) -> None:
        self._running: set[asyncio.Task[None]] = set()

    def spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
