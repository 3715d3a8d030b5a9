"""The OpenAI front door, purely: a Chat Completions or Embeddings body -> the canonical request,
with the fields the gateway reads taken out once, and a clear 400 for what it must understand."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nemorouter.errors import InvalidRequest
from nemorouter.frontdoors.openai_chat import parse_chat, parse_embeddings
from nemorouter.money import parse_per_million
from nemorouter.providers.canonical import ChatRequest, ProviderPrefs

HI = [{"role": "user", "content": "hi"}]


def chat(**fields: Any) -> ChatRequest:
    return parse_chat(json.dumps({"model": "a/m", "messages": HI, **fields}).encode())


def test_a_plain_body_is_one_model_no_stream_one_choice_no_limit() -> None:
    request = chat()
    assert request.body == {"model": "a/m", "messages": HI}
    assert (request.model_ids, request.stream, request.n) == (["a/m"], False, 1)
    assert (request.max_output, request.prefs, request.stop) == (None, None, ())


def test_the_fields_the_gateway_reads() -> None:
    request = chat(
        models=["b/m", "a/m", "c/m", "b/m"],
        stream=True,
        n=3,
        max_tokens=90,
        max_completion_tokens=40,
        stop=["END", "\n\n"],
        temperature=0.2,
    )
    assert request.model_ids == ["a/m", "b/m", "c/m"]  # the model first, each fallback once
    assert (request.stream, request.n, request.max_output) == (True, 3, 40)  # the smallest limit
    assert request.stop == ("END", "\n\n")
    assert request.body["temperature"] == 0.2  # everything else passes through untouched


def test_fallbacks_alone_name_the_models() -> None:
    request = parse_chat(json.dumps({"models": ["x/1", "y/2"], "messages": HI}).encode())
    assert request.model_ids == ["x/1", "y/2"]


@pytest.mark.parametrize(("stop", "sequences"), [("END", ("END",)), (None, ()), (7, ()), (["a", 1], ("a",))])
def test_stop_sequences_are_read_never_refused(stop: Any, sequences: tuple[str, ...]) -> None:
    """`stop` is the provider's to judge; the door only reports the text ones it can match."""
    request = chat(stop=stop)
    assert request.stop == sequences and request.body["stop"] == stop


def test_provider_preferences() -> None:
    prefs = chat(
        provider={
            "order": ["b", "a"],
            "allow_fallbacks": False,
            "only": ["a", "b"],
            "ignore": ["c"],
            "sort": "price",
            "max_price": {"prompt": 1, "completion": "2.5"},
        }
    ).prefs
    assert prefs == ProviderPrefs(
        order=("b", "a"),
        allow_fallbacks=False,
        only=frozenset({"a", "b"}),
        ignore=frozenset({"c"}),
        sort="price",
        max_prompt=parse_per_million("1"),
        max_completion=parse_per_million("2.5"),
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty"),
        (b"{", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b"[" * 200 + b"]" * 200, "deep"),
        (json.dumps({"messages": HI}).encode(), "`model` is required"),
        (json.dumps({"model": "", "messages": HI}).encode(), "non-empty string"),
        (json.dumps({"model": "m", "models": "x", "messages": HI}).encode(), "`models`"),
        (json.dumps({"model": "m", "messages": []}).encode(), "`messages` must be a non-empty list"),
        (json.dumps({"model": "m", "messages": [{"role": "robot"}]}).encode(), "messages\\[0\\].role"),
        (json.dumps({"model": "m", "messages": [{"role": ["user"]}]}).encode(), "messages\\[0\\].role"),
        (json.dumps({"model": "m", "messages": [{"role": "user", "content": 1}]}).encode(), "content"),
        (json.dumps({"model": "m", "messages": HI, "stream": "yes"}).encode(), "`stream`"),
        (json.dumps({"model": "m", "messages": HI, "stream_options": 1}).encode(), "`stream_options`"),
        (json.dumps({"model": "m", "messages": HI, "n": 129}).encode(), "`n` must be at most 128"),
        (json.dumps({"model": "m", "messages": HI, "tools": {}}).encode(), "`tools`"),
        (json.dumps({"model": "m", "messages": HI, "provider": []}).encode(), "`provider` must be"),
        (json.dumps({"model": "m", "messages": HI, "provider": {"x": 1}}).encode(), "unknown `provider`"),
        (json.dumps({"model": "m", "messages": HI, "provider": {"sort": "size"}}).encode(), "sort"),
        (
            json.dumps({"model": "m", "messages": HI, "provider": {"max_price": {"prompt": True}}}).encode(),
            "max_price.prompt",
        ),
    ],
)
def test_what_the_gateway_must_understand_is_checked(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_chat(raw)


def test_embeddings() -> None:
    request = parse_embeddings(
        json.dumps(
            {"model": "e/m", "input": ["a", "b"], "dimensions": 8, "provider": {"sort": "latency"}}
        ).encode()
    )
    assert (request.model_ids, request.body["input"]) == (["e/m"], ["a", "b"])
    assert request.prefs == ProviderPrefs(sort="latency")
    assert parse_embeddings(b'{"model": "e/m", "input": [[1, 2], [3]]}').prefs is None


@pytest.mark.parametrize("value", ["", [], [""], ["a", 1], [[]], [True], {"a": 1}, None])
def test_embeddings_input_must_be_text_or_tokens(value: Any) -> None:
    with pytest.raises(InvalidRequest, match="`input`"):
        parse_embeddings(json.dumps({"model": "e/m", "input": value}).encode())


def test_embeddings_dimensions_must_be_positive() -> None:
    with pytest.raises(InvalidRequest, match="`dimensions`"):
        parse_embeddings(b'{"model": "e/m", "input": "a", "dimensions": 0}')


@pytest.mark.parametrize("tier", ["priority", "flex", "scale", "", 1, ["priority"]])
def test_a_service_tier_priced_apart_from_the_list_is_refused(tier: Any) -> None:
    """OpenAI bills `priority` above its list price (and `flex` below): the hold and the charge
    price the standard tier only, so anything else is a 400 rather than the operator's loss."""
    with pytest.raises(InvalidRequest, match="service_tier"):
        chat(service_tier=tier)


@pytest.mark.parametrize("tier", ["auto", "default", None])
def test_the_standard_service_tiers_pass_through(tier: Any) -> None:
    assert chat(service_tier=tier).body.get("service_tier") == tier
