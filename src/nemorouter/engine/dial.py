"""Opening a connection to an origin: resolve, race its addresses (happy eyeballs), tunnel
through a proxy if one is set, then TLS.

Happy eyeballs (RFC 8305): the addresses are tried in turn, alternating IPv6 and IPv4, each one
HAPPY_EYEBALLS_DELAY after the last started (or at once when the last failed), and the first to
connect wins. A host whose first address is unreachable or silent (a broken IPv6 route) costs a
quarter of a second, not the whole connect timeout.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

Address = tuple[int, tuple[Any, ...]]  # (socket family, socket address) as getaddrinfo gives them
Resolver = Callable[[str, int], Awaitable[list[Address]]]

HAPPY_EYEBALLS_DELAY = 0.25  # RFC 8305's recommended "connection attempt delay"


async def system_resolver(host: str, port: int) -> list[Address]:
    """The system's addresses for host, IPv6 and IPv4 interleaved (the first family first)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return interleaved([(info[0], info[4]) for info in infos])


def interleaved(addresses: list[Address]) -> list[Address]:
    """RFC 8305 4: alternate the address families, keeping each family's order."""
    if not addresses:
        return addresses
    first = addresses[0][0]
    firsts = [a for a in addresses if a[0] == first]
    others = [a for a in addresses if a[0] != first]
    mixed: list[Address] = []
    for i in range(max(len(firsts), len(others))):
        mixed.extend(firsts[i : i + 1])
        mixed.extend(others[i : i + 1])
    return mixed


async def _connect_one(address: Address) -> socket.socket:
    family, sockaddr = address
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


def _close_unclaimed(task: asyncio.Task[socket.socket]) -> None:
    """A losing attempt that connected anyway: its socket is nobody's."""
    if not task.cancelled() and task.exception() is None:
        task.result().close()


async def happy_connect(addresses: list[Address], delay: float = HAPPY_EYEBALLS_DELAY) -> socket.socket:
    """The socket of the first address to connect (the others cancelled), or the first error."""
    if not addresses:
        raise OSError("the host has no address")
    waiting = list(reversed(addresses))
    running: set[asyncio.Task[socket.socket]] = set()
    errors: list[BaseException] = []
    try:
        while waiting or running:
            if waiting:
                running.add(asyncio.create_task(_connect_one(waiting.pop())))
            done, _ = await asyncio.wait(
                running, timeout=delay if waiting else None, return_when=asyncio.FIRST_COMPLETED
            )
            winner: socket.socket | None = None
            for task in done:
                running.discard(task)
                error = task.exception()
                if error is not None:
                    errors.append(error)
                elif winner is None:
                    winner = task.result()
                else:
                    task.result().close()
            if winner is not None:
                return winner
    finally:
        for task in running:
            task.cancel()
            task.add_done_callback(_close_unclaimed)
    first = errors[0]
    raise first if isinstance(first, OSError) else OSError(str(first))
