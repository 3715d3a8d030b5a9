"""Group commit for settles on PostgreSQL: every settle that arrives while the previous batch is
on its way goes in the next one, one `nemo_settle_many` statement (migration 0010): one round
trip and one durable commit (one WAL flush) for all of them, as SQLite's group commit writes an
event-loop iteration's settles in one transaction. A settle still returns only after its charge
is committed and durable; alone (one request at a time) it is sent at once, as before.

A batch the server refuses (a value the columns cannot hold, a trigger, any error it reports:
the whole transaction rolled back) is settled again one request at a time, so the request at
fault fails alone and the others are charged. A lost connection fails the whole batch, as it
failed a single settle: whether it committed is unknown to the caller either way."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

log = logging.getLogger("nemorouter.store")

# A settle waiting for its batch: (request id, window, outcome values in nemo_settle's order).
Settle = tuple[str, str, Sequence[Any]]
MAX_BATCH = 256  # settles per statement: bounded arrays, and a bounded wait behind a long batch


class SettleBatcher:
    """Queues settles and runs them in batches, one batch at a time per process."""

    def __init__(
        self,
        many: Callable[[list[Settle]], Awaitable[set[str]]],
        one: Callable[[Settle], Awaitable[bool]],
    ) -> None:
        """`many` settles a batch in one transaction (the ids it settled); `one` a single one
        (a DataError of its own raised)."""
        self._many, self._one = many, one
        self._queue: list[tuple[Settle, asyncio.Future[bool]]] = []
        self._running: asyncio.Task[None] | None = None

    async def settle(self, item: Settle) -> bool:
        """Settle in the next batch; true once committed, false when it had no open hold. The
        settle goes through even if the caller is cancelled while waiting."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bool] = loop.create_future()
        self._queue.append((item, done))
        if self._running is None or self._running.done() or self._running.get_loop() is not loop:
            self._running = loop.create_task(self._drain())
        return await asyncio.shield(done)

    async def _drain(self) -> None:
        """Send batches while settles wait; everything queued meanwhile joins the next one."""
        await asyncio.sleep(0)  # the settles of this event-loop iteration join the first batch
        while self._queue:
            batch, taken = self._take()
            try:
                settled = await self._run(batch)
            except BaseException as exc:  # every waiter of the batch gets the failure
                for _, future in taken:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, future), ok in zip(taken, settled, strict=True):
                if not future.done():
                    if isinstance(ok, BaseException):
                        future.set_exception(ok)
                    else:
                        future.set_result(ok)

    def _take(self) -> tuple[list[Settle], list[tuple[Settle, asyncio.Future[bool]]]]:
        """The next batch: up to MAX_BATCH settles, an id at most once (a second settle of one
        request waits for the next batch, where it finds the hold gone, as it would in turn)."""
        seen: set[str] = set()
        taken: list[tuple[Settle, asyncio.Future[bool]]] = []
        rest: list[tuple[Settle, asyncio.Future[bool]]] = []
        for entry in self._queue:
            if entry[0][0] in seen or len(taken) >= MAX_BATCH:
                rest.append(entry)
            else:
                seen.add(entry[0][0])
                taken.append(entry)
        self._queue = rest
        return [item for item, _ in taken], taken

    async def _run(self, batch: list[Settle]) -> list[bool | BaseException]:
        if len(batch) == 1:
            try:
                return [await self._one(batch[0])]
            except asyncpg.PostgresError as exc:
                return [exc]
        try:
            settled = await self._many(batch)
        except asyncpg.PostgresError:  # the server refused one of them (a value, a trigger...):
            # the batch was rolled back; settle its requests one by one so that one fails alone
            log.warning("a settle batch was refused; settling its requests one by one")
            out: list[bool | BaseException] = []
            for item in batch:
                try:
                    out.append(await self._one(item))
                except asyncpg.PostgresError as exc:
                    out.append(exc)
            return out
        return [item[0] in settled for item in batch]
