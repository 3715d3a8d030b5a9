"""One adapter per API shape; vendors that speak an existing shape are data, not code."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nemorouter.providers import openai_wire
from nemorouter.providers.types import Completion, Failure, SseEvent, StreamStep, Upstream, UpstreamRequest

BuildRequest = Callable[[dict[str, Any], Upstream], UpstreamRequest]


@dataclass(frozen=True, slots=True)
class Adapter:
    """The pure functions of one wire format.

    - `chat_request(body, upstream)`: an OpenAI chat body -> the provider's request.
    - `chat_response(parsed_json)`: the provider's 200 answer -> a `Completion` in OpenAI's shape.
    - `stream_decoder()`: a fresh function for one stream, fed each decoded SSE event in turn,
      returning the OpenAI chunks to forward and what the event said about usage and errors.
    - `error_from_response(status, body, retry_after)`: a non-200 answer -> a classified `Failure`.
    """

    chat_request: BuildRequest
    chat_response: Callable[[Any], Completion]
    stream_decoder: Callable[[], Callable[[SseEvent], StreamStep]]
    error_from_response: Callable[[int, bytes, int | None], Failure]
    embeddings_request: BuildRequest | None = None
    embeddings_response: Callable[[Any], Completion] | None = None


OPENAI = Adapter(
    chat_request=openai_wire.chat_request,
    chat_response=openai_wire.chat_response,
    stream_decoder=openai_wire.stream_decoder,
    error_from_response=openai_wire.error_from_response,
    embeddings_request=openai_wire.embeddings_request,
    embeddings_response=openai_wire.embeddings_response,
)

KINDS = ("openai", "openai-compatible", "anthropic", "gemini", "azure-openai")


def adapter_for(kind: str) -> Adapter | None:
    """The adapter for a provider kind, or None while that kind has none."""
    if kind in ("openai", "openai-compatible"):
        return OPENAI
    if kind == "anthropic":
        from nemorouter.providers import anthropic

        return anthropic.ADAPTER
    if kind == "gemini":
        from nemorouter.providers import gemini

        return gemini.ADAPTER
    if kind == "azure-openai":
        from nemorouter.providers import azure

        return azure.ADAPTER
    return None
