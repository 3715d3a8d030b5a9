"""One output limit per request, sent in the one field each wire format and vendor row obeys."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nemorouter.providers import anthropic, azure, gemini, openai_wire
from nemorouter.providers.output_limit import OUTPUT_LIMIT_FIELDS, output_limit, requested_limit
from nemorouter.providers.types import Upstream, UpstreamRequest
from nemorouter.providers.vendors import VENDORS

HI = [{"role": "user", "content": "Hi"}]
MODEL_MAX = 16_384


def upstream(vendor: str | None = None) -> Upstream:
    config = {"vendor": vendor} if vendor else {}
    return Upstream(model="m", base_url="http://sim/v1", secret="sk-x", max_output=MODEL_MAX, config=config)


def sent(request: UpstreamRequest) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(request.body)
    return body


def limits_in(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k in OUTPUT_LIMIT_FIELDS}


def test_the_smallest_limit_field_wins_and_extras_only_lower_it() -> None:
    assert requested_limit({"max_completion_tokens": 1, "max_tokens": 200_000}) == 1
    assert requested_limit({"max_tokens": 7, "max_completion_tokens": 9}) == 7
    assert requested_limit({"max_output_tokens": 5, "max_tokens": 50}) == 5
    assert requested_limit({"max_new_tokens": 3, "max_completion_tokens": 4}) == 3
    assert requested_limit({"messages": HI}) is None
    assert requested_limit({"max_tokens": True}) is None  # a bool is not a limit (validated as 400)
    assert output_limit({"messages": HI}, MODEL_MAX) == MODEL_MAX
    assert output_limit({"max_tokens": 10}, MODEL_MAX) == 10


@pytest.mark.parametrize("vendor", [None, *VENDORS])
def test_every_openai_wire_row_gets_exactly_the_held_limit_once(vendor: str | None) -> None:
    tricky = {"messages": HI, "max_completion_tokens": 1, "max_tokens": 200_000, "max_output_tokens": 9}
    body = sent(openai_wire.chat_request(tricky, upstream(vendor)))
    field = VENDORS[vendor].limit_field if vendor else "max_completion_tokens"
    assert limits_in(body) == {field: 1}


@pytest.mark.parametrize("vendor", [None, *VENDORS])
def test_no_limit_sends_the_model_max(vendor: str | None) -> None:
    body = sent(openai_wire.chat_request({"messages": HI}, upstream(vendor)))
    assert list(limits_in(body).values()) == [MODEL_MAX]


def test_renaming_vendors_take_max_tokens_and_openai_max_completion_tokens() -> None:
    # Mistral renames the field: the trick of issue 20 (hold from 1, upstream obeys 200000).
    mistral = sent(
        openai_wire.chat_request(
            {"messages": HI, "max_completion_tokens": 1, "max_tokens": 200_000}, upstream("mistral")
        )
    )
    assert mistral["max_tokens"] == 1 and "max_completion_tokens" not in mistral
    # OpenAI refuses both fields together, and its o-series refuse max_tokens.
    plain = sent(openai_wire.chat_request({"messages": HI, "max_tokens": 30}, upstream()))
    assert plain["max_completion_tokens"] == 30 and "max_tokens" not in plain


def test_azure_sends_max_completion_tokens() -> None:
    up = Upstream(model="dep", base_url="https://x.openai.azure.com", secret="k", max_output=MODEL_MAX)
    body = sent(azure.chat_request({"messages": HI, "max_tokens": 300, "max_completion_tokens": 12}, up))
    assert limits_in(body) == {"max_completion_tokens": 12}
    assert limits_in(sent(azure.chat_request({"messages": HI}, up))) == {"max_completion_tokens": MODEL_MAX}


def test_anthropic_max_tokens_is_the_limit_and_thinking_stays_below_it() -> None:
    up = Upstream(model="claude", base_url="https://api.anthropic.com", secret="k", max_output=64_000)
    body = sent(
        anthropic.chat_request({"messages": HI, "max_completion_tokens": 2000, "max_tokens": 90_000}, up)
    )
    assert body["max_tokens"] == 2000 and limits_in(body) == {"max_tokens": 2000}
    thinking = sent(
        anthropic.chat_request({"messages": HI, "max_tokens": 5000, "reasoning_effort": "high"}, up)
    )
    assert thinking["max_tokens"] == 5000 and thinking["thinking"]["budget_tokens"] == 4999
    assert sent(anthropic.chat_request({"messages": HI}, up))["max_tokens"] == 64_000


def test_gemini_max_output_tokens_always_sent_and_thinking_budget_bounded() -> None:
    up = Upstream(model="gemini-2.5-flash", base_url="http://sim", secret="k", max_output=65_536)
    body = sent(gemini.chat_request({"messages": HI, "max_completion_tokens": 1, "max_tokens": 200_000}, up))
    assert body["generationConfig"] == {"maxOutputTokens": 1}
    assert sent(gemini.chat_request({"messages": HI}, up))["generationConfig"] == {"maxOutputTokens": 65_536}
    thinking = sent(gemini.chat_request({"messages": HI, "max_tokens": 100, "reasoning_effort": "high"}, up))
    assert thinking["generationConfig"] == {"maxOutputTokens": 100, "thinkingConfig": {"thinkingBudget": 100}}
