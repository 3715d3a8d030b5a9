"""Safe upper bounds of the prompt tokens of an OpenAI-shaped request, for hold sizing.

Text: a byte-level tokenizer spends at least one UTF-8 byte per token, so the bytes of every
billed string (message text wherever it stands, names, tool-call and legacy function-call
arguments, tool definitions, response_format, any field we do not know) plus allowances for
the provider's own framing never undercount. Media: each provider's own worst case for one
image (`PromptRules.image`); audio by its decoded size; what no rule bounds (PDFs and other
files, whose compressed text can hold any number of tokens; media referenced by id) counts as
the whole context window. No provider bills a prompt longer than its model's context window
(a longer one is refused unbilled), so the largest window among the candidates caps the bound.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any, NamedTuple

import orjson

MESSAGE_ALLOWANCE = 8  # role and separators of one message or tool call (OpenAI: 3-4 per message)
REQUEST_ALLOWANCE = 16
# Anthropic adds a tool-use system prompt of up to 346 tokens when tools are present (Anthropic
# docs, "Tool use: pricing"); other providers frame tools too. response_format becomes a tool there.
TOOLS_ALLOWANCE = 1_000
# A number in exponent form re-serialised after parsing (Anthropic `tool_use.input`, Gemini
# `functionCall.args`) grows by at most 15 bytes: orjson writes 1e15 as 1000000000000000.0.
EXPONENT_GROWTH = 16
_EXPONENT = re.compile(r"[0-9][eE]")
# Audio: Gemini bills 32 tokens per second (ai.google.dev, "Audio understanding"), OpenAI about
# 10; the leanest codecs these APIs take need more than 2 kbit/s (256 bytes) per second.
AUDIO_BYTES_PER_TOKEN = 8

# One image, by each provider's own rule, at the largest size it accepts:
# OpenAI (platform.openai.com/docs/guides/images-vision, "Calculating costs"), detail high:
# fitted in 2048 x 2048, short side scaled to 768, so at most 2 x 4 = 8 tiles of 512 px.
# gpt-4o/4.1/o-series 85 + 170 per tile = 1,445; gpt-5 70 + 140 per tile; patch models
# (gpt-4.1-mini/nano, o4-mini) at most 1,536 patches x 2.46 = 3,779; gpt-4o-mini bills
# 2,833 + 5,667 per tile = 48,169. Detail `original` has no published bound: the ceiling.
OPENAI_IMAGE_MAX = 6_000
OPENAI_4O_MINI_IMAGE_MAX = 2_833 + 8 * 5_667
# Anthropic (docs.anthropic.com, "Vision"): tokens = width x height / 750 after resizing to
# its maximum size: long edge 1568 px (2576 px on its high-resolution models), so <= 2576^2/750.
ANTHROPIC_IMAGE_MAX = 2576 * 2576 // 750 + 1
# Gemini 3 (ai.google.dev, "Media resolution"): a fixed count per image, 1,120 at the default
# (high) resolution, 2,240 at ultra high. Gemini 2.x bills 258 per 768 px tile with no published
# size limit, so an image there counts as the ceiling.
GEMINI_3_IMAGE_MAX = 2_240

UNBOUNDED = 1 << 62  # a part no rule bounds: the bound becomes the ceiling

# Top-level fields that carry no prompt text: every other field (a vendor's extra prompt field,
# Anthropic's `system` passed through) counts by its JSON bytes.
_UNBILLED_FIELDS = frozenset(
    {
        "model", "models", "provider", "route", "transforms", "usage", "plugins", "messages",
        "stream", "stream_options", "n", "max_tokens", "max_completion_tokens", "max_output_tokens",
        "max_new_tokens", "temperature", "top_p", "top_k", "stop", "seed", "presence_penalty",
        "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "user", "safety_identifier",
        "prompt_cache_key", "prompt_cache_retention", "metadata", "store", "service_tier",
        "parallel_tool_calls", "reasoning_effort", "verbosity", "modalities", "tool_choice",
    }
)  # fmt: skip
_TOOL_FIELDS = frozenset({"tools", "functions", "response_format"})
_MEDIA_WORDS = ("image", "audio", "file", "video", "document", "pdf")


class PromptRules(NamedTuple):
    """How the upstreams that may serve a request bill media, and the most any of them bills."""

    image: int  # tokens one image can cost on the candidate that bills images most
    ceiling: int  # the largest context window among the candidates


@lru_cache(maxsize=1024)
def image_tokens(kind: str, upstream_model: str) -> int:
    """One image's worst case on this provider kind and model (rules above), or UNBOUNDED."""
    model = upstream_model.lower()
    if kind in ("openai", "azure-openai", "openai-compatible"):
        return OPENAI_4O_MINI_IMAGE_MAX if "4o-mini" in model else OPENAI_IMAGE_MAX
    if kind == "anthropic" or (kind == "bedrock" and "anthropic.claude" in model):
        # Claude on Bedrock (a model id or a `us.`/`eu.`/`global.` inference profile) is the same
        # model, billing an image by Anthropic's rule; other Bedrock families have none here.
        return ANTHROPIC_IMAGE_MAX
    if kind == "gemini" and "gemini-3" in model:
        return GEMINI_3_IMAGE_MAX
    return UNBOUNDED


def prompt_rules(candidates: Iterable[tuple[str, str, int]]) -> PromptRules:
    """Rules over every candidate (provider kind, upstream model, context length): the worst of each."""
    image = 0
    ceiling = 0
    for kind, model, context in candidates:
        tokens = image_tokens(kind, model)
        if tokens > image:
            image = tokens
        if context > ceiling:
            ceiling = context
    return PromptRules(image, ceiling or UNBOUNDED)


# Without candidates (tests, tools): every kind's worst image, no context cap.
ANY_PROVIDER = PromptRules(image=UNBOUNDED, ceiling=UNBOUNDED)


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def _text_bytes(value: Any) -> int:
    return _utf8_len(value) if isinstance(value, str) else 0


def _json_bytes(value: Any) -> int:
    try:
        return len(orjson.dumps(value))
    except TypeError:  # nested deeper than orjson writes: the request is refused upstream anyway
        return UNBOUNDED


def _arguments_bytes(value: Any) -> int:
    """Arguments as sent (OpenAI) or parsed and re-serialised (Anthropic, Gemini)."""
    if isinstance(value, str):
        return _utf8_len(value) + EXPONENT_GROWTH * len(_EXPONENT.findall(value))
    return _json_bytes(value) if value is not None else 0


def _call_bytes(call: Any) -> int:
    """A `tool_calls` entry or a legacy `function_call`: name and arguments."""
    if not isinstance(call, dict):
        return _json_bytes(call)
    fn = call.get("function") if "function" in call else call
    if not isinstance(fn, dict):
        return _json_bytes(call)
    total = MESSAGE_ALLOWANCE + _text_bytes(call.get("id")) + _text_bytes(fn.get("name"))
    return total + _arguments_bytes(fn.get("arguments"))


def _base64_bytes(data: str) -> int:
    """Decoded size of base64 text (a data URL's payload or bare base64), without decoding it."""
    _, comma, payload = data.partition(",") if data.startswith("data:") else ("", "", data)
    return (len(payload if comma else data) * 3) // 4


def _audio_tokens(audio: Any) -> int:
    data = audio.get("data") if isinstance(audio, dict) else None
    if not isinstance(data, str):
        return UNBOUNDED
    return _base64_bytes(data) // AUDIO_BYTES_PER_TOKEN + MESSAGE_ALLOWANCE


def _file_tokens(file: Any) -> int:
    """Plain text files by their decoded bytes; PDFs and the rest are unbounded (compressed text
    streams and per-page images: Anthropic bills each page's text and image, Gemini 258+ a page)."""
    data = file.get("file_data") if isinstance(file, dict) else None
    if isinstance(data, str) and data.startswith("data:text/"):
        return _base64_bytes(data) + MESSAGE_ALLOWANCE
    return UNBOUNDED


def _image_tokens(part: dict[str, Any], rules: PromptRules) -> int:
    spec = part.get("image_url")
    if isinstance(spec, dict) and spec.get("detail") == "original":
        return UNBOUNDED
    return rules.image


def _part_tokens(part: Any, rules: PromptRules) -> int:
    if not isinstance(part, dict):
        return _json_bytes(part)
    kind = part.get("type")
    if kind == "text":
        return _text_bytes(part.get("text"))
    if kind == "refusal":
        return _text_bytes(part.get("refusal"))
    if kind == "image_url":
        return _image_tokens(part, rules)
    if kind == "input_audio":
        return _audio_tokens(part.get("input_audio"))
    if kind == "file":
        return _file_tokens(part.get("file"))
    # A part we do not know: media by another name has no bound; anything else its JSON bytes.
    if isinstance(kind, str) and any(word in kind for word in _MEDIA_WORDS):
        return UNBOUNDED
    return _json_bytes(part)


def _content_tokens(content: Any, rules: PromptRules) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return _utf8_len(content)
    if isinstance(content, list):
        return sum(_part_tokens(part, rules) for part in content)
    return _json_bytes(content)


def _message_tokens(message: dict[str, Any], rules: PromptRules) -> int:
    """Every field of a message: content, tool calls, the legacy function_call, and any string
    (name, tool_call_id, refusal, reasoning_content…) or other value by its bytes."""
    total = MESSAGE_ALLOWANCE
    for name, value in message.items():
        if value is None or name == "role":
            continue
        if name == "content":
            total += _content_tokens(value, rules)
        elif isinstance(value, str):
            total += _utf8_len(value)
        elif name == "tool_calls" and isinstance(value, list):
            total += sum(_call_bytes(call) for call in value)
        elif name == "function_call":
            total += _call_bytes(value)
        elif name == "audio":  # an earlier audio answer, by id: billed as audio input
            total += UNBOUNDED
        else:  # thinking_blocks and the like
            total += _json_bytes(value)
    return total


def chat_input_bound(body: dict[str, Any], rules: PromptRules = ANY_PROVIDER) -> int:
    """Upper bound of prompt tokens for a chat request, never above `rules.ceiling`."""
    total = REQUEST_ALLOWANCE
    for name, value in body.items():
        if value is None or name in _UNBILLED_FIELDS:
            if name == "messages" and isinstance(value, list):
                for message in value:
                    total += (
                        _message_tokens(message, rules) if isinstance(message, dict) else _json_bytes(message)
                    )
                    if total >= rules.ceiling:
                        return rules.ceiling
            continue
        total += _json_bytes(value)
        if name in _TOOL_FIELDS and value:
            total += TOOLS_ALLOWANCE
    return min(total, rules.ceiling)


def embeddings_input_bound(value: Any) -> int:
    """Upper bound of tokens for an embeddings `input` (strings, or token-id arrays)."""
    if isinstance(value, str):
        return len(value.encode()) + MESSAGE_ALLOWANCE
    total = 0
    if isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                total += len(item.encode()) + MESSAGE_ALLOWANCE
            elif isinstance(item, int):
                total += 1
            elif isinstance(item, list):
                total += len(item)
    return total


def moderation_input_bound(value: Any, context_length: int) -> int:
    """Upper bound of tokens for a moderations `input` (checked by its front door): text by its
    bytes; an image by no published rule (OpenAI bills none: its moderation models are free), so
    as one whole context window each. Not capped by the window: each input is classified on its
    own, so a list may hold more than one window's worth."""
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    total = 0
    for item in items:
        if isinstance(item, dict):
            text = item.get("text") if item.get("type") == "text" else None
            total += _utf8_len(text) + MESSAGE_ALLOWANCE if isinstance(text, str) else context_length
        elif isinstance(item, str):
            total += _utf8_len(item) + MESSAGE_ALLOWANCE
    return total


def moderation_texts(value: Any) -> list[str] | None:
    """The texts of a moderations `input`, or None when it holds an image (no tokenizer counts it)."""
    if isinstance(value, str):
        return [value]
    texts = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, dict) and item.get("type") == "text" and isinstance(item.get("text"), str):
            texts.append(item["text"])
        else:
            return None
    return texts


# Rerank fields that carry no text to bill; any other field counts by its JSON bytes.
_RERANK_UNBILLED = frozenset(
    {"model", "models", "provider", "query", "documents", "top_n", "return_documents", "truncation"}
)


def rerank_input_bound(body: dict[str, Any]) -> int:
    """Upper bound of tokens for a rerank body (checked by its front door): the query is read
    with every document (Voyage bills `query tokens x documents + document tokens`,
    docs.voyageai.com/docs/pricing), so each document counts its bytes, the query's, and any
    unknown field's, plus an allowance."""
    query = _utf8_len(body["query"])
    extra = sum(_json_bytes(v) for k, v in body.items() if k not in _RERANK_UNBILLED and v is not None)
    return sum(query + extra + _utf8_len(doc) + MESSAGE_ALLOWANCE for doc in body["documents"])


# Cohere bills rerank in search units: "one query with up to 100 documents"; a document longer
# than 510 tokens with the query is split into chunks, each counted as a document
# (cohere.com/pricing, docs.cohere.com/docs/rerank).
SEARCH_DOCUMENTS, CHUNK_TOKENS = 100, 510


def rerank_search_units(body: dict[str, Any]) -> int:
    """Upper bound of the search units a rerank body can be billed (checked by its front door):
    every document's chunks, counting a byte as a token (a token is at least one byte), in
    groups of 100. With a query of 510 bytes or more, every document byte may be its own chunk."""
    room = CHUNK_TOKENS - _utf8_len(body["query"])
    chunks = 0
    for doc in body["documents"]:
        size = _utf8_len(doc)
        chunks += max(1, -(-size // room) if room > 0 else size)
    return -(-chunks // SEARCH_DOCUMENTS)
