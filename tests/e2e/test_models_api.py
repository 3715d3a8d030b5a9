"""`/v1/models` as the SDKs type it: OpenAI's `Model` on every item, one model by an id with `/`,
Anthropic's shape and paging when the request says `anthropic-version`."""

from __future__ import annotations

from datetime import datetime

import anthropic
import httpx
import openai
import pytest
from openai.types import Model

from conftest import Gateway

ANTHROPIC = {"anthropic-version": "2023-06-01"}


def test_every_item_validates_strictly_as_the_openai_sdk_model(gateway: Gateway) -> None:
    items = httpx.get(f"{gateway.url}/v1/models").json()["data"]
    assert len(items) > 3
    for item in items:
        model = Model.model_validate(item, strict=True)
        assert model.object == "model"
        assert model.owned_by == item["id"].split("/", 1)[0]
        assert 1_700_000_000 < model.created <= datetime.now().timestamp() + 1


def test_openai_sdk_lists_and_retrieves_an_id_with_a_slash(gateway: Gateway) -> None:
    client = gateway.openai("sk-nemo-unused")
    listed = {m.id: m for m in client.models.list()}
    assert "openai/gpt-4o-mini" in listed
    one = client.models.retrieve("openai/gpt-4o-mini")
    assert one.id == "openai/gpt-4o-mini"
    assert one.created == listed["openai/gpt-4o-mini"].created
    with pytest.raises(openai.NotFoundError) as refused:
        client.models.retrieve("openai/no-such-model")
    assert refused.value.response.json()["error"]["type"] == "model_not_found"


def test_anthropic_sdk_gets_its_own_shape(gateway: Gateway) -> None:
    client = anthropic.Anthropic(base_url=gateway.url, api_key="sk-nemo-unused", max_retries=0)
    listed = list(client.models.list(limit=3))  # the SDK follows `has_more`/`last_id` page by page
    every = httpx.get(f"{gateway.url}/v1/models").json()["data"]
    assert [m.id for m in listed] == [m["id"] for m in every]
    one = client.models.retrieve("openai/gpt-4o-mini")
    assert one.type == "model" and one.id == "openai/gpt-4o-mini"
    assert one.display_name == "gpt-4o-mini"
    assert one.created_at.tzinfo is not None
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("openai/no-such-model")


def test_anthropic_paging_forward_and_back(gateway: Gateway) -> None:
    ids = [m["id"] for m in httpx.get(f"{gateway.url}/v1/models").json()["data"]]
    first = httpx.get(f"{gateway.url}/v1/models", params={"limit": 2}, headers=ANTHROPIC).json()
    assert set(first) == {"data", "has_more", "first_id", "last_id"}
    assert [m["id"] for m in first["data"]] == ids[:2]
    assert first["has_more"] is True and first["first_id"] == ids[0] and first["last_id"] == ids[1]
    assert all(set(m) == {"type", "id", "display_name", "created_at"} for m in first["data"])
    datetime.fromisoformat(first["data"][0]["created_at"])
    after = httpx.get(
        f"{gateway.url}/v1/models", params={"limit": 2, "after_id": ids[1]}, headers=ANTHROPIC
    ).json()
    assert [m["id"] for m in after["data"]] == ids[2:4]
    before = httpx.get(
        f"{gateway.url}/v1/models", params={"limit": 5, "before_id": ids[2]}, headers=ANTHROPIC
    ).json()
    assert [m["id"] for m in before["data"]] == ids[:2] and before["has_more"] is False
    last = httpx.get(
        f"{gateway.url}/v1/models", params={"limit": 1000, "after_id": ids[-1]}, headers=ANTHROPIC
    ).json()
    assert last == {"data": [], "has_more": False, "first_id": None, "last_id": None}
    bad = httpx.get(f"{gateway.url}/v1/models", params={"limit": 0}, headers=ANTHROPIC)
    assert bad.status_code == 400
