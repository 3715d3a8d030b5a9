"""The official `openai` SDK against the running gateway: exact costs, exact balances, a clean ledger."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx

from conftest import Gateway, Sim

# The bundled list price of openai/gpt-4o-mini, USD per 1M tokens (src/nemorouter/data/catalog.csv).
INPUT_PER_M = Decimal("0.15")
OUTPUT_PER_M = Decimal("0.6")


def expected_cost(prompt: int, completion: int, cached: int = 0) -> Decimal:
    cached_rate = Decimal("0.075")
    return ((prompt - cached) * INPUT_PER_M + cached * cached_rate + completion * OUTPUT_PER_M) / 10**6


def raw_usage(response: Any) -> dict[str, Any]:
    """The usage object as sent on the wire (with `cost` as an exact decimal)."""
    return json.loads(response.http_response.text, parse_float=Decimal)["usage"]


def test_chat_non_stream_charges_exact_cost(gateway: Gateway) -> None:
    account = gateway.account("5.00")
    key = gateway.key(account)
    client = gateway.openai(key)
    raw = client.chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "Hello there, how are you?"}]
    )
    reply = raw.parse()
    usage = json.loads(raw.http_response.text, parse_float=Decimal)["usage"]
    assert reply.choices[0].message.content
    assert reply.model == "openai/gpt-4o-mini"
    cost = expected_cost(usage["prompt_tokens"], usage["completion_tokens"])
    assert usage["cost"] == cost
    assert Decimal(raw.headers["x-nemo-cost"]) == cost
    assert raw.headers["x-nemo-request-id"] == reply.id
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 0}
    balance = gateway.balance(account)
    assert Decimal(str(balance["total_usage"])) == cost
    assert Decimal(str(balance["balance"])) == Decimal("5") - cost
    assert balance["held"] == 0
    assert gateway.verify()["ok"] is True
