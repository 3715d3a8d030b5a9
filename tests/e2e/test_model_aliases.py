"""Operator-defined aliases: set through the admin API and the CLI, refused on a collision (409),
shown in /v1/models, and a request for an alias served, billed and recorded as its model."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from conftest import Gateway, Sim, new_gateway

MINI = "openai/gpt-4o-mini"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gateway = new_gateway(tmp_path_factory.mktemp("aliases"), sim)
    gateway.cli("models", "aliases", MINI, "gpt-4o-mini", "mini")  # set before the gateway starts
    gateway.start()
    yield gateway
    assert gateway.stop() == 0


def _chat(gw: Gateway, key: str, model: str) -> httpx.Response:
    return httpx.post(
        f"{gw.url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hello"}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def test_an_alias_is_served_billed_and_recorded_as_its_model(gw: Gateway) -> None:
    account = gw.account("1.00")
    key = gw.key(account)
    by_alias = _chat(gw, key, "gpt-4o-mini")
    assert by_alias.status_code == 200, by_alias.text
    assert by_alias.json()["model"] == MINI
    by_id = _chat(gw, key, MINI)
    assert by_alias.json()["usage"]["prompt_tokens"] == by_id.json()["usage"]["prompt_tokens"]
    record = httpx.get(
        f"{gw.url}/v1/generation",
        params={"id": by_alias.headers["x-nemo-request-id"]},
        headers={"Authorization": f"Bearer {key}"},
    ).json()["data"]
    assert record["model"] == MINI
    assert Decimal(str(record["total_cost"])) == Decimal(by_alias.headers["x-nemo-cost"])
    spent = Decimal(by_alias.headers["x-nemo-cost"]) + Decimal(by_id.headers["x-nemo-cost"])
    assert Decimal(str(gw.balance(account)["total_usage"])) == spent
    assert gw.verify()["ok"] is True


def test_aliases_are_shown_and_retrievable_but_not_listed_as_items(gw: Gateway) -> None:
    items = {m["id"]: m for m in httpx.get(f"{gw.url}/v1/models").json()["data"]}
    assert items[MINI]["aliases"] == ["gpt-4o-mini", "mini"]
    assert "mini" not in items
    one = httpx.get(f"{gw.url}/v1/models/mini").json()
    assert one["id"] == MINI
    admin = gw.admin("GET", "/models").json()["data"]
    assert next(m for m in admin if m["id"] == MINI)["aliases"] == ["gpt-4o-mini", "mini"]


def test_a_colliding_alias_is_refused_with_409(gw: Gateway) -> None:
    taken = gw.admin("PATCH", "/models/openai/gpt-4o", {"aliases": ["mini"]})
    assert taken.status_code == 409, taken.text
    assert taken.json()["error"]["type"] == "alias_conflict"
    assert "openai/gpt-4o-mini" in taken.json()["error"]["message"]
    an_id = gw.admin("PATCH", "/models/openai/gpt-4o", {"aliases": [MINI]})
    assert an_id.status_code == 409
    created = gw.admin(
        "POST",
        "/models",
        {"id": "mini", "context_length": 1000, "max_output": 100, "pricing": {"input": "1", "output": "1"}},
    )
    assert created.status_code == 409
    assert gw.admin("PATCH", "/models/openai/gpt-4o", {"aliases": ["a b"]}).status_code == 400
    assert gw.admin("PATCH", "/models/openai/gpt-4o", {"aliases": "gpt-4o"}).status_code == 400


def test_aliases_are_replaced_through_the_admin_api_and_respect_allowed_models(gw: Gateway) -> None:
    changed = gw.admin("PATCH", "/models/openai/gpt-4o", {"aliases": ["four-o"]})
    assert changed.status_code == 200 and changed.json()["data"]["aliases"] == ["four-o"]
    account = gw.account("1.00")
    allowed = gw.key(account, allowed_models=[MINI])
    assert _chat(gw, allowed, "mini").status_code == 200  # allowed the model: allowed its aliases
    refused = _chat(gw, allowed, "four-o")
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "model_not_allowed"
    assert gw.admin("PATCH", "/models/openai/gpt-4o", {"aliases": []}).json()["data"]["aliases"] == []
    gone = _chat(gw, gw.key(account), "four-o")
    assert gone.status_code == 404


def test_cli_sets_aliases_on_add_and_refuses_a_collision(gw: Gateway) -> None:
    added = gw.cli_json(
        "models", "add", "sim/extra", "--input", "1", "--deploy", "sim:gpt-4o-mini", "--alias", "extra"
    )
    assert added["data"]["aliases"] == ["extra"]
    served = _chat(gw, gw.key(gw.account("1.00")), "extra")
    assert served.status_code == 200 and served.json()["model"] == "sim/extra"
    result = gw.cli("models", "aliases", "openai/gpt-4o", "gpt-4o-mini", check=False)
    assert result.returncode != 0
    assert "already a name of model openai/gpt-4o-mini" in result.stderr
