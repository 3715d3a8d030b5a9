"""A lean HTTP/1.1 client for calls to providers: pooled keep-alive connections, TLS, deadlines.

Why not aiohttp's ClientSession here: on this path it cost about four times the CPU of the
exchange itself (about 75 µs a request on the benchmark machine against 20 µs for this module),
the largest cost of a request after the server's own. A call to a provider needs a small, fixed
part of HTTP: a POST with a body of known length; an answer framed by Content-Length, chunked
coding or the connection's end, perhaps gzip- or deflate-coded (we never ask for it); keep-alive.
httptools (llhttp, Node.js's parser, which uvicorn already uses to read our own requests) parses
the answers; this module frames requests, pools connections and enforces the deadlines.

One connection carries one exchange at a time (no pipelining). A connection goes back to the
pool only after a complete answer that allows keep-alive; one given up mid-answer (a deadline,
a cancelled caller, a stream closed early) is aborted, never reused.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

import httptools

STREAM_BUFFER = 256 * 1024  # bytes of an unread stream held before reading from the socket pauses
MAX_BODY = 256 * 1024 * 1024  # a whole answer larger than this is refused (a broken provider)
# A stream whose reader has seen its last event is usually a few bytes short of its HTTP end (the
# last chunk's terminator): wait this long, discarding at most DRAIN_BYTES, to keep the connection.
DRAIN_SECONDS = 1.0
DRAIN_BYTES = 64 * 1024
_ORIGINS_CACHED = 4096


class HttpError(Exception):
    """No complete answer. `kind`: `timeout` (a deadline passed, connecting included), `connect`
    (no connection could be made) or `broken` (the connection failed or the answer was unreadable)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class Origin:
    """Where a URL's request goes, and the start of its request head, worked out once per URL."""

    def __init__(self, url: str, user_agent: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {parts.scheme}://{parts.hostname or ''}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        default_port = parts.port is None or parts.port == (443 if self.tls else 80)
        name = f"[{self.host}]" if ":" in self.host else self.host
        authority = name if default_port else f"{name}:{self.port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.pool_key = (self.tls, self.host, self.port)
        self.head = f"POST {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: {user_agent}\r\n"


class Response:
    """An answer's status and headers (names lower-cased); its body is `body` once complete,
    or read by `chunks()` from a stream."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes, conn: Connection | None) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self._conn = conn

    def chunks(self) -> Chunks:
        """The body as it arrives (a stream's), in pieces of any size; ends with the answer."""
        return Chunks(self._conn, self.body)

    def close(self, finished: bool = False) -> None:
        """Done with a stream: its connection goes back to the pool if the answer was complete,
        or (`finished`: the reader saw its last event) once the rest arrives soon; else it is
        aborted at once (which is what tells a provider to stop generating)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.finish_stream(finished)


class Chunks:
    """An async iterator over a body's pieces (a class, not an async generator: it compiles)."""

    def __init__(self, conn: Connection | None, body: bytes) -> None:
        self._conn = conn
        self._body = body

    def __aiter__(self) -> Chunks:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if conn is None:  # a whole answer's body: one piece
            body, self._body = self._body, b""
            if not body:
                raise StopAsyncIteration
            return body
        chunk = await conn.next_chunk()
        if not chunk:
            raise StopAsyncIteration
        return chunk


class Connection:
    """One keep-alive connection, and the asyncio protocol and parser callbacks of its exchange."""

    def __init__(self, pool: Http1Client, key: tuple[bool, str, int]) -> None:
        self._pool = pool
        self.key = key
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.idle_since = 0.0
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        self._waiter: asyncio.Future[Response] | None = None
        self._whole = True  # read the whole answer, or hand the body out as it comes (a stream)
        self._status = 0
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._decoder: zlib._Decompress | None = None
        self._until_close = False  # no Content-Length, not chunked: the body ends with the connection
        self._complete = False
        self._informational = False
        self._error: HttpError | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._data_waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._active = False  # an exchange is under way (a stream's until its reader is done)
        self._draining = False  # a finished stream's reader is gone; its end is awaited, unread
        self._keep = False  # the finished answer allows the connection to carry another
        self._deadline = 0.0  # a stream's end, in the loop's clock
        self._idle = 0.0  # a stream's longest wait for its next piece

    # -- one exchange ------------------------------------------------------------------------

    def start(
        self, head: bytes, body: bytes, deadline: float, idle: float | None
    ) -> asyncio.Future[Response]:
        """Send the request; the future is done with the whole answer, or with a stream's head
        (`idle` given: the longest wait for its head and then for each piece of its body)."""
        assert self.transport is not None
        self._waiter = waiter = self.loop.create_future()
        self._active = True
        if idle is not None:
            self._whole = False
            self._deadline, self._idle = deadline, idle
            deadline = min(deadline, self.loop.time() + idle)
        self._timer = self.loop.call_at(deadline, self._expired)
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)
        return waiter

    def _expired(self) -> None:
        self._timer = None
        self._fail(HttpError("timeout", "the provider did not answer in time"))

    def _fail(self, error: HttpError) -> None:
        """The exchange cannot finish: tell whoever waits, and drop the connection."""
        if self._error is None:
            self._error = error
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self._wake()
        self.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _wake(self) -> None:
        data_waiter, self._data_waiter = self._data_waiter, None
        if data_waiter is not None and not data_waiter.done():
            data_waiter.set_result(None)

    def abort(self) -> None:
        self.closed = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.abort()

    def given_up(self) -> None:
        """The caller stopped waiting (cancelled): the answer is unread, the connection unusable."""
        self._waiter = None
        self.abort()

    async def next_chunk(self) -> bytes:
        """A stream's next piece of body; b"" at its end. Waits at most the stream's `idle`
        seconds, and never past its deadline."""
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered < STREAM_BUFFER // 2:
                    self._resume_reading()
                return chunk
            if self._error is not None:
                raise self._error
            if self._complete:
                return b""
            now = self.loop.time()
            if now >= self._deadline:
                self._fail(HttpError("timeout", "the provider's stream ran past its time limit"))
                continue
            self._data_waiter = waiting = self.loop.create_future()
            timer = self.loop.call_at(min(now + self._idle, self._deadline), self._stalled)
            try:
                await waiting
            except BaseException:
                self.abort()
                raise
            finally:
                timer.cancel()

    def _stalled(self) -> None:
        if self._data_waiter is not None:
            self._fail(HttpError("timeout", "the provider's stream stalled"))

    def _resume_reading(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def finish_stream(self, finished: bool) -> None:
        usable = self._error is None and not self.closed
        if usable and self._complete:
            self._release()
        elif usable and finished:
            self._draining = True
            self._chunks.clear()
            self._buffered = 0  # from here on, counts the bytes discarded while draining
            self._resume_reading()
            self._timer = self.loop.call_later(DRAIN_SECONDS, self.abort)
        else:
            self.abort()

    def _release(self) -> None:
        self._cancel_timer()
        keep = self._keep and not self._until_close
        self._reset()
        if keep and not self.closed:
            self._pool.put_back(self)
        else:
            self.abort()

    # -- asyncio protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is one, not by subclass

    def data_received(self, data: bytes) -> None:
        if not self._active:
            self.abort()  # bytes nobody asked for, on an idle connection: not one to trust again
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            # A callback's own error comes back wrapped, as the context of the parser's.
            cause = exc.__context__
            self._fail(
                cause
                if isinstance(cause, HttpError)
                else HttpError("broken", "the provider's answer was not valid HTTP")
            )

    def eof_received(self) -> bool:
        self.closed = True  # never handed out again, even before connection_lost comes
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.forget(self)
        if self._until_close and not self._complete and self._status:
            self.on_message_complete()  # the end of the connection is the end of this body
            return
        if not self._complete:
            self._fail(HttpError("broken", "the provider closed the connection"))

    def pause_writing(self) -> None:
        pass  # request bodies are written at once; the transport buffers them

    def resume_writing(self) -> None:
        pass

    # -- parser callbacks --------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        if not self._active:
            raise HttpError("broken", "the provider sent an answer nobody asked for")
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # 100 Continue, 103 Early Hints: the answer is still to come
            self._informational = True
            self._headers = {}
            return
        self._status = status
        headers = self._headers
        coding = headers.get("content-encoding", "identity").strip().lower()
        if coding in ("gzip", "x-gzip", "deflate"):
            self._decoder = zlib.decompressobj(wbits=47)  # gzip or zlib header, told apart by zlib
        elif coding != "identity":
            raise HttpError("broken", f"the provider's answer is in an unsupported coding: {coding[:20]}")
        self._until_close = (
            "content-length" not in headers
            and "chunked" not in headers.get("transfer-encoding", "").lower()
            and status not in (204, 304)
        )
        if not self._whole:
            self._cancel_timer()  # a stream's deadlines are its reader's from here on
            waiter, self._waiter = self._waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result(Response(status, headers, b"", self))

    def on_body(self, body: bytes) -> None:
        if self._informational:
            return
        if self._decoder is not None:
            try:
                body = self._decoder.decompress(body)
            except zlib.error:
                raise HttpError("broken", "the provider's compressed answer was corrupt") from None
        if self._whole:
            self._size += len(body)
            if self._size > MAX_BODY:
                raise HttpError("broken", "the provider's answer was too large")
            self._body.append(body)
            return
        if self._draining:
            self._buffered += len(body)
            if self._buffered > DRAIN_BYTES:
                raise HttpError("broken", "the provider went on after its stream's last event")
            return
        if body:
            self._chunks.append(body)
            self._buffered += len(body)
            if self._buffered > STREAM_BUFFER and not self._paused and self.transport is not None:
                self._paused = True
                self.transport.pause_reading()
            self._wake()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if not self._active:
            raise HttpError("broken", "the provider sent an answer nobody asked for")
        if self._decoder is not None:
            tail = self._decoder.flush()
            if tail:
                self.on_body_tail(tail)
        self._complete = True
        self._keep = self._parser.should_keep_alive()  # only known in this callback
        if self._draining:
            self._release()
            return
        if not self._whole:
            self._wake()
            return
        waiter, self._waiter = self._waiter, None
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        response = Response(self._status, self._headers, body, None)
        self._release()
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def on_body_tail(self, tail: bytes) -> None:
        if self._whole:
            self._body.append(tail)
        else:
            self._chunks.append(tail)
            self._buffered += len(tail)


class Http1Client:
    """Keep-alive connections per (scheme, host, port), reused most-recent first."""

    def __init__(
        self, user_agent: str, keepalive: float = 30.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.user_agent = user_agent
        self.keepalive = keepalive
        self._ssl = ssl_context
        self._idle: dict[tuple[bool, str, int], list[Connection]] = {}
        self._origins: dict[str, Origin] = {}
        self._open: set[Connection] = set()

    def _origin(self, url: str) -> Origin:
        found = self._origins.get(url)
        if found is None:
            if len(self._origins) >= _ORIGINS_CACHED:
                self._origins.clear()
            found = self._origins[url] = Origin(url, self.user_agent)
        return found

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            context = ssl.create_default_context()
            context.set_alpn_protocols(["http/1.1"])
            self._ssl = context
        return self._ssl

    async def _connection(self, origin: Origin, connect_timeout: float, deadline: float) -> Connection:
        loop = asyncio.get_running_loop()
        idle = self._idle.get(origin.pool_key)
        now = loop.time()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self.keepalive:
                return conn
            conn.abort()
        limit = min(connect_timeout, deadline - now)
        if limit <= 0:
            raise HttpError("timeout", "the provider did not answer in time")
        tls = self._tls() if origin.tls else None
        # A Connection is an asyncio protocol by its methods, not by subclass (it stays compilable).
        protocol = cast(Callable[[], asyncio.Protocol], lambda: Connection(self, origin.pool_key))
        try:
            _, made = await asyncio.wait_for(
                loop.create_connection(
                    protocol,
                    origin.host,
                    origin.port,
                    ssl=tls,
                    server_hostname=origin.host if tls is not None else None,
                ),
                limit,
            )
        except TimeoutError:
            raise HttpError("timeout", "connecting to the provider took too long") from None
        except (OSError, ssl.SSLError) as exc:
            raise HttpError("connect", f"could not connect to the provider ({type(exc).__name__})") from None
        conn = cast(Connection, made)
        self._open.add(conn)
        return conn

    def put_back(self, conn: Connection) -> None:
        conn.idle_since = conn.loop.time()
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = []
        idle.append(conn)

    def forget(self, conn: Connection) -> None:
        self._open.discard(conn)
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    def _head(self, origin: Origin, headers: dict[str, str], length: int) -> bytes:
        lines = [origin.head]
        for name, value in headers.items():
            lines.append(f"{name}: {value}\r\n")
        lines.append(f"Content-Length: {length}\r\n\r\n")
        text = "".join(lines)
        # Exactly one line break per header line, so no name or value can split the head (an
        # operator's secret with a newline in it must not become a header of its own).
        if text.count("\n") != len(headers) + 5 or text.count("\r") != len(headers) + 5:
            raise ValueError("a request header name or value contains a line break")
        return text.encode("latin-1")

    async def request(
        self,
        url: str,
        headers: dict[str, str],
        body: bytes,
        connect_timeout: float,
        deadline: float,
        idle: float | None = None,
    ) -> Response:
        """POST `body`; the whole answer, or, given `idle`, a stream: its head, with the body to
        read by `Response.chunks()`, no wait for the head or a piece longer than `idle` seconds.
        `deadline`, in the loop's clock, bounds the whole exchange, connecting included."""
        origin = self._origin(url)
        head = self._head(origin, headers, len(body))
        conn = await self._connection(origin, connect_timeout, deadline)
        waiter = conn.start(head, body, deadline, idle)
        try:
            return await waiter
        except asyncio.CancelledError:
            conn.given_up()
            raise

    async def close(self) -> None:
        for conn in list(self._open):
            conn.abort()
        self._open.clear()
        self._idle.clear()
