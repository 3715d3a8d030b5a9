"""`POST /v1/rerank` through the real gateway to the sim speaking Voyage's and Jina's rerank APIs:
each upstream gets its own shape, answers come back in one (Cohere's), every request is charged
exactly its provider-reported tokens at list price and never more than its hold (query tokens x
documents + document tokens, bounded by bytes); bad input is a 400 that reaches no provider."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from conftest import Gateway, Sim, new_gateway

VOYAGE = "voyage/rerank-2.5"  # bundled: 0.05 USD per 1M tokens
VOYAGE_PRICE = Decimal("0.05")
JINA = "jina/reranker-test"
JINA_PRICE = Decimal("0.02")
M = Decimal(10**6)
DOCS = [
    "Paris is the capital of France.",
    "Berlin is the capital of Germany.",
    "The capital of France has the Louvre.",
]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gw = new_gateway(tmp_path_factory.mktemp("rerank"), sim)
    secret = "sk-sim-rerank-" + secrets.token_hex(6)
    for name, vendor, url in (("voy", "voyage", f"{sim.url}/voyage/v1"), ("jin", "jina", f"{sim.url}/v1")):
        gw.cli("providers", "add", name, "--kind", "openai-compatible", "--vendor", vendor, "--base-url", url)
        gw.cli("providers", "add-key", name, "--label", "main", input=secret + "\n")
    gw.cli("models", "import", "--vendor", "voyage", "--provider", "voy")
    gw.start()
    made = gw.admin(
        "POST",
        "/models",
        {
            "id": JINA,
            "mode": "rerank",
            "context_length": 8192,
            "max_output": 0,
            "pricing": {"input": str(JINA_PRICE), "output": "0"},
            "deployments": [{"provider": "jin", "upstream_model": "jina-reranker-v2-base-multilingual"}],
        },
    )
    assert made.status_code == 201, made.text
    yield gw
    assert gw.verify()["ok"] is True
    assert gw.stop() == 0


def post(gw: Gateway, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/rerank", json=body, headers={"Authorization": f"Bearer {key}"})


def exact(response: httpx.Response) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(response.text, parse_float=Decimal)
    return found


def sim_tokens(query: str, documents: list[str]) -> int:
    """The sim's count (docs/simulator.md): words and punctuation, the query read with each document."""
    from nemorouter.sim.tokens import count_text_tokens

    return sum(count_text_tokens(query) + count_text_tokens(doc) for doc in documents)


def test_voyage_gets_its_own_shape_and_the_charge_is_its_tokens_at_list_price(gw: Gateway, sim: Sim) -> None:
    key = gw.key(gw.account("1.00"))
    query = "Paris capital of France"
    answer = post(
        gw, key, {"model": VOYAGE, "query": query, "documents": DOCS, "top_n": 2, "return_documents": True}
    )
    assert answer.status_code == 200, answer.text
    sent = sim.requests(1)[-1]
    assert sent["path"] == "/voyage/v1/rerank"
    assert (
        sent["body"]["top_k"] == 2 and "top_n" not in sent["body"] and sent["body"]["model"] == "rerank-2.5"
    )
    body = exact(answer)
    assert [r["index"] for r in body["results"]] == [0, 2]  # every query word, then two of three
    assert body["results"][0]["document"] == {"text": DOCS[0]}
    assert body["model"] == VOYAGE and body["id"] == answer.headers["x-nemo-request-id"]
    tokens = sim_tokens(query, DOCS)
    assert body["usage"]["prompt_tokens"] == tokens
    assert body["usage"]["cost"] == tokens * VOYAGE_PRICE / M == Decimal(answer.headers["x-nemo-cost"])


def test_jina_gets_cohere_shape_and_a_voyage_style_top_k_becomes_top_n(gw: Gateway, sim: Sim) -> None:
    account = gw.account("1.00")
    key = gw.key(account)
    documents = [{"text": "alpha beta"}, "gamma delta"]
    answer = post(gw, key, {"model": JINA, "query": "beta", "documents": documents, "top_k": 1})
    assert answer.status_code == 200, answer.text
    sent = sim.requests(1)[-1]
    assert sent["path"] == "/v1/rerank" and sent["body"]["top_n"] == 1 and "top_k" not in sent["body"]
    assert sent["body"]["documents"] == ["alpha beta", "gamma delta"]
    body = exact(answer)
    assert [r["index"] for r in body["results"]] == [0] and "document" not in body["results"][0]
    cost = sim_tokens("beta", ["alpha beta", "gamma delta"]) * JINA_PRICE / M
    assert body["usage"]["cost"] == cost
    assert Decimal(str(gw.balance(account)["total_usage"])) == cost


def test_a_rerank_that_cannot_fit_is_refused_with_what_its_bound_needs(gw: Gateway, sim: Sim) -> None:
    key = gw.key(gw.account("1.00"), limit="0.000001")
    query, documents = "q" * 100, ["d" * 1000] * 10
    before = len(sim.requests())
    refused = post(gw, key, {"model": VOYAGE, "query": query, "documents": documents})
    assert refused.status_code == 402, refused.text
    bound = 10 * (100 + 1000 + 8)  # each document read with the query, by bytes, plus framing
    assert exact(refused)["error"]["needed"] == bound * VOYAGE_PRICE / M
    assert len(sim.requests()) == before


def test_unknown_fields_pass_through_and_count_toward_the_hold_per_document(gw: Gateway, sim: Sim) -> None:
    key = gw.key(gw.account("1.00"), limit="0.000001")
    body = {"model": VOYAGE, "query": "q", "documents": ["d", "e"], "instruction": "x" * 50}
    refused = post(gw, key, body)
    assert refused.status_code == 402
    per_document = 1 + len(json.dumps("x" * 50)) + 1 + 8
    assert exact(refused)["error"]["needed"] == 2 * per_document * VOYAGE_PRICE / M


@pytest.mark.parametrize(
    "body",
    [
        {"model": VOYAGE, "documents": ["a"]},
        {"model": VOYAGE, "query": "", "documents": ["a"]},
        {"model": VOYAGE, "query": "q", "documents": []},
        {"model": VOYAGE, "query": "q", "documents": "a"},
        {"model": VOYAGE, "query": "q", "documents": ["a", 3]},
        {"model": VOYAGE, "query": "q", "documents": [{"text": ""}]},
        {"model": VOYAGE, "query": "q", "documents": [{"text": "a", "title": "b"}]},
        {"model": VOYAGE, "query": "q", "documents": ["a"] * 1001},
        {"model": VOYAGE, "query": "q", "documents": ["a"], "top_n": 0},
        {"model": VOYAGE, "query": "q", "documents": ["a"], "top_n": True},
        {"model": VOYAGE, "query": "q", "documents": ["a"], "return_documents": "yes"},
        {"query": "q", "documents": ["a"]},
    ],
)
def test_bad_input_is_a_clear_400_that_reaches_no_provider(
    gw: Gateway, sim: Sim, body: dict[str, Any]
) -> None:
    key = gw.key(gw.account("1.00"))
    before = len(sim.requests())
    refused = post(gw, key, body)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["type"] == "invalid_request"
    assert len(sim.requests()) == before


def test_a_provider_that_fails_or_answers_garbage_charges_nothing(gw: Gateway) -> None:
    account = gw.account("1.00")
    key = gw.key(account)
    failed = post(gw, key, {"model": VOYAGE, "query": "q [sim:status=500]", "documents": ["a"]})
    assert failed.status_code == 502, failed.text
    garbage = post(gw, key, {"model": JINA, "query": "q [sim:malformed=1]", "documents": ["a"]})
    assert garbage.status_code == 502, garbage.text
    balance = gw.balance(account)
    assert Decimal(str(balance["total_usage"])) == 0 and Decimal(str(balance["held"])) == 0


def test_models_serve_only_their_own_mode_and_list_as_rerank(gw: Gateway) -> None:
    key = gw.key(gw.account("1.00"))
    chat_model = post(gw, key, {"model": "openai/gpt-4o-mini", "query": "q", "documents": ["a"]})
    assert chat_model.status_code == 400 and "not a rerank model" in chat_model.json()["error"]["message"]
    listed = httpx.get(f"{gw.url}/v1/models/{VOYAGE}", headers={"Authorization": f"Bearer {key}"}).json()
    assert listed["architecture"]["modality"] == "text->rerank"
    assert Decimal(listed["pricing"]["prompt"]) == VOYAGE_PRICE / M
