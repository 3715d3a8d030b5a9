"""The connections to one origin: idle ones kept for reuse, and a cap on how many are open.

A slot is one connection open or being opened. Past the cap a request waits its turn (first
come, first served) for a connection put back or a slot freed, never past its deadline: a
provider that slows down is not answered with thousands of new sockets. With room in the pool
or an idle connection at hand, a request costs one comparison more than an uncapped pool.
"""

from __future__ import annotations

import asyncio
from collections import deque

from nemorouter.engine.connection import Connection, HttpError


class OriginPool:
    """Idle connections (reused most-recent first), open connections and waiting requests."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.slots = 0  # connections open or being opened
        self.idle: list[Connection] = []
        self.open: set[Connection] = set()
        self._waiters: deque[asyncio.Future[Connection | None]] = deque()

    def take_slot(self) -> bool:
        """A slot for a new connection, if the cap allows one now."""
        if self.slots < self.cap:
            self.slots += 1
            return True
        return False

    def take_slot_of_oldest_idle(self) -> bool:
        """Close the longest-idle connection and take its slot (for a connection that must be new)."""
        return bool(self.idle) and self.take_slot_of(self.idle.pop(0))

    def take_slot_of(self, conn: Connection) -> bool:
        """Close a connection of this pool not in use, keeping its slot for a new one; False if
        it had closed already (its slot went back to the pool then)."""
        held = conn.counted
        conn.counted = False  # its slot moves over, not back to the pool
        self.open.discard(conn)
        conn.abort()
        return held

    async def wait(self, deadline: float) -> Connection | None:
        """Wait for a connection put back (returned) or a freed slot (None: dial one)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Connection | None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_at(deadline, _out_of_time, waiter)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()  # given a turn just as this request gave up: pass it on
                if handed is None:
                    self.release_slot()
                else:
                    self.put_back(handed)
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise
        finally:
            timer.cancel()

    def added(self, conn: Connection) -> None:
        """A connection dialled on a slot taken for it."""
        conn.counted = True
        self.open.add(conn)

    def release_slot(self) -> None:
        """A slot is free: the next waiting request's (it dials), else the pool's."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.slots -= 1

    def put_back(self, conn: Connection) -> None:
        """A connection whose answer was complete and allows another: the next waiting request's,
        else idle until reused or past keep-alive."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = conn.loop.time()
        self.idle.append(conn)

    def forget(self, conn: Connection) -> None:
        """The connection is closed (its protocol's connection_lost)."""
        self.open.discard(conn)
        idle = self.idle
        if idle and conn in idle:
            idle.remove(conn)
        if conn.counted:
            conn.counted = False
            self.release_slot()

    def discard(self, conn: Connection) -> None:
        """An idle connection found closed or past keep-alive: aborted, its slot freed now."""
        if conn.counted:
            conn.counted = False
            self.open.discard(conn)
            self.release_slot()
        conn.abort()

    def close(self) -> None:
        """Abort every connection, and fail every waiting request."""
        for conn in list(self.open):
            conn.abort()
        self.open.clear()
        self.idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(HttpError("connect", "the client to providers is closed"))


def _out_of_time(waiter: asyncio.Future[Connection | None]) -> None:
    if not waiter.done():
        waiter.set_exception(HttpError("timeout", "no connection to the provider was free in time"))
