"""OpenAI-compatible vendors are data: one row each over the one OpenAI-wire adapter.

A row gives the vendor's documented base URL and what its API does differently on the way in
(renamed or refused fields). On the way out, usage conventions are recognised from the usage
object itself (`openai_wire.parse_usage`), so a row needs no code. To add a vendor: add a row
here and a test in tests/providers/test_vendors.py (see docs/providers.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from nemorouter.providers.types import UnsupportedContent


@dataclass(frozen=True, slots=True)
class Vendor:
    name: str
    base_url: str
    rename: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # our field -> theirs
    refuse: frozenset[str] = frozenset()  # fields the vendor answers with a 400
    notes: str = ""
    # The one output-limit field the vendor obeys; the request's limit is always sent in it
    # (providers.output_limit). OpenAI's `max_completion_tokens` caps reasoning too, and its
    # o-series refuse `max_tokens`; servers that predate it know only `max_tokens`.
    limit_field: str = "max_completion_tokens"
    # Does the vendor serve OpenAI's Responses API (`POST /responses`) for every model? Then a
    # Responses client's request goes there natively (providers/openai_responses.py); a
    # provider's `config.responses_api` overrides this either way.
    responses_api: bool = False
    # The shape of its `POST /rerank` (providers/rerank_wire.py): "cohere" (Jina's too) or "voyage".
    rerank_shape: str = "cohere"
    # The fewest seconds one transcription or translation is billed for, however short its
    # audio (service/media.py holds and charges at least this).
    min_billed_seconds: int = 0


def _row(name: str, base_url: str, notes: str = "", **quirks: Any) -> tuple[str, Vendor]:
    return name, Vendor(name, base_url, notes=notes, **quirks)


VENDORS: Mapping[str, Vendor] = MappingProxyType(
    dict(
        [
            # OpenAI's own API serves /v1/responses for every model (platform.openai.com, Responses).
            _row("openai", "https://api.openai.com/v1", responses_api=True),
            # Mistral calls the seed `random_seed` and knows only `max_tokens` (LiteLLM mistral transformation).
            _row(
                "mistral",
                "https://api.mistral.ai/v1",
                rename=MappingProxyType({"seed": "random_seed"}),
                limit_field="max_tokens",
            ),
            # DeepSeek reports prompt_cache_hit_tokens / prompt_cache_miss_tokens (read by parse_usage);
            # its API documents only `max_tokens` (api-docs.deepseek.com, create chat completion).
            _row(
                "deepseek",
                "https://api.deepseek.com",
                notes="cache hit/miss usage fields",
                limit_field="max_tokens",
            ),
            # Groq rejects these with a 400 (console.groq.com/docs/openai); it takes
            # `max_completion_tokens` (`max_tokens` is its deprecated alias). Its speech-to-text
            # bills every request at least 10 seconds of audio ("Minimum billed length: 10
            # seconds", console.groq.com/docs/speech-text, audio file limitations).
            _row(
                "groq",
                "https://api.groq.com/openai/v1",
                refuse=frozenset({"logprobs", "top_logprobs", "logit_bias"}),
                min_billed_seconds=10,
            ),
            # xAI counts reasoning outside completion_tokens (recognised by parse_usage from total_tokens).
            _row("xai", "https://api.x.ai/v1", notes="reasoning tokens outside completion tokens"),
            # These document `max_tokens` as their output limit (their chat-completions references;
            # vLLM and Ollama servers older than OpenAI's rename ignore `max_completion_tokens`).
            _row("together", "https://api.together.xyz/v1", limit_field="max_tokens"),
            _row("fireworks", "https://api.fireworks.ai/inference/v1", limit_field="max_tokens"),
            _row("openrouter", "https://openrouter.ai/api/v1", limit_field="max_tokens"),
            # Rerank vendors (providers/rerank_wire.py): Jina answers in Cohere's shape; Voyage
            # takes `top_k` and answers `data` (docs.voyageai.com/reference/reranker-api).
            _row("jina", "https://api.jina.ai/v1", notes="rerank"),
            _row("voyage", "https://api.voyageai.com/v1", notes="rerank", rerank_shape="voyage"),
            # Cohere's rerank (docs.cohere.com/reference/rerank): its shape, billed in search units.
            _row("cohere", "https://api.cohere.com/v2", notes="rerank, priced per search unit"),
            _row("vllm", "http://127.0.0.1:8000/v1", notes="self-hosted", limit_field="max_tokens"),
            _row("ollama", "http://127.0.0.1:11434/v1", notes="self-hosted", limit_field="max_tokens"),
        ]
    )
)


def limit_field(vendor_name: str | None) -> str:
    """The output-limit field this vendor obeys; OpenAI's (no row: kinds openai and azure-openai)."""
    vendor = VENDORS.get(vendor_name or "")
    return vendor.limit_field if vendor is not None else "max_completion_tokens"


def rerank_shape(vendor_name: str | None) -> str:
    """The shape of this vendor's rerank API (Cohere's without a row)."""
    vendor = VENDORS.get(vendor_name or "")
    return vendor.rerank_shape if vendor is not None else "cohere"


def min_billed_seconds(vendor_name: str | None) -> int:
    """The fewest seconds this vendor bills one transcription for (none without a row)."""
    vendor = VENDORS.get(vendor_name or "")
    return vendor.min_billed_seconds if vendor is not None else 0


def apply_quirks(body: dict[str, Any], vendor_name: str | None) -> dict[str, Any]:
    """The body as this vendor wants it (a copy when anything changes)."""
    vendor = VENDORS.get(vendor_name or "")
    if vendor is None:
        return body
    for name in vendor.refuse:
        if body.get(name) not in (None, False):
            raise UnsupportedContent(f"{vendor.name} does not accept `{name}`")
    if not vendor.rename:
        return body
    out = dict(body)
    for ours, theirs in vendor.rename.items():
        if ours in out:
            value = out.pop(ours)
            out.setdefault(theirs, value)
    return out
