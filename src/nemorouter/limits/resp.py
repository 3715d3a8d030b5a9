"""The rate limiter's script calls to Redis on a lean connection of its own (issue 23).

Every request's admission is a Redis script call on its path, and its finish another after the
answer. Through redis-py's asyncio client each call costs ~180 µs of the gateway's CPU on this
machine (pool checkout, a readiness probe, retry wrapper, the pure-Python reply parser): about
three times what the socket itself costs (~65 µs). Here a call is one write of the packed
`EVALSHA` and one future resolved by the reply, on one TCP connection that carries every call of
this process in order (Redis answers in order, so replies pair with their calls first in, first
out; several calls may be out at once).

Only what the limiter needs: `EVALSHA` (then `EVAL` once if Redis does not know the script yet),
RESP2 replies, `AUTH` and `SELECT` from the client's URL, the client's socket timeouts. Failures
are redis-py's own exceptions (`ConnectionError`, `TimeoutError`, `ResponseError`: all
`RedisError`), so the limiter's fallback treats them exactly as before. A client this does not
cover (TLS, a Unix socket, a credential provider) keeps redis-py's script calls.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

_INCOMPLETE = None  # _parse's answer when the buffer holds less than one whole reply


def _pack(parts: list[Any]) -> bytes:
    """One command in RESP: an array of bulk strings (ints and strs as their text)."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        kind = type(part)
        if kind is str:
            data = part.encode()
        elif kind is int:  # not bool, whose text is "True"
            data = b"%d" % part
        elif kind is bytes:
            data = part
        else:
            data = str(part).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


def _parse(buf: bytearray, at: int) -> tuple[Any, int] | None:
    """The reply starting at `at` and where it ends, or None if it has not all arrived. An error
    reply is a ResponseError value (raised by the caller; inside an array it is just a value)."""
    end = buf.find(b"\r\n", at)
    if end < 0:
        return _INCOMPLETE
    kind, line, at = buf[at], bytes(buf[at + 1 : end]), end + 2
    if kind == 58:  # ':' integer
        return int(line), at
    if kind == 36:  # '$' bulk string
        size = int(line)
        if size < 0:
            return None, at
        if len(buf) < at + size + 2:
            return _INCOMPLETE
        return bytes(buf[at : at + size]), at + size + 2
    if kind == 42:  # '*' array
        count = int(line)
        if count < 0:
            return None, at
        items: list[Any] = []
        for _ in range(count):
            found = _parse(buf, at)
            if found is None:
                return _INCOMPLETE
            items.append(found[0])
            at = found[1]
        return items, at
    if kind == 43:  # '+' simple string
        return line, at
    if kind == 45:  # '-' error
        return ResponseError(line.decode(errors="replace")), at
    raise ValueError(f"unexpected reply type {chr(kind)!r}")


class _Wire(asyncio.Protocol):
    """One connection: replies handed to the waiting calls in the order the calls were sent."""

    def __init__(self) -> None:
        self.transport: Any = None  # asyncio's or uvloop's (which is no asyncio.Transport subclass)
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.buf = bytearray()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        at = 0
        while self.waiting:
            try:
                found = _parse(self.buf, at)
            except ValueError as exc:  # the stream is garbled: give up on it
                self.fail(RedisConnectionError(f"bad reply from Redis: {exc}"))
                return
            if found is None:
                break
            value, at = found
            future = self.waiting.popleft()
            if not future.done():  # a call cancelled meanwhile still had its reply read
                future.set_result(value)
        del self.buf[:at]

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    def fail(self, error: Exception) -> None:
        """Close the connection; every call still waiting gets `error`."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)


def _expire(wire: _Wire, future: asyncio.Future[Any]) -> None:
    if not future.done():
        wire.fail(RedisTimeoutError("Timeout reading from Redis"))


class Scripts:
    """Script calls on a lean connection, made from a redis-py client's settings."""

    def __init__(self, client: aioredis.Redis) -> None:
        pool = client.connection_pool
        kwargs = pool.connection_kwargs
        self.client = client
        # Plain TCP with at most a password: the rest (TLS, Unix sockets, credential providers,
        # RESP3) stays with redis-py.
        self.lean = (
            pool.connection_class is Connection
            and kwargs.get("credential_provider") is None
            and kwargs.get("protocol") in (None, 2, "2")
        )
        self._where = (str(kwargs.get("host", "localhost")), int(kwargs.get("port", 6379)))
        self._hello: list[list[Any]] = []
        if kwargs.get("password") is not None:
            user = kwargs.get("username")
            self._hello.append(["AUTH", *([user] if user else []), kwargs["password"]])
        if int(kwargs.get("db") or 0):
            self._hello.append(["SELECT", int(kwargs["db"])])
        self._timeout: float | None = kwargs.get("socket_timeout")
        self._connect_timeout: float | None = kwargs.get("socket_connect_timeout") or self._timeout
        self._wire: _Wire | None = None
        self._opening: asyncio.Future[_Wire] | None = None

    def script(self, body: str) -> Script:
        return Script(self, body)

    async def call(self, sha: str, body: str, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA; EVAL once if Redis does not have the script yet (a restart flushed it)."""
        try:
            reply = await self._send(_pack(["EVALSHA", sha, len(keys), *keys, *args]))
            if isinstance(reply, ResponseError) and str(reply).startswith("NOSCRIPT"):
                reply = await self._send(_pack(["EVAL", body, len(keys), *keys, *args]))
        except (RedisError, asyncio.CancelledError):
            raise
        except Exception as exc:  # a fault of this client: the limiter falls back, no request fails
            raise RedisConnectionError(f"Redis call failed: {exc!r}") from exc
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def _send(self, command: bytes) -> Any:
        wire = self._wire
        if wire is None or wire.closed:
            wire = await self._connect()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        assert wire.transport is not None
        wire.transport.write(command)
        wire.waiting.append(future)
        if self._timeout is None:
            return await future
        # No answer in time: what the connection carries is unknown now, so it is given up
        # (every call on it fails) and the next call connects afresh.
        late = loop.call_later(self._timeout, _expire, wire, future)
        try:
            return await future
        finally:
            late.cancel()

    async def _connect(self) -> _Wire:
        """One connection at a time, shared by the calls that wait for it."""
        if self._opening is None or self._opening.done():
            self._opening = asyncio.ensure_future(self._open())
        wire = await asyncio.shield(self._opening)
        return wire

    async def _open(self) -> _Wire:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, wire = await loop.create_connection(_Wire, *self._where)
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(
                f"cannot reach Redis at {self._where[0]}:{self._where[1]}: {exc}"
            ) from None
        futures = []
        for command in self._hello:
            future: asyncio.Future[Any] = loop.create_future()
            assert wire.transport is not None
            wire.transport.write(_pack(command))
            wire.waiting.append(future)
            futures.append(future)
        try:
            async with asyncio.timeout(self._timeout):
                for future in futures:
                    reply = await future
                    if isinstance(reply, ResponseError):
                        raise reply
        except BaseException:
            wire.fail(RedisConnectionError("Redis refused the connection's setup"))
            raise
        self._wire = wire
        return wire

    async def close(self) -> None:
        if self._wire is not None:
            self._wire.fail(RedisConnectionError("closed"))
            self._wire = None


class Script:
    """A Lua script, called as redis-py's registered scripts are: `await script(keys=, args=)`."""

    def __init__(self, scripts: Scripts, body: str) -> None:
        self._scripts = scripts
        self._body = body
        self._sha = hashlib.sha1(body.encode(), usedforsecurity=False).hexdigest()
        self._fallback = scripts.client.register_script(body)

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        if self._scripts.lean:
            return await self._scripts.call(self._sha, self._body, keys, args)
        return await self._fallback(keys=keys, args=args)
