"""One keep-alive HTTP/1.1 connection to a provider: the asyncio protocol that sends a request
and frames its answer (Content-Length, chunked coding or the connection's end; gzip or deflate),
with httptools (llhttp, Node.js's parser) reading the bytes, and the deadlines of the exchange.

One connection carries one exchange at a time (no pipelining). It goes back to its origin's pool
(engine/pool.py) only after a complete answer that allows keep-alive; one given up mid-answer (a
deadline, a cancelled caller, a stream closed early) is aborted, never reused.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from typing import Protocol, cast

import httptools

from nemorouter.engine.outbox import send_at_step_end

STREAM_BUFFER = 256 * 1024  # bytes of an unread stream held before reading from the socket pauses
MAX_BODY = 256 * 1024 * 1024  # a whole answer larger than this is refused (a broken provider)
# A stream whose reader has seen its last event is usually a few bytes short of its HTTP end (the
# last chunk's terminator): wait this long, discarding at most DRAIN_BYTES, to keep the connection.
DRAIN_SECONDS = 1.0
DRAIN_BYTES = 64 * 1024


class HttpError(Exception):
    """No complete answer. `kind`: `timeout` (a deadline passed, connecting included), `connect`
    (no connection could be made) or `broken` (the connection failed or the answer was unreadable)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


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

    def take(self) -> bytes | None:
        """The next piece if it is here: b"" at the end, None when `arrival()` must be awaited."""
        conn = self._conn
        if conn is None:
            body, self._body = self._body, b""
            return body
        return conn.take()

    def arrival(self) -> asyncio.Future[None]:
        """Done when `take()` has something (see Connection.arrival)."""
        if self._conn is not None:
            return self._conn.arrival()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)  # a whole body is all here
        return done


class Owner(Protocol):
    """Where a connection goes back to, or says it closed: its origin's pool (engine/pool.py),
    seen through this Protocol so that this module does not import the pool's."""

    def put_back(self, conn: Connection) -> None: ...

    def forget(self, conn: Connection) -> None: ...


class Connection:
    """One keep-alive connection, and the asyncio protocol and parser callbacks of its exchange."""

    def __init__(self, pool: Owner) -> None:
        self.pool = pool
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.idle_since = 0.0
        self.closed = False
        self.counted = False  # holds one of its origin's connection slots (engine/pool.py)
        self.exchanges = 0  # requests sent on it: more than one, it was reused
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
        self._stall_timer: asyncio.TimerHandle | None = None  # a stream reader's wait (arrival())
        self._waiting_since = 0.0  # when a stream's reader began its current wait
        self._active = False  # an exchange is under way (a stream's until its reader is done)
        self._draining = False  # a finished stream's reader is gone; its end is awaited, unread
        self._keep = False  # the finished answer allows the connection to carry another
        self._deadline = 0.0  # a stream's end, in the loop's clock
        self._idle = 0.0  # a stream's longest wait for its next piece
        self._answered = False  # a byte of this exchange's answer has arrived

    # -- one exchange ------------------------------------------------------------------------

    def start(
        self, head: bytes, body: bytes, deadline: float, idle: float | None
    ) -> asyncio.Future[Response]:
        """Send the request; the future is done with the whole answer, or with a stream's head
        (`idle` given: the longest wait for its head and then for each piece of its body)."""
        assert self.transport is not None
        self._waiter = waiter = self.loop.create_future()
        self._active = True
        self.exchanges += 1
        if self.closed:  # the provider closed it as it passed from one request to the next
            waiter.set_exception(HttpError("broken", "the provider closed the connection"))
            return waiter
        if idle is not None:
            self._whole = False
            self._deadline, self._idle = deadline, idle
            deadline = min(deadline, self.loop.time() + idle)
        self._timer = self.loop.call_at(deadline, self._expired)
        send_at_step_end(self.loop, self.transport, head, body)
        return waiter

    def died_unanswered(self, error: HttpError) -> bool:
        """A reused connection that broke before any byte of its answer: the provider closed it
        while it was idle, as our request went out, so the request was never read; it may be
        sent again on a fresh connection (engine/http1.py), unseen by the caller."""
        return self.exchanges > 1 and error.kind == "broken" and not self._answered

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
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

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
            chunk = self.take()
            if chunk is not None:
                return chunk
            try:
                await self.arrival()
            except BaseException:
                self.abort()
                raise

    def take(self) -> bytes | None:
        """A stream's next piece if it is here: b"" at its end, None when it must be waited for
        (`arrival()`). Raises the exchange's HttpError."""
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
        return None

    def arrival(self) -> asyncio.Future[None]:
        """Done when `take()` has something for a stream's reader: a piece, the end or a failure
        (a wait longer than `idle`, or past the deadline, fails it). Only after `take()` said
        None. A reader that stops waiting (cancelled) closes the stream, which aborts this.

        A future, not a coroutine, and one timer for the whole stream that is moved on when it
        fires early, not one per wait: this runs once per event of every stream."""
        self._data_waiter = waiting = self.loop.create_future()
        now = self.loop.time()
        if now >= self._deadline:
            self._fail(HttpError("timeout", "the provider's stream ran past its time limit"))
            return waiting
        self._waiting_since = now
        if self._stall_timer is None:
            self._stall_timer = self.loop.call_at(min(now + self._idle, self._deadline), self._stall_check)
        return waiting

    def _stall_check(self) -> None:
        """The stall timer: a reader that has waited `idle` seconds (or until the deadline) fails
        the stream; one that waits less is checked again when that time comes."""
        self._stall_timer = None
        waiting = self._data_waiter
        if waiting is None or waiting.done():
            return  # nobody waits now: the next wait arms the timer again
        due = min(self._waiting_since + self._idle, self._deadline)
        if self.loop.time() >= due:
            self._fail(HttpError("timeout", "the provider's stream stalled"))
        else:
            self._stall_timer = self.loop.call_at(due, self._stall_check)

    def _resume_reading(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def finish_stream(self, finished: bool) -> None:
        usable = self._error is None and not self.closed
        if usable and self._complete:
            self._release()
        elif usable and finished:
            self._cancel_timer()
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
            self.pool.put_back(self)
        else:
            self.abort()

    # -- asyncio protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is one, not by subclass

    def data_received(self, data: bytes) -> None:
        if not self._active:
            self.abort()  # bytes nobody asked for, on an idle connection: not one to trust again
            return
        self._answered = True
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
        self.pool.forget(self)
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
