"""Group commit on PostgreSQL: every reserve (or settle) that arrives while the previous batch
is on its way goes in the next one, one statement (`nemo_reserve_many`, `nemo_settle_many`,
migration 0010): one round trip and one commit for all of them, as SQLite's group commit writes
an event-loop iteration's writes in one transaction. Each still returns only after its own
change is committed (a settle: durably); alone (one request at a time) it is sent at once, by
the single-request function, as before.

A batch the server refuses (a value the columns cannot hold, a trigger, any error it reports:
the whole transaction rolled back) is run again one request at a time, so the request at fault
fails alone and the others go through. A lost connection fails the whole batch (or, run one at a
time, the request it was lost on), as it failed a single call: whether that committed is unknown
to the caller either way."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import asyncpg

log = logging.getLogger("nemorouter.store")

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batches(Generic[Item, Result]):
    """Queues calls and runs them in batches, one batch at a time per process."""

    def __init__(
        self,
        many: Callable[[list[Item]], Awaitable[list[Result]]],
        one: Callable[[Item], Awaitable[Result]],
        *,
        most: int,
        distinct: Callable[[Item], Hashable] | None = None,
        abandoned: Callable[[Item, Result], None] | None = None,
    ) -> None:
        """`many` runs a batch in one transaction (a result per item, in order); `one` a single
        item; `most` items at most per batch. With `distinct`, items with the same value never
        share a batch. `abandoned` is given each item that went through after its caller was
        cancelled, with its result: what it changed, no one else will act on (a hold, say)."""
        self._many, self._one, self._most, self._distinct = many, one, most, distinct
        self._abandoned = abandoned
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []
        self._running: asyncio.Task[None] | None = None

    async def run(self, item: Item) -> Result:
        """Run `item` in the next batch: its result once committed. It goes through even if the
        caller is cancelled while waiting."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Result] = loop.create_future()
        self._queue.append((item, done))
        if self._running is None or self._running.done() or self._running.get_loop() is not loop:
            self._running = loop.create_task(self._drain())
        # Not shielded: a caller cancelled here cancels only `done`, which the batch then leaves
        # unset; its item is queued (or sent) already and goes through all the same, and its
        # result goes to `abandoned` (`_drain`). One cancelled after its result was set, before
        # it resumed, hands the result over here.
        try:
            return await done
        except asyncio.CancelledError:
            if (
                self._abandoned is not None
                and done.done()
                and not done.cancelled()
                and done.exception() is None
            ):
                self._abandoned(item, done.result())
            raise

    async def idle(self) -> None:
        """Wait until every call queued so far has been run (its batch answered)."""
        while self._running is not None and not self._running.done():
            await asyncio.wait([self._running])  # not cancelled if this waiter is

    async def _drain(self) -> None:
        """Send batches while calls wait; everything queued meanwhile joins the next one. The
        first batch takes every call made before this task's first step, which runs on the
        loop's next turn (the calls of this event-loop iteration): no turn more is waited for
        others, as at one request at a time that turn is the request's own latency (issue 23)."""
        while self._queue:
            taken = self._take()
            try:
                results = await self._run([item for item, _ in taken])
            except BaseException as exc:  # every waiter of the batch gets the failure
                for _, future in taken:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (item, future), result in zip(taken, results, strict=True):
                if not future.done():
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                elif (
                    future.cancelled()
                    and self._abandoned is not None
                    and not isinstance(result, BaseException)
                ):
                    self._abandoned(item, result)  # its caller was cancelled while it ran

    def _take(self) -> list[tuple[Item, asyncio.Future[Result]]]:
        """The next batch: up to `most` calls, distinct ones only (a second call on the same
        request waits for the next batch, where it finds what the first one left)."""
        seen: set[Hashable] = set()
        taken: list[tuple[Item, asyncio.Future[Result]]] = []
        rest: list[tuple[Item, asyncio.Future[Result]]] = []
        for entry in self._queue:
            which = None if self._distinct is None else self._distinct(entry[0])
            if len(taken) >= self._most or (which is not None and which in seen):
                rest.append(entry)
            else:
                seen.add(which)
                taken.append(entry)
        self._queue = rest
        return taken

    async def _run(self, batch: list[Item]) -> list[Result | BaseException]:
        if len(batch) > 1:
            try:
                return list(await self._many(batch))
            except (asyncpg.PostgresError, asyncpg.DataError):  # rolled back, or a value the driver
                # refused before sending: one by one, so that the one at fault fails alone
                log.warning("a batch was refused by the database; running its requests one by one")
        out: list[Result | BaseException] = []
        for item in batch:
            try:
                out.append(await self._one(item))
            except Exception as exc:  # this one's own failure; those before it stand
                out.append(exc)
        return out
