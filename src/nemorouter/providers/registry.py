"""One adapter per API shape; vendors that speak an existing shape are data, not code."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nemorouter.providers import openai_wire
from nemorouter.providers.types import Completion, Failure, StreamStep, UpstreamRequest

BuildRequest = Callable[[dict[str, Any], str, str, str], UpstreamRequest]


@dataclass(frozen=True, slots=True)
class Adapter:
    """The pure functions of one wire format."""

    chat_request: BuildRequest
    chat_response: Callable[[Any], Completion]
    stream_event: Callable[[bytes], StreamStep]
    error_from_response: Callable[[int, bytes, int | None], Failure]
    embeddings_request: BuildRequest | None = None
    embeddings_response: Callable[[Any], Completion] | None = None


OPENAI = Adapter(
    chat_request=openai_wire.chat_request,
    chat_response=openai_wire.chat_response,
    stream_event=openai_wire.stream_event,
    error_from_response=openai_wire.error_from_response,
    embeddings_request=openai_wire.embeddings_request,
    embeddings_response=openai_wire.embeddings_response,
)

ADAPTERS: dict[str, Adapter] = {"openai": OPENAI, "openai-compatible": OPENAI}
KINDS = ("openai", "openai-compatible", "anthropic", "gemini", "azure-openai")


def adapter_for(kind: str) -> Adapter | None:
    return ADAPTERS.get(kind)
