"""Model aliases in the store, both backends: kept with the model, replaced as a whole, every
name (id or alias) naming one model, gone with the model."""

from __future__ import annotations

import pytest

from nemorouter.money import Prices
from nemorouter.store.base import Store, StoreError

CHEAP = Prices.from_json({"input": "0.15", "output": "0.6"})


async def _model(store: Store, model_id: str, aliases: list[str] | None) -> object:
    return await store.upsert_model(
        model_id, model_id, "chat", 1000, 100, CHEAP, [], replace_deployments=False, aliases=aliases
    )


async def test_aliases_are_kept_replaced_and_unique(store: Store) -> None:
    await _model(store, "openai/gpt-x", ["gpt-x", "x"])
    found = await store.get_model("openai/gpt-x")
    assert found is not None and found.aliases == ("gpt-x", "x")
    await _model(store, "openai/gpt-x", None)  # None keeps them
    assert (await store.get_model("openai/gpt-x")).aliases == ("gpt-x", "x")  # type: ignore[union-attr]
    await _model(store, "openai/gpt-x", ["gpt-x"])  # a list replaces them
    assert [m.aliases for m in await store.list_models()] == [("gpt-x",)]

    with pytest.raises(StoreError, match="alias gpt-x is already a name of model openai/gpt-x"):
        await _model(store, "other/y", ["gpt-x"])
    assert await store.get_model("other/y") is None  # refused as a whole
    with pytest.raises(StoreError, match="already a name of model openai/gpt-x"):
        await _model(store, "other/y", ["openai/gpt-x"])
    with pytest.raises(StoreError, match="already an alias"):
        await _model(store, "gpt-x", [])

    await store.delete_model("openai/gpt-x")
    await _model(store, "other/y", ["gpt-x"])  # the name is free again
    assert [(m.id, m.aliases) for m in await store.list_models()] == [("other/y", ("gpt-x",))]
