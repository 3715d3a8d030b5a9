"""The pooled HTTP client: the only place that talks to providers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from nemorouter import __version__
from nemorouter.engine.sse import decode
from nemorouter.providers.types import Failure, SseEvent, UpstreamRequest
from nemorouter.settings import Timeouts

USER_AGENT = f"NemoRouter/{__version__}"  # what every provider sees of us


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

    # A hand-written __init__: compiled, a direct constructor (docs/architecture.md, "Speed").
    def __init__(self, status: int, retry_after: int | None, body: bytes) -> None:
        self.status = status
        self.retry_after = retry_after
        self.body = body


def _retry_after(headers: Mapping[str, str]) -> int | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0, int(float(str(value))))
    except ValueError:
        return None


def _transport_failure(exc: BaseException) -> TransportFailure:
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return TransportFailure(
            Failure("timeout", 504, "the provider did not answer in time", retryable=True)
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TransportFailure(Failure("connect", 502, "could not connect to the provider", retryable=True))
    return TransportFailure(Failure("connect", 502, "the connection to the provider failed", retryable=True))


class StreamHandle:
    """An open 200 stream from a provider; `close()` aborts it (client gone, or done)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.events: AsyncIterator[SseEvent] = decode(response.content)

    async def next_event(self) -> SseEvent | None:
        try:
            return await anext(self.events)
        except StopAsyncIteration:
            return None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _transport_failure(exc) from None

    def close(self) -> None:
        self._response.close()


class Transport(Protocol):
    """What the gateway sends through: an UpstreamClient, or a wrapper of one (tracing's)."""

    async def send(self, request: UpstreamRequest, timeouts: Timeouts | None = None) -> RawResponse: ...

    async def open_stream(
        self, request: UpstreamRequest, timeouts: Timeouts | None = None
    ) -> StreamHandle | RawResponse: ...


class UpstreamClient:
    """One aiohttp session with keep-alive pooling, shared by every request."""

    def __init__(self, timeouts: Timeouts) -> None:
        self._timeouts = timeouts
        self._session: aiohttp.ClientSession | None = None
        self._timeout_cache: dict[tuple[Timeouts, bool], aiohttp.ClientTimeout] = {}

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
        timeout = aiohttp.ClientTimeout(
            total=self._timeouts.total, connect=self._timeouts.connect, sock_read=self._timeouts.first_byte
        )
        # Our own User-Agent as a default header, in place of aiohttp's (which names Python and
        # aiohttp): set here, not skipped per request, because aiohttp copies every request's
        # headers to honour `skip_auto_headers`.
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers={"User-Agent": USER_AGENT}
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("UpstreamClient.start() was not called")
        return self._session

    def _timeout(self, override: Timeouts | None, stream: bool) -> aiohttp.ClientTimeout:
        """A per-request timeout (aiohttp reads `timeout=None` as "no timeout at all": never pass it),
        built once per distinct setting.

        A stream gets `idle` between reads. A whole answer's first byte comes when the provider
        has finished (headers and body together), so "to the first byte" bounds the exchange:
        `total` capped at `first_byte`, one deadline, where a per-read timer would re-arm on
        every chunk.
        """
        chosen = override or self._timeouts
        found = self._timeout_cache.get((chosen, stream))
        if found is None:
            if stream:
                made = aiohttp.ClientTimeout(
                    total=chosen.total, connect=chosen.connect, sock_read=chosen.idle
                )
            else:
                made = aiohttp.ClientTimeout(
                    total=min(chosen.total, chosen.first_byte), connect=chosen.connect
                )
            found = self._timeout_cache[(chosen, stream)] = made
        return found

    async def send(self, request: UpstreamRequest, timeouts: Timeouts | None = None) -> RawResponse:
        """POST and read the whole answer (`timeouts` overrides the client's defaults)."""
        timeout = self._timeout(timeouts, stream=False)
        try:
            async with self.session.post(
                request.url, data=request.body, headers=request.headers, timeout=timeout
            ) as resp:
                body = await resp.read()
                return RawResponse(resp.status, _retry_after(resp.headers), body)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _transport_failure(exc) from None

    async def open_stream(
        self, request: UpstreamRequest, timeouts: Timeouts | None = None
    ) -> StreamHandle | RawResponse:
        """POST a stream request: a StreamHandle on 200, else the whole error answer."""
        timeout = self._timeout(timeouts, stream=True)
        try:
            resp = await self.session.post(
                request.url, data=request.body, headers=request.headers, timeout=timeout
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _transport_failure(exc) from None
        if resp.status != 200:
            try:
                body = await resp.read()
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise _transport_failure(exc) from None
            finally:
                resp.release()
            return RawResponse(resp.status, _retry_after(resp.headers), body)
        return StreamHandle(resp)
