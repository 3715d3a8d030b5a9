"""The client every call to a provider goes through: timeouts, failures and streams in the
gateway's terms, over the pooled HTTP/1.1 connections of `http1`."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from nemorouter import __version__
from nemorouter.engine.http1 import Http1Client, HttpError, InvalidHeader, Response
from nemorouter.engine.sse import EventParser, MalformedFrame
from nemorouter.errors import InvalidRequest
from nemorouter.providers.types import SSE, Failure, FailureKind, SseEvent, UpstreamRequest
from nemorouter.settings import Outbound, Timeouts

USER_AGENT = f"NemoRouter/{__version__}"  # what every provider sees of us
KEEPALIVE_SECONDS = 30.0  # an idle pooled connection older than this is closed, not reused


class TransportFailure(Exception):
    """A request that never got a complete HTTP answer."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


@dataclass(slots=True, init=False)
class RawResponse:
    status: int
    retry_after: int | None
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)  # names lower-cased; read by adapters
    # that classify errors by a header (AWS's x-amzn-ErrorType)

    # A hand-written __init__: compiled, a direct constructor (docs/architecture.md, "Speed").
    def __init__(
        self, status: int, retry_after: int | None, body: bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        self.body = body
        self.headers = {} if headers is None else headers


def _retry_after(headers: Mapping[str, str]) -> int | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0, int(float(str(value))))
    except ValueError:
        return None


_FAILURES = {
    "timeout": Failure(FailureKind.TIMEOUT, 504, "the provider did not answer in time", retryable=True),
    "connect": Failure(FailureKind.CONNECT, 502, "could not connect to the provider", retryable=True),
    "broken": Failure(FailureKind.CONNECT, 502, "the connection to the provider failed", retryable=True),
}
# A stream whose framing cannot be read (an event-stream message failing its CRC or limits):
# the provider's answer is unreadable, not the connection broken.
_UNREADABLE = Failure(FailureKind.PROTOCOL, 502, "the provider sent an unreadable stream", retryable=True)


def _transport_failure(exc: HttpError) -> TransportFailure:
    return TransportFailure(_FAILURES[exc.kind])


def _invalid(exc: InvalidHeader) -> InvalidRequest:
    """A header that cannot be sent: the request's fault, answered 400 before any provider saw
    it (and so never a failure of the provider's: no breaker, no other target tried)."""
    return InvalidRequest(f"the request cannot be sent to the provider: {exc}")


def _event_stream_parser() -> Any:
    """Imported on first use: botocore is loaded only for the providers that answer in its framing."""
    from nemorouter.engine.eventstream import EventStreamParser

    return EventStreamParser()


class StreamHandle:
    """An open 200 stream from a provider; `close()` ends it (client gone, or done).

    `poll()` takes an event already received without awaiting anything; `arrival()` waits for
    more. The relay (service/relay.py) reads through these two: per event, one wait on the
    connection, not a chain of coroutines. `next_event()` does both."""

    def __init__(self, response: Response, framing: str = SSE) -> None:
        self._response = response
        self._chunks = response.chunks()
        self._parser = EventParser()
        # Another framing's parser (engine/eventstream.py, same interface), or None for SSE. Its
        # own attribute, so the SSE path keeps its typed parser and pays one None test a poll.
        self._frames: Any = None if framing == SSE else _event_stream_parser()
        self.ended = False  # the stream's last event has been taken

    def poll(self) -> SseEvent | None:
        """The next event if it is here; else None, and `ended` says whether one can still come."""
        if self._frames is not None:
            return self._poll_frames()
        parser = self._parser
        ready = parser.ready
        try:
            while not ready:
                if self.ended:
                    return None
                piece = self._chunks.take()
                if piece is None:
                    return None
                if piece:
                    parser.feed(piece)
                else:
                    parser.end()
                    self.ended = True
        except HttpError as exc:
            raise _transport_failure(exc) from None
        except ValueError:  # a line past sse.MAX_LINE
            raise _transport_failure(HttpError("broken", "unreadable stream")) from None
        return ready.popleft()

    def _poll_frames(self) -> SseEvent | None:
        """`poll` for a framing other than SSE: a corrupt message is the provider's PROTOCOL failure."""
        parser = self._frames
        ready = parser.ready
        try:
            while not ready:
                if self.ended:
                    return None
                piece = self._chunks.take()
                if piece is None:
                    return None
                if piece:
                    parser.feed(piece)
                else:
                    self.ended = True
                    parser.end()
        except HttpError as exc:
            raise _transport_failure(exc) from None
        except MalformedFrame:
            raise TransportFailure(_UNREADABLE) from None
        event: SseEvent = ready.popleft()
        return event

    def arrival(self) -> asyncio.Future[None]:
        """Done when `poll()` has something to say (an event, the end, a failure): only after it
        returned None with `ended` false. Awaiting it is the only wait per event."""
        return self._chunks.arrival()

    async def next_event(self) -> SseEvent | None:
        """The next event, waiting for it; None at the stream's end."""
        while True:
            event = self.poll()
            if event is not None or self.ended:
                return event
            try:
                await self._chunks.arrival()
            except BaseException:
                self.close()  # a reader that stops waiting ends the stream (as next_chunk does)
                raise

    def close(self, finished: bool = False) -> None:
        """`finished`: the last event was read, so the connection is worth keeping for its end."""
        self._response.close(finished)


class Transport(Protocol):
    """What the gateway sends through: an UpstreamClient, or a wrapper of one (tracing's)."""

    async def send(self, request: UpstreamRequest, timeouts: Timeouts | None = None) -> RawResponse: ...

    async def open_stream(
        self, request: UpstreamRequest, timeouts: Timeouts | None = None
    ) -> StreamHandle | RawResponse: ...


class UpstreamClient:
    """Keep-alive pooled connections to every provider, shared by every request."""

    def __init__(self, timeouts: Timeouts, outbound: Outbound | None = None) -> None:
        self._timeouts = timeouts
        self._outbound = outbound or Outbound()
        self._client: Http1Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._client = Http1Client(USER_AGENT, keepalive=KEEPALIVE_SECONDS, outbound=self._outbound)
        # Its connections belong to this loop; kept, since asking asyncio for the running loop
        # is a getpid() system call per request in Python 3.11.
        self._loop = asyncio.get_running_loop()

    def _now(self) -> float:
        loop = self._loop
        if loop is None:
            raise RuntimeError("UpstreamClient.start() was not called")
        return loop.time()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
            self._loop = None

    @property
    def client(self) -> Http1Client:
        if self._client is None:
            raise RuntimeError("UpstreamClient.start() was not called")
        return self._client

    async def send(self, request: UpstreamRequest, timeouts: Timeouts | None = None) -> RawResponse:
        """POST and read the whole answer (`timeouts` overrides the client's defaults).

        A whole answer's first byte comes when the provider has finished (headers and body
        together), so "to the first byte" bounds the exchange: `total` capped at `first_byte`,
        one deadline, connecting included.
        """
        chosen = timeouts or self._timeouts
        deadline = self._now() + min(chosen.total, chosen.first_byte)
        try:
            resp = await self.client.request(
                request.url, request.headers, request.body, chosen.connect, deadline
            )
        except HttpError as exc:
            raise _transport_failure(exc) from None
        except InvalidHeader as unsendable:  # its own name: compiled, `exc` has one type per function
            raise _invalid(unsendable) from None
        return RawResponse(resp.status, _retry_after(resp.headers), resp.body, resp.headers)

    async def open_stream(
        self, request: UpstreamRequest, timeouts: Timeouts | None = None
    ) -> StreamHandle | RawResponse:
        """POST a stream request: a StreamHandle on 200, else the whole error answer. No wait
        for the head or for a next piece is longer than `idle`; the whole stream, than `total`."""
        chosen = timeouts or self._timeouts
        deadline = self._now() + chosen.total
        try:
            resp = await self.client.request(
                request.url, request.headers, request.body, chosen.connect, deadline, idle=chosen.idle
            )
        except HttpError as exc:
            raise _transport_failure(exc) from None
        except InvalidHeader as unsendable:  # its own name: compiled, `exc` has one type per function
            raise _invalid(unsendable) from None
        if resp.status != 200:
            try:
                body = b"".join([chunk async for chunk in resp.chunks()])
            except HttpError as exc:
                raise _transport_failure(exc) from None
            finally:
                resp.close()
            return RawResponse(resp.status, _retry_after(resp.headers), body, resp.headers)
        return StreamHandle(resp, request.framing)
