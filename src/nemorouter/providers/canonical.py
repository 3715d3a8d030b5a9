"""The canonical requests: what every front door (frontdoors/) hands the gateway, whatever wire
format the client spoke.

A chat request is an OpenAI Chat Completions body (the one shape every upstream adapter
translates from; fields nobody here reads pass through for the provider to judge) plus what
the gateway needs from it, read and validated once by the front door: the model ids to try,
streaming, the number of choices, the client's output limit, OpenRouter-style provider
preferences and the stop sequences. The result travels back as our OpenAI JSON or stream, which
each front door turns into its own. This module sits below the front doors and the service, so
both may import it (layers: docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The chat body's field for what only the Anthropic adapter reads: Messages fields sent to an
# Anthropic upstream as the client wrote them (`thinking`, `output_config`, ...) and its
# `anthropic-beta` values (`betas`). Every adapter drops it (providers/openai_wire.GATEWAY_FIELDS);
# the Anthropic one takes only the fields it knows (providers/anthropic_passthrough.py).
ANTHROPIC_PASSTHROUGH = "anthropic_passthrough"
# Likewise for the Responses API: the chat body's field for what only an upstream that speaks
# Responses natively reads (providers/openai_responses.py): `include` and the whole `reasoning`
# object (its `summary`). Its presence is what asks for that upstream's Responses wire.
RESPONSES_PASSTHROUGH = "responses_passthrough"
# An assistant message's field for the Responses `reasoning` items that came before it, as the
# client sent them (OpenAI's opaque `encrypted_content` included), and, on the way back, the
# reasoning items a Responses upstream produced. Only that upstream's adapter sends them; every
# other adapter ignores the field (their upstreams could not read another model's reasoning).
RESPONSES_REASONING = "responses_reasoning"


@dataclass(frozen=True, slots=True)
class ProviderPrefs:
    """OpenRouter's `provider` object: which providers, in what order, at what price."""

    order: tuple[str, ...] = ()
    allow_fallbacks: bool = True
    only: frozenset[str] | None = None
    ignore: frozenset[str] = frozenset()
    sort: str | None = None  # "price" | "latency"
    max_prompt: int | None = None  # pico-USD per token
    max_completion: int | None = None


@dataclass(slots=True)
class ChatRequest:
    """A validated chat request. `body` is the OpenAI-shaped chat body the adapters translate;
    the other fields are read from it (or from the client's own format) by the front door."""

    body: dict[str, Any]
    model_ids: list[str]  # the model, then the client's fallbacks, each once, in order
    stream: bool = False
    n: int = 1  # choices asked for: the hold covers each
    max_output: int | None = None  # the client's output limit (providers/output_limit.py), or None
    prefs: ProviderPrefs | None = None
    stop: tuple[str, ...] = ()  # the client's stop sequences, for front doors that report which one hit

    # A hand-written __init__: compiled, a direct constructor (docs/architecture.md, "Speed").
    def __init__(
        self,
        body: dict[str, Any],
        model_ids: list[str],
        stream: bool = False,
        n: int = 1,
        max_output: int | None = None,
        prefs: ProviderPrefs | None = None,
        stop: tuple[str, ...] = (),
    ) -> None:
        self.body = body
        self.model_ids = model_ids
        self.stream = stream
        self.n = n
        self.max_output = max_output
        self.prefs = prefs
        self.stop = stop


@dataclass(slots=True)
class EmbeddingsRequest:
    """A validated embeddings request: the OpenAI-shaped body (its `input` checked) and the
    model ids to try."""

    body: dict[str, Any]
    model_ids: list[str]
    prefs: ProviderPrefs | None = None


@dataclass(slots=True)
class ModerationRequest:
    """A validated moderation request: the OpenAI-shaped body (its `input` checked, its `model`
    the default when the client named none) and the model ids to try."""

    body: dict[str, Any]
    model_ids: list[str]
    prefs: ProviderPrefs | None = None


@dataclass(slots=True)
class RerankRequest:
    """A validated rerank request: the body in Cohere's shape (`query`, `documents` as strings,
    `top_n`) and the model ids to try."""

    body: dict[str, Any]
    model_ids: list[str]
    prefs: ProviderPrefs | None = None


@dataclass(frozen=True, slots=True)
class ImageFile:
    """One file of a multipart image edit, as the client sent it: its form field (`image`,
    `image[]` or `mask`), file name, content type and bytes (passed on unread)."""

    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass(slots=True)
class ImageRequest:
    """A validated images request (`POST /v1/images/generations`, or `/edits` when `files`):
    `body` holds the form's or JSON's fields in OpenAI's shape (`prompt`, `n`, `size`,
    `quality`, ...), `files` the edit's images and mask, in the order sent."""

    body: dict[str, Any]
    model_ids: list[str]
    n: int
    files: tuple[ImageFile, ...] = ()
    prefs: ProviderPrefs | None = None

    @property
    def edit(self) -> bool:
        return bool(self.files)


@dataclass(slots=True)
class SpeechRequest:
    """A validated text-to-speech request: OpenAI's `/audio/speech` body (`input` checked),
    the model ids to try, and `characters`, the input's length in Unicode code points: what
    the provider bills (USD per character) and what the request is held for."""

    body: dict[str, Any]
    model_ids: list[str]
    characters: int
    prefs: ProviderPrefs | None = None


@dataclass(frozen=True, slots=True)
class AudioUpload:
    """The audio file of a transcription or translation, as the client uploaded it."""

    filename: str
    content_type: str
    data: bytes


@dataclass(slots=True)
class TranscriptionRequest:
    """A validated transcription (or, with `translate`, translation) request: the form's fields
    (`model`, `language`, `prompt`, `response_format`, ...: strings, or lists of strings for a
    repeated `name[]` field) with the file under `"file"` as an `AudioUpload`; the model ids to
    try; and `seconds`, the file's duration read from the file itself, in whole seconds
    rounded up: what the request is held for."""

    body: dict[str, Any]
    model_ids: list[str]
    seconds: int
    translate: bool = False
    prefs: ProviderPrefs | None = None
