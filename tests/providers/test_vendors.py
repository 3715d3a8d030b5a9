"""OpenAI-compatible vendors as data rows: request quirks, and usage conventions read from the usage."""

from __future__ import annotations

from urllib.parse import urlparse

import orjson
import pytest

from nemorouter.money import Usage
from nemorouter.providers import openai_wire
from nemorouter.providers.types import UnsupportedContent, Upstream
from nemorouter.providers.vendors import VENDORS, apply_quirks


def test_every_row_has_a_usable_base_url() -> None:
    for name, vendor in VENDORS.items():
        parsed = urlparse(vendor.base_url)
        assert vendor.name == name
        assert parsed.scheme == "https" or parsed.hostname == "127.0.0.1", name


def test_mistral_renames_seed_and_max_completion_tokens() -> None:
    upstream = Upstream(
        "mistral-large-latest", "https://api.mistral.ai/v1", "k", config={"vendor": "mistral"}
    )
    body = {"model": "x", "messages": [], "seed": 7, "max_completion_tokens": 20}
    sent = openai_wire.chat_request(body, upstream)
    out = orjson.loads(sent.body)
    assert out["random_seed"] == 7 and out["max_tokens"] == 20
    assert "seed" not in out and "max_completion_tokens" not in out


def test_groq_refuses_what_it_would_answer_with_a_400() -> None:
    with pytest.raises(UnsupportedContent, match="logprobs"):
        apply_quirks({"logprobs": True}, "groq")
    assert apply_quirks({"logprobs": False, "messages": []}, "groq") == {"logprobs": False, "messages": []}


def test_unknown_or_plain_vendors_change_nothing() -> None:
    body = {"seed": 1}
    assert apply_quirks(body, None) is body
    assert apply_quirks(body, "together") is body


def test_openai_usage_keeps_reasoning_inside_completion() -> None:
    raw = {
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "total_tokens": 150,
        "prompt_tokens_details": {"cached_tokens": 40},
        "completion_tokens_details": {"reasoning_tokens": 30},
    }
    assert openai_wire.parse_usage(raw) == Usage(
        prompt_tokens=100, completion_tokens=50, cached_tokens=40, reasoning_tokens=30
    )


def test_xai_reasoning_outside_completion_is_added_to_it() -> None:
    # xAI: completion_tokens excludes reasoning; total_tokens is the sum of all three.
    raw = {
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "total_tokens": 150,
        "completion_tokens_details": {"reasoning_tokens": 30},
    }
    usage = openai_wire.parse_usage(raw)
    assert usage.completion_tokens == 50 and usage.reasoning_tokens == 30


def test_deepseek_cache_hits_are_cached_tokens() -> None:
    raw = {
        "prompt_tokens": 1000,
        "completion_tokens": 10,
        "total_tokens": 1010,
        "prompt_cache_hit_tokens": 800,
        "prompt_cache_miss_tokens": 200,
    }
    usage = openai_wire.parse_usage(raw)
    assert usage.cached_tokens == 800 and usage.prompt_tokens == 1000
