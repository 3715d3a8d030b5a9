"""`POST /v1/moderations` through the real gateway, with the official `openai` SDK, to the sim
speaking OpenAI: OpenAI's free moderation model stays free and is still counted; a model the
operator prices is charged exactly what its counted prompt costs, never more than its hold; bad
input is a clear 400 that reaches no provider; a failed provider charges nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from conftest import Gateway, Sim, new_gateway

FREE = "openai/omni-moderation-latest"
PRICED = "acme/moderation-priced"
PRICE_IN = Decimal("2.5")  # USD per 1M input tokens, the operator's own price for PRICED
M = Decimal(10**6)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gw = new_gateway(tmp_path_factory.mktemp("moderations"), sim)
    gw.start()
    made = gw.admin(
        "POST",
        "/models",
        {
            "id": PRICED,
            "mode": "moderation",
            "context_length": 32768,
            "max_output": 0,
            "pricing": {"input": str(PRICE_IN), "output": "0"},
            "deployments": [{"provider": "sim", "upstream_model": "omni-moderation-latest"}],
        },
    )
    assert made.status_code == 201, made.text
    yield gw
    assert gw.verify()["ok"] is True
    assert gw.stop() == 0


def record(gw: Gateway, key: str, request_id: str) -> dict[str, Any]:
    found = httpx.get(
        f"{gw.url}/v1/generation", params={"id": request_id}, headers={"Authorization": f"Bearer {key}"}
    )
    assert found.status_code == 200, found.text
    data: dict[str, Any] = json.loads(found.text, parse_float=Decimal)["data"]
    return data


def spent(gw: Gateway, account: str) -> Decimal:
    balance = gw.balance(account)
    return Decimal("5.00") - Decimal(str(balance["balance"]))


def test_the_sdk_parses_a_free_moderation_that_is_still_counted(gw: Gateway, sim: Sim) -> None:
    account = gw.account("5.00")
    key = gw.key(account)
    client = gw.openai(key)
    raw = client.moderations.with_raw_response.create(input="A calm sentence about gardening.")
    answer = raw.parse()
    assert answer.model == FREE
    assert len(answer.results) == 1 and answer.results[0].flagged is False
    assert answer.results[0].category_scores.violence < 0.01
    assert Decimal(raw.headers["x-nemo-cost"]) == 0
    sent = sim.requests(1)[-1]
    assert sent["path"] == "/v1/moderations" and sent["body"]["model"] == "omni-moderation-latest"
    gen = record(gw, key, raw.headers["x-nemo-request-id"])
    assert gen["endpoint"] == "moderations" and gen["status"] == "success"
    assert gen["model"] == FREE and gen["total_cost"] == 0
    assert gen["tokens"]["prompt"] > 0  # counted by the tokenizer, though OpenAI reports no usage
    assert spent(gw, account) == 0


def test_flags_lists_and_multimodal_parts_come_back_as_the_sim_classified_them(gw: Gateway) -> None:
    client = gw.openai(gw.key(gw.account("1.00")))
    flagged = client.moderations.create(model=FREE, input="This one says [flag:violence] plainly.")
    assert flagged.results[0].flagged is True and flagged.results[0].categories.violence is True
    many = client.moderations.create(model=FREE, input=["first text", "second [flag:hate] text"])
    assert [r.flagged for r in many.results] == [False, True]
    parts = client.moderations.create(
        model=FREE,
        input=[
            {"type": "text", "text": "A picture of a cat."},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ],
    )
    assert len(parts.results) == 1 and parts.results[0].flagged is False


def test_a_priced_moderation_model_is_charged_its_counted_prompt_exactly(gw: Gateway) -> None:
    account = gw.account("5.00")
    key = gw.key(account)
    raw = gw.openai(key).moderations.with_raw_response.create(
        model=PRICED, input="Price me by my tokens, please."
    )
    raw.parse()
    gen = record(gw, key, raw.headers["x-nemo-request-id"])
    prompt = gen["tokens"]["prompt"]
    expected = prompt * PRICE_IN / M
    assert 0 < prompt <= len("Price me by my tokens, please.") + 8  # never above the byte bound
    assert gen["total_cost"] == expected == Decimal(raw.headers["x-nemo-cost"])
    assert spent(gw, account) == expected


def test_a_moderation_that_cannot_fit_is_refused_with_what_it_needs(gw: Gateway, sim: Sim) -> None:
    key = gw.key(gw.account("5.00"), limit="0.000001")
    text = "x" * 2000  # bound 2,008 tokens at 2.5 USD per 1M: 0.00502 USD held
    before = len(sim.requests())
    refused = httpx.post(
        f"{gw.url}/v1/moderations",
        json={"model": PRICED, "input": text},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert refused.status_code == 402, refused.text
    error = json.loads(refused.text, parse_float=Decimal)["error"]
    assert error["needed"] == (2000 + 8) * PRICE_IN / M and error["available"] == Decimal("0.000001")
    assert len(sim.requests()) == before  # nothing reached the provider


@pytest.mark.parametrize(
    "body",
    [
        {"model": FREE},
        {"model": FREE, "input": ""},
        {"model": FREE, "input": []},
        {"model": FREE, "input": [1, 2]},
        {"model": FREE, "input": [{"type": "audio", "audio": "x"}]},
        {"model": FREE, "input": ["ok", {"type": "text", "text": "mixed"}]},
        {"model": FREE, "input": "x" * 10, "provider": {"sort": "nonsense"}},
        {"model": 7, "input": "x"},
    ],
)
def test_bad_input_is_a_clear_400_that_reaches_no_provider(
    gw: Gateway, sim: Sim, body: dict[str, Any]
) -> None:
    key = gw.key(gw.account("1.00"))
    before = len(sim.requests())
    refused = httpx.post(f"{gw.url}/v1/moderations", json=body, headers={"Authorization": f"Bearer {key}"})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["type"] == "invalid_request"
    assert len(sim.requests()) == before


def test_models_serve_only_their_own_mode(gw: Gateway) -> None:
    key = gw.key(gw.account("1.00"))
    headers = {"Authorization": f"Bearer {key}"}
    chat_model = httpx.post(
        f"{gw.url}/v1/moderations", json={"model": "openai/gpt-4o-mini", "input": "x"}, headers=headers
    )
    assert chat_model.status_code == 400 and "not a moderation model" in chat_model.json()["error"]["message"]
    as_chat = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json={"model": FREE, "messages": [{"role": "user", "content": "hi"}]},
        headers=headers,
    )
    assert as_chat.status_code == 400 and "is a moderation model" in as_chat.json()["error"]["message"]
    listed = httpx.get(f"{gw.url}/v1/models/{FREE}", headers=headers).json()
    assert listed["architecture"]["modality"] == "text+image->moderation"
    assert listed["pricing"]["prompt"] == "0"


def test_a_failed_provider_charges_nothing(gw: Gateway) -> None:
    account = gw.account("5.00")
    key = gw.key(account)
    with pytest.raises(openai.InternalServerError):
        gw.openai(key).moderations.create(model=PRICED, input="Fail upstream. [sim:status=500]")
    with pytest.raises(openai.APIStatusError):
        gw.openai(key).moderations.create(model=PRICED, input="Unreadable answer. [sim:malformed=1]")
    assert spent(gw, account) == 0
    assert gw.balance(account)["held"] in (0, "0", "0.00")


def test_the_sim_answers_the_sdk_directly(sim: Sim, tmp_path: Path) -> None:
    """The sim's moderation answer is what the official SDK parses (its fidelity, without the gateway)."""
    client = openai.OpenAI(base_url=f"{sim.url}/v1", api_key="sk-sim-direct", max_retries=0)
    answer = client.moderations.create(input=["plain", "[flag:self-harm/intent] text"])
    assert answer.model == "omni-moderation-latest"
    assert answer.results[1].categories.self_harm_intent is True
    assert answer.results[0].category_applied_input_types.violence == ["text", "image"]
