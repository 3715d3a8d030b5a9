"""Loopback proxies that count round trips on the wire: PostgreSQL (one per Sync or simple Query
message the client sends, named by its statement) and Redis (one per burst the client writes
after a reply, each command named). Used to pin how many round trips a request costs."""

from __future__ import annotations

import asyncio
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

_SSL_REQUEST, _GSS_REQUEST = 80877103, 80877104


class WireCount:
    """Round trips seen by one proxy, by label (SQL text, or a Redis command name)."""

    def __init__(self) -> None:
        self.trips: Counter[str] = Counter()
        self.commands: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, label: str, trips: int = 1) -> None:
        with self._lock:
            self.trips[label] += trips

    def command(self, name: str) -> None:
        with self._lock:
            self.commands[name] += 1

    def take(self) -> tuple[Counter[str], Counter[str]]:
        """The counts so far, and start again from zero."""
        with self._lock:
            trips, commands = self.trips, self.commands
            self.trips, self.commands = Counter(), Counter()
        return trips, commands


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


class _Postgres:
    def __init__(self, count: WireCount, upstream: tuple[str, int]) -> None:
        self.count, self.upstream = count, upstream

    async def serve(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        while True:  # untyped start: answer SSL/GSS requests "no" ourselves, then the startup message
            head = await cr.readexactly(8)
            size, code = struct.unpack("!ii", head)
            if code in (_SSL_REQUEST, _GSS_REQUEST):
                cw.write(b"N")
                continue
            startup = head + await cr.readexactly(size - 8)
            break
        sr, sw = await asyncio.open_connection(*self.upstream)
        sw.write(startup)
        back = asyncio.ensure_future(_pipe(sr, cw))
        statements: dict[bytes, str] = {}
        pending = ""
        try:
            while True:
                kind = await cr.readexactly(1)
                size = struct.unpack("!i", await cr.readexactly(4))[0]
                body = await cr.readexactly(size - 4)
                sw.write(kind + struct.pack("!i", size) + body)
                if kind == b"P":
                    name, rest = body.split(b"\0", 1)
                    statements[name] = rest.split(b"\0", 1)[0].decode()
                    pending = "prepare: " + statements[name]
                elif kind == b"B":
                    name = body.split(b"\0", 2)[1]
                    pending = statements.get(name, "?")
                elif kind == b"S":
                    self.count.add(pending or "sync")
                    pending = ""
                elif kind == b"Q":
                    self.count.add(body.rstrip(b"\0").decode())
                elif kind == b"X":
                    break
                await sw.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            sw.close()
            back.cancel()
            cw.close()


def _resp_commands(buf: bytearray) -> list[str]:
    """Complete RESP commands at the head of `buf` (removed from it): their names (EVALSHA's
    with the script's SHA1 after a colon)."""
    names = []
    while buf.startswith(b"*"):
        at, fields = 0, []
        try:
            end = buf.index(b"\r\n", at)
            n = int(buf[1:end])
            at = end + 2
            for _ in range(n):
                end = buf.index(b"\r\n", at)
                length = int(buf[at + 1 : end])
                if len(buf) < end + 2 + length + 2:
                    raise ValueError
                fields.append(bytes(buf[end + 2 : end + 2 + length]))
                at = end + 2 + length + 2
        except ValueError:
            break
        del buf[:at]
        name = fields[0].decode().upper() if fields else "?"
        names.append(f"{name}:{fields[1].decode()}" if name == "EVALSHA" and len(fields) > 1 else name)
    return names


class _Redis:
    def __init__(self, count: WireCount, upstream: tuple[str, int]) -> None:
        self.count, self.upstream = count, upstream

    async def serve(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection(*self.upstream)
        replied = asyncio.Event()
        replied.set()

        async def back() -> None:
            try:
                while data := await sr.read(65536):
                    replied.set()
                    cw.write(data)
                    await cw.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                cw.close()

        task = asyncio.ensure_future(back())
        buf = bytearray()
        try:
            while data := await cr.read(65536):
                sw.write(data)
                buf += data
                names = _resp_commands(buf)
                for name in names:
                    self.count.command(name.split(":", 1)[0])
                if names and replied.is_set():
                    replied.clear()
                    self.count.add("+".join(names))
                await sw.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sw.close()
            task.cancel()


@contextmanager
def counting_proxy(kind: str, upstream: tuple[str, int]) -> Iterator[tuple[int, WireCount]]:
    """A proxy (`postgres` or `redis`) to `upstream` on a free loopback port, in a thread of its
    own: (its port, its counts)."""
    count = WireCount()
    handler = (_Postgres if kind == "postgres" else _Redis)(count, upstream)
    loop = asyncio.new_event_loop()
    started: list[asyncio.Server] = []
    ready = threading.Event()

    async def start() -> None:
        started.append(await asyncio.start_server(handler.serve, "127.0.0.1", 0))
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop)
    ready.wait(10)
    port = started[0].sockets[0].getsockname()[1]
    try:
        yield port, count
    finally:
        asyncio.run_coroutine_threadsafe(_stop(started[0]), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


async def _stop(server: asyncio.Server) -> None:
    """Stop listening and end every connection still open."""
    server.close()
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
