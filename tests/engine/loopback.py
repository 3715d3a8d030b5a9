"""Loopback servers for the client's tests, each byte written by the test: an upstream that
answers with a given reply, a CONNECT proxy, an address that never answers, a TLS certificate."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nemorouter.engine.http1 import Http1Client, Response

UA = "NemoRouter/test"
Reply = Callable[[asyncio.StreamWriter, bytes], Awaitable[None]]


@dataclass
class Upstream:
    """A loopback server: reads each request whole, answers it with `reply`."""

    reply: Reply
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0  # connections open at this moment, and the most ever open at once
    most_open: int = 0
    server: asyncio.Server | None = None
    port: int = 0
    tls: ssl.SSLContext | None = None
    handlers: list[tuple[asyncio.Task[None], asyncio.StreamWriter]] = field(default_factory=list)

    async def start(self) -> Upstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{'localhost' if self.tls else '127.0.0.1'}:{self.port}/v1/x?a=1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        task = asyncio.current_task()
        assert task is not None
        self.handlers.append((task, writer))
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                await self.reply(writer, request)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_now -= 1
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for _, writer in self.handlers:  # each handler's read ends, and it returns
            writer.close()
        await asyncio.gather(*(task for task, _ in self.handlers), return_exceptions=True)
        await self.server.wait_closed()


def answer(body: bytes, status: str = "200 OK", extra: str = "") -> Reply:
    async def reply(writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body)
        await writer.drain()

    return reply


async def served(reply: Reply, tls: ssl.SSLContext | None = None) -> Upstream:
    return await Upstream(reply, tls=tls).start()


def deadline(seconds: float = 5.0) -> float:
    return asyncio.get_running_loop().time() + seconds


async def post(client: Http1Client, up: Upstream, body: bytes = b'{"q":1}', **kw: float) -> Response:
    headers = {"Authorization": "Bearer sk-up", "Content-Type": "application/json"}
    return await client.request(up.url, headers, body, 2.0, deadline(kw.pop("within", 5.0)), **kw)


def certificate(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


@dataclass
class Proxy:
    """A forward proxy: CONNECT opens a tunnel (bytes copied both ways); an absolute-form
    request is sent on to its origin and the answer back. Records what it was asked, and
    refuses anything without `credentials` (user:password) when they are set."""

    credentials: str | None = None
    asked: list[bytes] = field(default_factory=list)  # each request head it read
    tunnels: list[str] = field(default_factory=list)  # the host:port of each tunnel opened
    server: asyncio.Server | None = None
    port: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> Proxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def url(self, userinfo: str = "") -> str:
        return f"http://{userinfo}127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.append(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.asked.append(head)
            method, target, _ = head.split(b"\r\n")[0].split(b" ")
            if self.credentials is not None:
                wanted = b"Proxy-Authorization: Basic " + base64.b64encode(self.credentials.encode())
                if wanted not in head.split(b"\r\n"):
                    writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
                    await writer.drain()
                    return
            if method == b"CONNECT":
                host, _, port = target.decode().rpartition(":")
                up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
                self.tunnels.append(target.decode())
                writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))
                return
            # absolute form: http://host:port/path; one exchange, then the connection ends
            authority = target.split(b"/")[2].decode()
            host, _, port = authority.rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            up_writer.write(
                head.replace(target, b"/" + target.split(b"/", 3)[3], 1) + await _body(reader, head)
            )
            await up_writer.drain()
            answered = await up_reader.readuntil(b"\r\n\r\n")
            writer.write(answered + await _body(up_reader, answered))
            up_writer.close()
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()


async def _body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return await reader.readexactly(int(line.split(b":")[1]))
    return b""


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while piece := await reader.read(65536):
            writer.write(piece)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


class Blackhole:
    """An address whose connects are never answered: a listening socket with a full accept
    queue (backlog 0, one connection waiting), so the kernel drops every further SYN."""

    def __init__(self, host: str, port: int) -> None:
        self.listener = socket.socket()
        self.listener.bind((host, port))
        self.listener.listen(0)
        self.filler = socket.socket()
        self.filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):  # completes in the kernel, never accepted
            self.filler.connect((host, port))

    def close(self) -> None:
        self.filler.close()
        self.listener.close()
