"""Cohere's rerank, priced per search unit (a unit, not tokens: docs/money-trail.md "Units"),
through the real gateway to the sim speaking Cohere's v2 API: each request is held at the most
search units its documents can make, charged the units Cohere bills (never more than held), and
the unit shows on the record, in /v1/models, on the statement (JSON and CSV) and in the
operator's reconciliation."""

from __future__ import annotations

import csv
import io
import json
import math
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Gateway, Sim, new_gateway

COHERE = "cohere/rerank-v3.5"  # bundled: 2 USD per 1,000 searches
PER_SEARCH = Decimal("0.002")


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gw = new_gateway(tmp_path_factory.mktemp("search-units"), sim)
    gw.cli(
        "providers",
        "add",
        "co",
        "--kind",
        "openai-compatible",
        "--vendor",
        "cohere",
        "--base-url",
        f"{sim.url}/cohere/v2",
    )
    gw.cli(
        "providers", "add-key", "co", "--label", "main", input="sk-sim-cohere-" + secrets.token_hex(6) + "\n"
    )
    gw.cli("models", "import", "--vendor", "cohere", "--provider", "co")
    gw.start()
    yield gw
    assert gw.verify()["ok"] is True
    assert gw.stop() == 0


def post(gw: Gateway, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{gw.url}/v1/rerank", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def exact(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


def record(gw: Gateway, key: str, request_id: str) -> dict[str, Any]:
    found = httpx.get(
        f"{gw.url}/v1/generation", params={"id": request_id}, headers={"Authorization": f"Bearer {key}"}
    )
    assert found.status_code == 200, found.text
    data: dict[str, Any] = exact(found.text)["data"]
    return data


def test_a_search_is_charged_its_billed_units_at_list_price_and_recorded_as_such(
    gw: Gateway, sim: Sim
) -> None:
    account = gw.account("1.00")
    key = gw.key(account)
    answer = post(
        gw, key, {"model": COHERE, "query": "capital of France", "documents": ["Paris", "Berlin", "Rome"]}
    )
    assert answer.status_code == 200, answer.text
    sent = sim.requests(1)[-1]
    assert sent["path"] == "/cohere/v2/rerank" and sent["body"]["model"] == "rerank-v3.5"
    body = exact(answer.text)
    assert sorted(r["index"] for r in body["results"]) == [0, 1, 2]
    assert body["usage"]["cost"] == PER_SEARCH == Decimal(answer.headers["x-nemo-cost"])
    seen = record(gw, key, answer.headers["x-nemo-request-id"])
    assert (seen["unit"], seen["units"], seen["total_cost"]) == ("search", 1, PER_SEARCH)
    assert Decimal(str(gw.balance(account)["total_usage"])) == PER_SEARCH


def test_more_than_100_documents_are_more_searches(gw: Gateway, sim: Sim) -> None:
    key = gw.key(gw.account("1.00"))
    documents = [f"document number {i}" for i in range(250)]
    answer = post(gw, key, {"model": COHERE, "query": "number 7", "documents": documents, "top_n": 3})
    assert answer.status_code == 200, answer.text
    assert len(exact(answer.text)["results"]) == 3
    assert exact(answer.text)["usage"]["cost"] == 3 * PER_SEARCH  # 250 documents: 3 searches


def test_a_provider_billing_more_searches_than_the_documents_make_is_charged_at_most_the_hold(
    gw: Gateway, sim: Sim
) -> None:
    account = gw.account("1.00")
    key = gw.key(account)
    answer = post(
        gw, key, {"model": COHERE, "query": "q [sim:report_prompt=1000000]", "documents": ["a", "b"]}
    )
    assert answer.status_code == 200, answer.text
    seen = record(gw, key, answer.headers["x-nemo-request-id"])
    assert seen["units"] == 1 and seen["total_cost"] == PER_SEARCH  # held: 2 short documents, 1 search
    assert Decimal(str(gw.balance(account)["total_usage"])) == PER_SEARCH
    month = datetime.now(UTC).strftime("%Y-%m")
    found = exact(gw.admin("GET", f"/reconciliation?provider=co&month={month}").text)["overruns"]
    # the provider's excess is the operator's: 999,999 searches beyond the one held
    assert sum(o["overrun"] for o in found) >= 999_999 * PER_SEARCH


def test_an_unreadable_search_count_is_billed_the_units_held(gw: Gateway) -> None:
    key = gw.key(gw.account("1.00"))
    answer = post(gw, key, {"model": COHERE, "query": "q [sim:bad_prompt=float]", "documents": ["a"]})
    assert answer.status_code == 200, answer.text
    seen = record(gw, key, answer.headers["x-nemo-request-id"])
    assert (seen["unit"], seen["units"], seen["total_cost"]) == ("search", 1, PER_SEARCH)


def test_the_hold_counts_every_chunk_a_long_document_can_make_and_refuses_what_cannot_fit(
    gw: Gateway, sim: Sim
) -> None:
    # 120 documents of 2,000 bytes, a 10-byte query: each document may be ceil(2000 / 500) = 4
    # chunks of 510 tokens with the query (a token is at least a byte): 480 chunks, 5 searches.
    key = gw.key(gw.account("1.00"), limit="0.009")
    documents = ["x" * 2000] * 120
    before = len(sim.requests())
    refused = post(gw, key, {"model": COHERE, "query": "q" * 10, "documents": documents})
    assert refused.status_code == 402, refused.text
    error = exact(refused.text)["error"]
    assert error["needed"] == math.ceil(120 * math.ceil(2000 / 500) / 100) * PER_SEARCH == Decimal("0.010")
    assert error["available"] == Decimal("0.009") and "max_tokens" not in error["message"]
    assert len(sim.requests()) == before


def test_models_statement_and_reconciliation_show_search_units(gw: Gateway, tmp_path: Path) -> None:
    account = gw.account("1.00")
    key = gw.key(account)
    for documents in (["a"], [f"d{i}" for i in range(101)]):
        assert post(gw, key, {"model": COHERE, "query": "q", "documents": documents}).status_code == 200
    listed = exact(httpx.get(f"{gw.url}/v1/models/{COHERE}").text)
    assert listed["pricing"]["units"] == {"search": "0.002"} and listed["pricing"]["prompt"] == "0"

    management = gw.management_key(account)
    month = datetime.now(UTC).strftime("%Y-%m")
    headers = {"Authorization": f"Bearer {management}"}
    statement = httpx.get(f"{gw.url}/v1/statements/{month}", headers=headers)
    assert statement.status_code == 200, statement.text
    lines = exact(statement.text)["data"]["lines"]
    assert [(x["model"], x["unit"], x["units"], x["unit_price"], x["cost"]) for x in lines] == [
        (COHERE, "search", 3, PER_SEARCH, 3 * PER_SEARCH)
    ]
    as_csv = httpx.get(f"{gw.url}/v1/statements/{month}", params={"format": "csv"}, headers=headers)
    rows = [r for r in csv.DictReader(io.StringIO(as_csv.text)) if r["type"] == "usage"]
    assert [(r["unit"], r["units"], r["unit_price"], r["amount"]) for r in rows] == [
        ("search", "3", "0.002", "0.006")
    ]

    ours = gw.admin("GET", f"/reconciliation?provider=co&month={month}")
    assert ours.status_code == 200, ours.text
    invoice = tmp_path / "invoice.csv"
    invoice.write_text("date,model,category,tokens,amount\n")
    report = gw.cli_json("reconcile", "--provider", "co", "--month", month, "--invoice", str(invoice))
    searches = [d for d in report["differences"] if d["category"] == "search"]
    assert searches and all(d["model"] == "rerank-v3.5" and d["theirs"] is None for d in searches)
    # the invoice's own search lines are read as such: the same lines make no difference
    invoice.write_text(
        "date,model,category,tokens,amount\n"
        + "".join(
            f"{d['date']},{d['model']},search,{d['ours']['tokens']},{d['ours']['amount']}\n" for d in searches
        )
    )
    again = gw.cli_json("reconcile", "--provider", "co", "--month", month, "--invoice", str(invoice))
    assert not [d for d in again["differences"] if d["category"] == "search"], again
