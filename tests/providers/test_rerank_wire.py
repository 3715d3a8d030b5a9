"""The rerank wire of the OpenAI-shaped kinds: each vendor's request shape, and a provider's
answer read as untrusted input (providers/rerank_wire.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemorouter.providers.rerank_wire import rerank_request, rerank_response
from nemorouter.providers.types import Upstream

BODY = {"model": "ours/rr", "query": "q", "documents": ["a", "b"], "top_n": 1, "provider": {"sort": "price"}}


def sent(vendor: str | None) -> dict[str, Any]:
    upstream = Upstream("rr-1", "https://rr.example/v1/", "sk-x", config={"vendor": vendor} if vendor else {})
    request = rerank_request(dict(BODY), upstream)
    assert request.url == "https://rr.example/v1/rerank" and request.headers["Authorization"] == "Bearer sk-x"
    found: dict[str, Any] = orjson.loads(request.body)
    return found


def test_voyage_is_sent_top_k_and_others_top_n_without_gateway_fields() -> None:
    assert sent("voyage") == {"model": "rr-1", "query": "q", "documents": ["a", "b"], "top_k": 1}
    assert sent("jina") == sent(None) == {"model": "rr-1", "query": "q", "documents": ["a", "b"], "top_n": 1}


def test_both_answer_shapes_become_results_with_text_documents() -> None:
    voyage = rerank_response(
        {"data": [{"index": 1, "relevance_score": 0.5, "document": "b"}], "usage": {"total_tokens": 7}}
    )
    assert voyage.body == {"results": [{"index": 1, "relevance_score": 0.5, "document": {"text": "b"}}]}
    assert voyage.usage is not None and voyage.usage.prompt_tokens == 7
    jina = rerank_response({"results": [{"index": 0, "relevance_score": 1, "document": {"text": "a"}}]})
    assert jina.body["results"][0]["document"] == {"text": "a"} and jina.usage is None


@pytest.mark.parametrize(
    "answer",
    [
        None,
        [],
        {"results": "nope"},
        {"results": [1]},
        {"results": [{"index": -1, "relevance_score": 0.1}]},
        {"results": [{"index": True, "relevance_score": 0.1}]},
        {"results": [{"index": 0, "relevance_score": "high"}]},
    ],
)
def test_an_unreadable_answer_is_refused(answer: Any) -> None:
    with pytest.raises(ValueError):
        rerank_response(answer)


@pytest.mark.parametrize("usage", [{"total_tokens": -1}, {"total_tokens": 1.5}, {"total_tokens": "9"}])
def test_an_impossible_usage_is_unreadable_not_zero(usage: dict[str, Any]) -> None:
    answer = rerank_response({"results": [], "usage": usage})
    assert answer.usage is None and answer.raw_usage == usage


def test_cohere_bills_search_units_and_no_tokens() -> None:
    answer = rerank_response(
        {
            "id": "x",
            "results": [{"index": 1, "relevance_score": 0.9}],
            "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 3}},
        }
    )
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.units, answer.usage.unit) == (0, 3, "")
    assert answer.raw_usage == {"search_units": 3}


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_an_impossible_search_count_is_unreadable(bad: object) -> None:
    answer = rerank_response({"results": [], "meta": {"billed_units": {"search_units": bad}}})
    assert answer.usage is None and answer.raw_usage == {"search_units": bad}


@settings(max_examples=200, deadline=None, database=None)
@given(
    query=st.text(min_size=1, max_size=700),
    documents=st.lists(st.text(min_size=1, max_size=3000), min_size=1, max_size=250),
)
def test_the_search_unit_bound_is_never_below_what_a_provider_can_bill(
    query: str, documents: list[str]
) -> None:
    # The sim bills by Cohere's published rule with its own tokenizer (a token is at least a byte).
    from nemorouter.providers.bounds import rerank_search_units
    from nemorouter.sim.rerank import search_units

    assert rerank_search_units({"query": query, "documents": documents}) >= search_units(query, documents)
