"""The dispatcher: a request's attempts, in order, through the transport, before the first byte.

It tries the next key or deployment on a retryable failure, a bounded number of times (the
attempts it is given), never after the first byte has reached the client. It owns the health of
deployments and vault keys and the one policy that turns a failure into a breaker count, a
cool-down or a quarantine (`consequence`, an exhaustive match on `FailureKind`). The target an
attempt came from is opaque here: quarantine is asked of the layer above through `Observer`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, Generic, Protocol, TypeVar, assert_never

import orjson

from nemorouter.engine.health import Health
from nemorouter.engine.http import RawResponse, StreamHandle, Transport, TransportFailure
from nemorouter.engine.minted import MintedSecrets
from nemorouter.providers.adapter import BuildRequest, ParseMedia
from nemorouter.providers.registry import Adapter
from nemorouter.providers.types import (
    Completion,
    Failure,
    FailureKind,
    SseEvent,
    StreamStep,
    UnsupportedContent,
    Upstream,
    UpstreamRequest,
)
from nemorouter.settings import Timeouts

T = TypeVar("T")
log = logging.getLogger("nemorouter.gateway")


class Attempt(Generic[T]):
    """One way to send a request: the adapter and upstream of one deployment and vault key,
    its timeouts, the names its health is kept under (`breaker`: the deployment's circuit
    breaker; `key_breaker`: the vault key's rate limit on that deployment), names for metrics
    and logs, and the target it came from. (A plain class: mypyc compiles no generic dataclass.)"""

    __slots__ = (
        "adapter",
        "breaker",
        "deployment_id",
        "key_breaker",
        "key_id",
        "origin",
        "provider",
        "timeouts",
        "upstream",
    )

    def __init__(
        self,
        adapter: Adapter,
        upstream: Upstream,
        timeouts: Timeouts | None,
        breaker: str,
        key_breaker: str,
        provider: str,
        deployment_id: str,
        key_id: str,
        origin: T,
    ) -> None:
        self.adapter = adapter
        self.upstream = upstream
        self.timeouts = timeouts
        self.breaker = breaker
        self.key_breaker = key_breaker
        self.provider = provider
        self.deployment_id = deployment_id
        self.key_id = key_id
        self.origin = origin


class Operation(Enum):
    """Which of an adapter's request builders and parsers an attempt uses."""

    CHAT = "chat"
    EMBEDDINGS = "embeddings"
    MODERATIONS = "moderations"
    RERANK = "rerank"
    IMAGES = "images"
    IMAGE_EDITS = "image_edits"
    # Audio: the answer is read from its raw bytes and content type, not as JSON.
    SPEECH = "speech"
    TRANSCRIPTIONS = "transcriptions"
    TRANSLATIONS = "translations"


class Consequence(Enum):
    """What one failed attempt does to the health of what it tried."""

    NONE = "none"  # the request's own failure (or an excused one): key and deployment untouched
    COOL_KEY = "cool_key"  # the provider rate-limited this vault key on this deployment
    QUARANTINE_KEY = "quarantine_key"  # the provider refused this vault key itself
    TRIP_BREAKER = "trip_breaker"  # the deployment failed: one more towards opening its breaker


def consequence(failure: Failure) -> Consequence:
    """The failure -> breaker/quarantine policy. Only a failure held against the key
    (`against_key`, at most one per request) touches the key: a 429 cools that key down on that
    deployment, a refused key (a 401, Gemini's invalid-key code) is quarantined. A 403
    (`forbidden`), a malformed request or unsupported content leaves key and deployment alone."""
    kind = failure.kind
    match kind:
        case FailureKind.RATE_LIMITED:
            return Consequence.COOL_KEY if failure.against_key else Consequence.NONE
        case FailureKind.AUTH:
            return Consequence.QUARANTINE_KEY if failure.against_key else Consequence.NONE
        case (
            FailureKind.SERVER
            | FailureKind.OVERLOADED
            | FailureKind.TIMEOUT
            | FailureKind.CONNECT
            | FailureKind.PROTOCOL
        ):
            return Consequence.TRIP_BREAKER
        case FailureKind.FORBIDDEN | FailureKind.INVALID | FailureKind.UNSUPPORTED:
            return Consequence.NONE
        case _:
            assert_never(kind)


class Observer(Protocol):
    """What the dispatcher tells the layer above (which it never imports)."""

    def attempt_failed(self, provider: str, kind: FailureKind) -> None:
        """Count one failed attempt."""

    def key_refused(self, attempt: Attempt[Any], failure: Failure) -> None:
        """Quarantine the attempt's vault key (a store write, off the request's path). A refusal
        puts no in-memory cool-down on the key: the quarantine, a row every replica routes by,
        is the whole effect, so releasing it clears it everywhere."""


class AttemptsFailed(Exception):
    """No target served. `final` is set when a failure must not be retried (the request itself is bad)."""

    def __init__(self, failures: list[Failure], final: Failure | None = None) -> None:
        super().__init__("every attempt failed")
        self.failures = failures
        self.final = final


def _protocol(message: str) -> Failure:
    return Failure(FailureKind.PROTOCOL, 502, message, retryable=True)


class _KeyBlame:
    """At most one vault key per request is held to account (quarantined or cooled down).

    A customer's request can draw key-like failures from every key it reaches (a prompt over a
    key's per-minute token limit draws a 429 from each); if each counted, one request could take
    every key of a model out. The first counts; later ones are reported with `against_key`
    False, and a second refused key ends the attempts: two keys refused for one request point
    at the request, so no further key is tried (and none quarantined) for it.
    """

    def __init__(self) -> None:
        self.blamed = False

    def judge(self, failure: Failure) -> Failure:
        if not failure.blames_key:
            return failure
        if self.blamed:
            return Failure(
                failure.kind,
                failure.status,
                failure.message,
                retryable=failure.kind is not FailureKind.AUTH,
                retry_after=failure.retry_after,
                against_key=False,
            )
        self.blamed = True
        return failure


# What builds each operation's request on an adapter, and what reads its answer: JSON for all but
# audio's, whose readers take the answer's bytes and content type (audio, or a transcription as
# text, SRT or VTT). Chat is not here: its adapter is `for_request`'s, its reader always set.
_BUILDS: dict[Operation, Callable[[Adapter], BuildRequest | None]] = {
    Operation.EMBEDDINGS: lambda a: a.embeddings_request,
    Operation.MODERATIONS: lambda a: a.moderations_request,
    Operation.RERANK: lambda a: a.rerank_request,
    Operation.IMAGES: lambda a: a.images_request,
    Operation.IMAGE_EDITS: lambda a: a.image_edits_request,
    Operation.SPEECH: lambda a: a.speech_request,
    Operation.TRANSCRIPTIONS: lambda a: a.transcription_request,
    Operation.TRANSLATIONS: lambda a: a.translation_request,
}
_READS_JSON: dict[Operation, Callable[[Adapter], Callable[[Any], Completion] | None]] = {
    Operation.EMBEDDINGS: lambda a: a.embeddings_response,
    Operation.MODERATIONS: lambda a: a.moderations_response,
    Operation.RERANK: lambda a: a.rerank_response,
    Operation.IMAGES: lambda a: a.images_response,  # a generation's and an edit's answer: one shape
    Operation.IMAGE_EDITS: lambda a: a.images_response,
}
_READS_MEDIA: dict[Operation, Callable[[Adapter], ParseMedia | None]] = {
    Operation.SPEECH: lambda a: a.speech_response,
    Operation.TRANSCRIPTIONS: lambda a: a.transcription_response,
    Operation.TRANSLATIONS: lambda a: a.transcription_response,
}


def _build(
    attempt: Attempt[Any], body: dict[str, Any], operation: Operation, upstream: Upstream
) -> tuple[Adapter, UpstreamRequest] | Failure:
    """The adapter this request calls for (`Adapter.for_request`) and its request for one
    attempt, or why its provider cannot take it (another one may)."""
    adapter = attempt.adapter
    if operation is Operation.CHAT:
        adapter = adapter.for_request(body, upstream)
        make: BuildRequest | None = adapter.chat_request
    else:
        make = _BUILDS[operation](adapter)
    if make is None:
        message = f"provider {attempt.provider} does not serve {operation.value}"
        return Failure(FailureKind.UNSUPPORTED, 400, message, retryable=True)
    try:
        return adapter, make(body, upstream)
    except UnsupportedContent as exc:
        return Failure(FailureKind.UNSUPPORTED, 400, str(exc), retryable=True)


def _parse(adapter: Adapter, operation: Operation, raw: RawResponse) -> Completion:
    """A 200 answer read by the adapter that built its request."""
    if operation is Operation.CHAT:
        return adapter.chat_response(orjson.loads(raw.body))
    media = _READS_MEDIA.get(operation)
    if media is not None:
        read_media = media(adapter)
        assert read_media is not None  # built only when the adapter serves the operation
        return read_media(raw.body, raw.headers.get("content-type", ""))
    read = _READS_JSON[operation](adapter)
    assert read is not None  # built only when the adapter serves the operation
    return read(orjson.loads(raw.body))


class Opened(Generic[T]):
    """A stream whose provider has answered: its first step is not an error."""

    __slots__ = ("attempt", "decode", "first", "handle")

    def __init__(
        self,
        attempt: Attempt[T],
        handle: StreamHandle,
        first: StreamStep,
        decode: Callable[[SseEvent], StreamStep],
    ) -> None:
        self.attempt = attempt
        self.handle = handle
        self.first = first
        self.decode = decode


class Dispatcher:
    def __init__(
        self,
        client: Transport,
        observer: Observer,
        health: Health | None = None,
        tokens: MintedSecrets | None = None,
    ) -> None:
        self.client = client
        self.observer = observer
        self.health = health if health is not None else Health()
        self.tokens = tokens if tokens is not None else MintedSecrets()

    def _refused(self, attempt: Attempt[Any], failure: Failure) -> None:
        """A provider that refused a minted token: drop it, so the next attempt mints anew."""
        if attempt.adapter.minter is not None and failure.kind is FailureKind.AUTH:
            self.tokens.forget(attempt.key_id)

    def _gave_up(self, attempt: Attempt[Any], failure: Failure, failures: list[Failure]) -> None:
        """One attempt failed (`failure`, judged): teach the breakers, then end the request if
        no other target may be tried, else keep the failure and let the loop go on."""
        self.failed(attempt, failure)
        if not failure.retryable:
            raise AttemptsFailed(failures, final=failure)
        failures.append(failure)

    async def send(
        self, attempts: Sequence[Attempt[T]], body: dict[str, Any], operation: Operation, started: float
    ) -> tuple[Attempt[T], Completion]:
        """The first complete 200 answer (`started`: when the request was admitted, for latency)."""
        failures: list[Failure] = []
        blame = _KeyBlame()
        for attempt in attempts:
            upstream = attempt.upstream
            minter = attempt.adapter.minter
            if minter is not None:  # only kinds whose secret is exchanged for another
                minted = await self.tokens.upstream_for(attempt.key_id, upstream, minter)
                if isinstance(minted, Failure):
                    self._gave_up(attempt, blame.judge(minted), failures)
                    continue
                upstream = minted
            built = _build(attempt, body, operation, upstream)
            if isinstance(built, Failure):
                failures.append(built)
                continue
            adapter, request = built
            try:
                raw = await self.client.send(request, attempt.timeouts)
            except TransportFailure as exc:
                failures.append(exc.failure)
                self.failed(attempt, exc.failure)
                continue
            if raw.status == 200:
                try:
                    completion = _parse(adapter, operation, raw)
                except (ValueError, TypeError, KeyError):
                    failure = _protocol("the provider sent an unreadable response")
                else:
                    self.succeeded(attempt, started)
                    return attempt, completion
            else:
                error = adapter.error_of(raw.status, raw.body, raw.retry_after, raw.headers)
                self._refused(attempt, error)
                failure = blame.judge(error)
            self._gave_up(attempt, failure, failures)
        raise AttemptsFailed(failures)

    async def open_stream(
        self, attempts: Sequence[Attempt[T]], body: dict[str, Any], started: float
    ) -> Opened[T]:
        """Open a stream on the first attempt whose first event is not an error."""
        failures: list[Failure] = []
        blame = _KeyBlame()
        for attempt in attempts:
            upstream = attempt.upstream
            minter = attempt.adapter.minter
            if minter is not None:  # only kinds whose secret is exchanged for another
                minted = await self.tokens.upstream_for(attempt.key_id, upstream, minter)
                if isinstance(minted, Failure):
                    self._gave_up(attempt, blame.judge(minted), failures)
                    continue
                upstream = minted
            built = _build(attempt, body, Operation.CHAT, upstream)
            if isinstance(built, Failure):
                failures.append(built)
                continue
            adapter, request = built
            try:
                opened = await self.client.open_stream(request, attempt.timeouts)
            except TransportFailure as exc:
                failures.append(exc.failure)
                self.failed(attempt, exc.failure)
                continue
            if isinstance(opened, RawResponse):
                failure = adapter.error_of(opened.status, opened.body, opened.retry_after, opened.headers)
                self._refused(attempt, failure)
            else:
                try:
                    event: SseEvent | None = await opened.next_event()
                except TransportFailure as exc:
                    opened.close()
                    failures.append(exc.failure)
                    self.failed(attempt, exc.failure)
                    continue
                decode = adapter.stream_decoder()
                step = decode(event) if event is not None else None
                if step is not None and step.error is None:
                    self.succeeded(attempt, started)
                    return Opened(attempt, opened, step, decode)
                opened.close()
                failure = (
                    step.error
                    if step is not None and step.error
                    else _protocol("the provider closed the stream")
                )
            failure = blame.judge(failure)
            self._gave_up(attempt, failure, failures)
        raise AttemptsFailed(failures)

    def succeeded(self, attempt: Attempt[Any], started: float) -> None:
        self.health.success(attempt.breaker, (time.monotonic() - started) * 1000)
        self.health.success(attempt.key_breaker)

    def failed(self, attempt: Attempt[Any], failure: Failure) -> None:
        """Teach the breakers, by `consequence`; count and log the failure."""
        self.observer.attempt_failed(attempt.provider, failure.kind)
        log.warning(
            "upstream attempt failed",
            extra={
                "provider": attempt.provider,
                "deployment": attempt.deployment_id,
                "provider_key": attempt.key_id,
                "kind": failure.kind.value,
                "status": failure.status,
                "against_key": failure.against_key,
            },
        )
        action = consequence(failure)
        match action:
            case Consequence.COOL_KEY:
                wait = failure.retry_after
                self.health.cool_down(attempt.key_breaker, wait if wait is not None else 1)
            case Consequence.QUARANTINE_KEY:
                self.observer.key_refused(attempt, failure)
            case Consequence.TRIP_BREAKER:
                self.health.failure(attempt.breaker)
                if failure.retry_after:
                    self.health.cool_down(attempt.breaker, failure.retry_after)
            case Consequence.NONE:
                pass
            case _:
                assert_never(action)
