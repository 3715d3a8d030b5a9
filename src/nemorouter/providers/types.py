"""What adapters take and give: plain data, no I/O."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from nemorouter.money import Usage


@dataclass(slots=True)
class SseEvent:
    """One decoded server-sent event (the engine parses SSE; adapters only see these). Treated
    as a value; not frozen, so that it has a direct constructor (built once per event)."""

    event: str | None
    data: bytes

    # A hand-written __init__: compiled, a direct constructor (docs/architecture.md, "Speed").
    def __init__(self, event: str | None, data: bytes) -> None:
        self.event = event
        self.data = data


@dataclass(slots=True, init=False)
class Upstream:
    """Where and how to call one deployment."""

    model: str  # the provider's own model id
    base_url: str  # as in the provider's official SDK
    secret: str = field(repr=False)  # the vault key: never in a repr, a log line or an error
    max_output: int = 4096  # the catalog's limit, sent when the request sets none and the API requires one
    config: Mapping[str, Any] = field(default_factory=dict)  # provider settings, e.g. Azure's api-version

    # A hand-written __init__: compiled, a direct constructor (docs/architecture.md, "Speed").
    def __init__(
        self,
        model: str,
        base_url: str,
        secret: str,
        max_output: int = 4096,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self.secret = secret
        self.max_output = max_output
        self.config = {} if config is None else config


SSE = "sse"  # text/event-stream, parsed by engine/sse.py
EVENT_STREAM = "eventstream"  # application/vnd.amazon.eventstream, parsed by engine/eventstream.py


@dataclass(slots=True, init=False)
class UpstreamRequest:
    """One HTTP request to a provider, fully built (the secret is already in `headers`)."""

    url: str
    headers: dict[str, str]
    body: bytes
    stream: bool = False
    framing: str = SSE  # how a 200 stream is framed: SSE, or EVENT_STREAM (AWS's binary messages)

    # A hand-written __init__: compiled, a direct constructor (docs/architecture.md, "Speed").
    def __init__(
        self, url: str, headers: dict[str, str], body: bytes, stream: bool = False, framing: str = SSE
    ) -> None:
        self.url = url
        self.headers = headers
        self.body = body
        self.stream = stream
        self.framing = framing


class FailureKind(StrEnum):
    """What went wrong with one upstream attempt; the dispatcher's policy matches every kind
    (engine/dispatch.py). A `StrEnum`: its values are the names in metrics and logs."""

    RATE_LIMITED = "rate_limited"  # the provider's rate limit on our vault key (a 429)
    OVERLOADED = "overloaded"  # the provider is out of capacity (Anthropic's 529, a 503)
    SERVER = "server"  # a 5xx
    TIMEOUT = "timeout"  # no answer in time
    CONNECT = "connect"  # no connection, or it broke before an answer
    PROTOCOL = "protocol"  # an answer we cannot read (malformed body or stream)
    INVALID = "invalid"  # the provider refused the request as malformed (a 4xx)
    AUTH = "auth"  # evidence that the vault key itself is bad: a 401, or an invalid-key code
    FORBIDDEN = "forbidden"  # a 403 or a policy/region refusal: the request's failure, not the key's
    UNSUPPORTED = "unsupported"  # the request carries what this provider cannot take (never sent)


@dataclass(frozen=True, slots=True)
class Failure:
    """A classified upstream failure. `retryable` means another key or deployment may serve.

    `against_key` is False when the attempt loop has already held one failure of this request
    against a vault key (a request may blame at most one key).
    """

    kind: FailureKind
    status: int
    message: str
    retryable: bool
    retry_after: int | None = None
    against_key: bool = True

    @property
    def key_rejected(self) -> bool:
        """The provider refused our vault key itself, and this request may blame it (quarantine it)."""
        return self.kind is FailureKind.AUTH and self.against_key

    @property
    def blames_key(self) -> bool:
        """Does this failure, taken at face value, say something about the vault key (its
        validity or its rate limit)? Such failures are charged to at most one key per request."""
        return self.kind is FailureKind.AUTH or self.kind is FailureKind.RATE_LIMITED


@dataclass(slots=True, init=False)
class Completion:
    """A parsed non-stream upstream response, in OpenAI's chat shape."""

    body: dict[str, Any]
    usage: Usage | None
    finish_reason: str | None
    raw_usage: dict[str, Any] | None = None

    # A hand-written __init__: compiled, a direct constructor (docs/architecture.md, "Speed").
    def __init__(
        self,
        body: dict[str, Any],
        usage: Usage | None,
        finish_reason: str | None,
        raw_usage: dict[str, Any] | None = None,
    ) -> None:
        self.body = body
        self.usage = usage
        self.finish_reason = finish_reason
        self.raw_usage = raw_usage


@dataclass(slots=True)
class StreamStep:
    """What one upstream stream event contributes: chunks to forward, usage seen, an error, the end.

    `prompt_usage` is the provider's own count of the prompt sent before the stream's end
    (Anthropic's `message_start`, Gemini's running usageMetadata): input counts only, output 0.
    It is what a client that hangs up early still pays for; `usage` is the final report.
    """

    chunks: list[dict[str, Any]] = field(default_factory=list)
    usage: Usage | None = None
    raw_usage: dict[str, Any] | None = None
    prompt_usage: Usage | None = None
    raw_prompt_usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    error: Failure | None = None
    done: bool = False
    output_tokens_seen: int = 0

    # A hand-written __init__: compiled, a direct constructor (docs/architecture.md, "Speed"); one
    # is built per stream event.
    def __init__(
        self,
        chunks: list[dict[str, Any]] | None = None,
        usage: Usage | None = None,
        raw_usage: dict[str, Any] | None = None,
        prompt_usage: Usage | None = None,
        raw_prompt_usage: dict[str, Any] | None = None,
        finish_reason: str | None = None,
        error: Failure | None = None,
        done: bool = False,
        output_tokens_seen: int = 0,
    ) -> None:
        self.chunks = [] if chunks is None else chunks
        self.usage = usage
        self.raw_usage = raw_usage
        self.prompt_usage = prompt_usage
        self.raw_prompt_usage = raw_prompt_usage
        self.finish_reason = finish_reason
        self.error = error
        self.done = done
        self.output_tokens_seen = output_tokens_seen


class UnsupportedContent(ValueError):
    """The request carries something this provider cannot take; answered as 400, never dropped."""


@dataclass(frozen=True, slots=True)
class Minter:
    """How a kind's vault secret becomes the short-lived secret each attempt is built with (a
    Google service account's access token, an AWS role's temporary credentials): `mint` (run
    in a worker thread: it blocks) returns it and its lifetime in seconds; `classify` names
    what a failure to mint means, without any of the secret's text (engine/minted.py)."""

    mint: Callable[[Upstream], tuple[str, float]]
    classify: Callable[[BaseException], Failure]
