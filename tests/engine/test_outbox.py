"""Requests written in one event-loop step leave together at its end (engine/outbox.py), over real
loopback sockets read by a server thread: nothing leaves while the step runs, everything leaves
in order once it ends, a large body arrives whole after its head, and a connection closed before
the step ends sends nothing. On both event loops (conftest)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from eventually import until
from nemorouter.engine.outbox import SEPARATE_BODY, send_at_step_end


class Listener:
    """A server thread that reads every connection to its end, noting for each piece whether it
    came before or after the client said its step was over."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.step_over = threading.Event()
        self.early: list[bytes] = []  # pieces that arrived while the client's step still ran
        self.received: dict[int, bytes] = {}  # connection number -> every byte it carried
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        number = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            reader = threading.Thread(target=self._read, args=(conn, number), daemon=True)
            self._threads.append(reader)
            reader.start()
            number += 1

    def _read(self, conn: socket.socket, number: int) -> None:
        got = bytearray()
        with conn:
            while piece := conn.recv(1 << 20):
                if not self.step_over.is_set():
                    self.early.append(piece)
                got += piece
        self.received[number] = bytes(got)

    @property
    def accepted(self) -> int:
        return len(self._threads)

    def close(self) -> None:
        self.sock.close()
        for reader in self._threads:
            reader.join(5)


@pytest.fixture
def listener() -> Iterator[Listener]:
    made = Listener()
    yield made
    made.close()


async def _connect(port: int) -> asyncio.Transport:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    return transport


async def test_nothing_leaves_during_the_step_and_everything_after_it_in_order(listener: Listener) -> None:
    transports = [await _connect(listener.port) for _ in range(4)]
    await until(lambda: listener.accepted == 4)
    loop = asyncio.get_running_loop()
    big = b"B" * (SEPARATE_BODY + 10)
    for i, transport in enumerate(transports):
        send_at_step_end(loop, transport, b"HEAD%d|" % i, b"body%d;" % i)
    send_at_step_end(loop, transports[0], b"SECOND|", big)  # after the first, on the same connection
    time.sleep(0.1)  # the rest of a long step: a write made now would be read by the server thread
    listener.step_over.set()
    await asyncio.sleep(0)  # the step ends; the writes go
    for transport in transports:
        transport.close()
    await until(lambda: len(listener.received) == 4)
    assert listener.early == []
    by_head = sorted(listener.received.values(), key=lambda got: got[:5])
    assert by_head == [b"HEAD0|body0;SECOND|" + big, b"HEAD1|body1;", b"HEAD2|body2;", b"HEAD3|body3;"]


async def test_a_connection_closed_before_the_step_ends_sends_nothing(listener: Listener) -> None:
    given_up, kept = await _connect(listener.port), await _connect(listener.port)
    await until(lambda: listener.accepted == 2)
    loop = asyncio.get_running_loop()
    send_at_step_end(loop, given_up, b"GIVEN-UP|", b"")
    send_at_step_end(loop, kept, b"KEPT|", b"x")
    given_up.abort()  # its caller was cancelled within the same step
    listener.step_over.set()
    await asyncio.sleep(0)
    kept.close()
    await until(lambda: len(listener.received) == 2)
    assert sorted(listener.received.values()) == [b"", b"KEPT|x"]
