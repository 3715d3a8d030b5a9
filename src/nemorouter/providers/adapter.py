"""The shape every upstream adapter fills: the pure functions of one wire format.

Its own module so that the adapters and the registry that lists them import it without a circle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nemorouter.providers.types import (
    Completion,
    Failure,
    Minter,
    SseEvent,
    StreamStep,
    Upstream,
    UpstreamRequest,
)

BuildRequest = Callable[[dict[str, Any], Upstream], UpstreamRequest]
# An answer read from its raw bytes and content type (audio, or a transcription as text).
ParseMedia = Callable[[bytes, str], Completion]


@dataclass(frozen=True, slots=True)
class Adapter:
    """The pure functions of one wire format.

    - `chat_request(body, upstream)`: an OpenAI chat body -> the provider's request.
    - `chat_response(parsed_json)`: the provider's 200 answer -> a `Completion` in OpenAI's shape.
    - `stream_decoder()`: a fresh function for one stream, fed each decoded SSE event in turn,
      returning the OpenAI chunks to forward and what the event said about usage and errors.
    - `error_from_response(status, body, retry_after)`: a non-200 answer -> a classified `Failure`.
    - `embeddings_*`, `moderations_*`, `rerank_*`, `images_*`, `image_edits_request`: the same
      for those APIs, where the provider serves them (an edit's answer is read by `images_response`).
    - `speech_*`, `transcription_*`, `translation_request`: the same for the audio APIs, whose
      answers are read from their raw bytes and content type (`ParseMedia`), not as JSON.
    - `error_from_answer(status, body, retry_after, headers)`: the same, for a wire format whose
      error type travels in a header (AWS's `x-amzn-ErrorType`); used instead when set.
    - `select(body, upstream)`: another adapter of the same kind that this request and upstream
      call for (an OpenAI upstream's native Responses API for a Responses client), or None.
    - `minter`: the vault secret is a credential (a Google service account, an AWS key that
      assumes a role) that the engine exchanges for a short-lived secret before each attempt
      (engine/minted.py); the builders then see that as `upstream.secret`. None costs other
      kinds nothing.
    """

    chat_request: BuildRequest
    chat_response: Callable[[Any], Completion]
    stream_decoder: Callable[[], Callable[[SseEvent], StreamStep]]
    error_from_response: Callable[[int, bytes, int | None], Failure]
    embeddings_request: BuildRequest | None = None
    embeddings_response: Callable[[Any], Completion] | None = None
    moderations_request: BuildRequest | None = None
    moderations_response: Callable[[Any], Completion] | None = None
    rerank_request: BuildRequest | None = None
    rerank_response: Callable[[Any], Completion] | None = None
    images_request: BuildRequest | None = None
    image_edits_request: BuildRequest | None = None
    images_response: Callable[[Any], Completion] | None = None
    speech_request: BuildRequest | None = None
    speech_response: ParseMedia | None = None
    transcription_request: BuildRequest | None = None
    translation_request: BuildRequest | None = None
    transcription_response: ParseMedia | None = None
    select: Callable[[dict[str, Any], Upstream], Adapter | None] | None = None
    error_from_answer: Callable[[int, bytes, int | None, Mapping[str, str]], Failure] | None = None

    def error_of(
        self, status: int, body: bytes, retry_after: int | None, headers: Mapping[str, str]
    ) -> Failure:
        """A non-200 answer -> a classified `Failure` (headers only for adapters that read them)."""
        if self.error_from_answer is not None:
            return self.error_from_answer(status, body, retry_after, headers)
        return self.error_from_response(status, body, retry_after)

    minter: Minter | None = None

    def for_request(self, body: dict[str, Any], upstream: Upstream) -> Adapter:
        """The adapter that builds this request and reads its answer."""
        chosen = self.select(body, upstream) if self.select is not None else None
        return chosen if chosen is not None else self
