"""Attempts across targets before the first byte: the next key or deployment on a retryable
failure, a bounded number of times; never after the first byte has reached the client."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson

from nemorouter.engine.http import RawResponse, StreamHandle, Transport, TransportFailure
from nemorouter.providers.registry import Adapter
from nemorouter.providers.types import (
    Completion,
    Failure,
    SseEvent,
    StreamStep,
    UnsupportedContent,
    UpstreamRequest,
)
from nemorouter.settings import Timeouts

T = TypeVar("T")


class AttemptsFailed(Exception):
    """No target served. `final` is set when a failure must not be retried (the request itself is bad)."""

    def __init__(self, failures: list[Failure], final: Failure | None = None) -> None:
        super().__init__("every attempt failed")
        self.failures = failures
        self.final = final


def _protocol(message: str) -> Failure:
    return Failure("protocol", 502, message, retryable=True)


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
                retryable=failure.kind != "auth",
                retry_after=failure.retry_after,
                against_key=False,
            )
        self.blamed = True
        return failure


def _build(build: Callable[[T], UpstreamRequest], target: T) -> UpstreamRequest | Failure:
    """The request for one target, or why this target cannot take it (another one may)."""
    try:
        return build(target)
    except UnsupportedContent as exc:
        return Failure("unsupported", 400, str(exc), retryable=True)


async def send_first(
    client: Transport,
    targets: Sequence[T],
    adapter_of: Callable[[T], Adapter],
    build: Callable[[T], UpstreamRequest],
    parse: Callable[[Adapter, Any], Completion],
    on_failure: Callable[[T, Failure], None],
    timeouts_of: Callable[[T], Timeouts | None] = lambda _: None,
) -> tuple[T, Completion, list[Failure]]:
    failures: list[Failure] = []
    blame = _KeyBlame()
    for target in targets:
        adapter = adapter_of(target)
        request = _build(build, target)
        if isinstance(request, Failure):
            failures.append(request)
            continue
        try:
            raw = await client.send(request, timeouts_of(target))
        except TransportFailure as exc:
            failures.append(exc.failure)
            on_failure(target, exc.failure)
            continue
        if raw.status == 200:
            try:
                return target, parse(adapter, orjson.loads(raw.body)), failures
            except (ValueError, TypeError, KeyError):
                failure = _protocol("the provider sent an unreadable response")
        else:
            failure = blame.judge(adapter.error_from_response(raw.status, raw.body, raw.retry_after))
        on_failure(target, failure)
        if not failure.retryable:
            raise AttemptsFailed(failures, final=failure)
        failures.append(failure)
    raise AttemptsFailed(failures)


async def stream_first(
    client: Transport,
    targets: Sequence[T],
    adapter_of: Callable[[T], Adapter],
    build: Callable[[T], UpstreamRequest],
    on_failure: Callable[[T, Failure], None],
    timeouts_of: Callable[[T], Timeouts | None] = lambda _: None,
) -> tuple[T, StreamHandle, StreamStep, Callable[[SseEvent], StreamStep]]:
    """Open a stream on the first target whose first event is not an error."""
    failures: list[Failure] = []
    blame = _KeyBlame()
    for target in targets:
        adapter = adapter_of(target)
        request = _build(build, target)
        if isinstance(request, Failure):
            failures.append(request)
            continue
        try:
            opened = await client.open_stream(request, timeouts_of(target))
        except TransportFailure as exc:
            failures.append(exc.failure)
            on_failure(target, exc.failure)
            continue
        if isinstance(opened, RawResponse):
            failure = adapter.error_from_response(opened.status, opened.body, opened.retry_after)
        else:
            try:
                event: SseEvent | None = await opened.next_event()
            except TransportFailure as exc:
                opened.close()
                failures.append(exc.failure)
                on_failure(target, exc.failure)
                continue
            decode = adapter.stream_decoder()
            step = decode(event) if event is not None else None
            if step is not None and step.error is None:
                return target, opened, step, decode
            opened.close()
            failure = (
                step.error if step is not None and step.error else _protocol("the provider closed the stream")
            )
        failure = blame.judge(failure)
        on_failure(target, failure)
        if not failure.retryable:
            raise AttemptsFailed(failures, final=failure)
        failures.append(failure)
    raise AttemptsFailed(failures)
