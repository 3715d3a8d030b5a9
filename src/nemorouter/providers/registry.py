"""One adapter per API shape; vendors that speak an existing shape are data, not code."""

from __future__ import annotations

from nemorouter.providers import (
    anthropic,
    audio_wire,
    azure,
    bedrock,
    gemini,
    images_wire,
    openai_responses,
    openai_wire,
    rerank_wire,
    vertex,
)
from nemorouter.providers.adapter import Adapter

__all__ = ["KINDS", "OPENAI", "Adapter", "adapter_for"]

OPENAI = Adapter(
    chat_request=openai_wire.chat_request,
    chat_response=openai_wire.chat_response,
    stream_decoder=openai_wire.stream_decoder,
    error_from_response=openai_wire.error_from_response,
    embeddings_request=openai_wire.embeddings_request,
    embeddings_response=openai_wire.embeddings_response,
    moderations_request=openai_wire.moderations_request,
    moderations_response=openai_wire.moderations_response,
    rerank_request=rerank_wire.rerank_request,
    rerank_response=rerank_wire.rerank_response,
    images_request=images_wire.images_request,
    image_edits_request=images_wire.image_edits_request,
    images_response=images_wire.images_response,
    speech_request=audio_wire.speech_request,
    speech_response=audio_wire.speech_response,
    transcription_request=audio_wire.transcription_request,
    translation_request=audio_wire.translation_request,
    transcription_response=audio_wire.transcription_response,
    select=openai_responses.select,  # a Responses client on a Responses upstream: its native API
)

KINDS = ("openai", "openai-compatible", "anthropic", "gemini", "azure-openai", "bedrock", "vertex")


def adapter_for(kind: str) -> Adapter | None:
    """The adapter for a provider kind, or None while that kind has none."""
    if kind in ("openai", "openai-compatible"):
        return OPENAI
    if kind == "anthropic":
        return anthropic.ADAPTER
    if kind == "gemini":
        return gemini.ADAPTER
    if kind == "azure-openai":
        return azure.ADAPTER
    if kind == "bedrock":
        return bedrock.ADAPTER
    if kind == "vertex":
        return vertex.ADAPTER
    return None
