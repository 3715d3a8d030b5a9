"""Store contract (SQLite and PostgreSQL), the schema and catalog roles: migrations, meta and the
config version, the bundled catalog, providers and their vault keys, models and deployments."""

from __future__ import annotations

import pytest

from nemorouter.money import Prices
from nemorouter.store.base import Store, StoreError
from nemorouter.store.migration_files import migration_names
from nemorouter.store.open import open_store
from nemorouter.store.records import CatalogEntry

CHEAP = Prices.from_json({"input": "0.15", "output": "0.6"})
DEAR = Prices.from_json({"input": "2.5", "output": "10", "cache_read": "1.25", "request": "0.01"})


async def test_migrations_on_a_fresh_database(fresh_url: str) -> None:
    store = open_store(fresh_url)
    try:
        pending = await store.pending_migrations()
        assert pending[:2] == [1, 2] and pending == sorted(pending)
        assert await store.applied_migrations() == {}
        backend = "sqlite" if fresh_url.startswith("sqlite") else "postgres"
        assert pending == list(migration_names(backend))  # what `migrate status` names
        assert await store.migrate() == pending
        assert await store.pending_migrations() == []
        applied = await store.applied_migrations()
        assert list(applied) == pending and all(at.endswith("Z") for at in applied.values())
        assert await store.migrate() == []
        assert await store.config_version() == 1
    finally:
        await store.close()


async def test_meta(store: Store) -> None:
    assert await store.get_meta("missing") is None
    await store.set_meta("a", "1")
    await store.set_meta("a", "two")
    assert await store.get_meta("a") == "two"


async def test_catalog(store: Store) -> None:
    def entry(vendor: str, model: str, price: str) -> CatalogEntry:
        return CatalogEntry(vendor, model, "chat", {"input": price, "output": "1"}, 128_000, 16_384, "test")

    assert await store.load_catalog([entry("b", "z", "1"), entry("a", "y", "2"), entry("a", "x", "3")]) == 3
    assert [(e.vendor, e.model_id) for e in await store.list_catalog()] == [
        ("a", "x"),
        ("a", "y"),
        ("b", "z"),
    ]
    await store.load_catalog([entry("a", "x", "0.5")])  # a reload replaces the row
    found = await store.list_catalog("a")
    assert found == [entry("a", "x", "0.5"), entry("a", "y", "2")]
    assert await store.list_catalog("nobody") == []


async def test_providers(store: Store) -> None:
    version = await store.config_version()
    config = {"timeouts": {"connect": 2.5}, "vendor": "groq", "list": [1, "a"], "responses_api": True}
    made = await store.create_provider("sim", "openai", "http://127.0.0.1:9/v1", config)
    assert (made.name, made.kind, made.base_url, made.config, made.disabled) == (
        "sim",
        "openai",
        "http://127.0.0.1:9/v1",
        config,
        False,
    )
    assert await store.config_version() > version
    with pytest.raises(StoreError, match="already exists"):
        await store.create_provider("sim", "anthropic", "http://x", {})
    await store.create_provider("alpha", "anthropic", "http://y", {})
    assert await store.get_provider("sim") == made == await store.get_provider(made.id)
    assert await store.get_provider("nope") is None
    assert [p.name for p in await store.list_providers()] == ["alpha", "sim"]


async def test_provider_keys(store: Store) -> None:
    sim = await store.create_provider("sim", "openai", "http://x/v1", {})
    other = await store.create_provider("other", "openai", "http://y/v1", {})
    first = await store.add_provider_key(sim.id, "pk_1", "main", 2, "fp1", "envelope-1")
    await store.add_provider_key(other.id, "pk_2", "spare", 1, "fp2", "envelope-2")
    assert (first.provider_id, first.label, first.weight, first.fingerprint, first.envelope) == (
        sim.id,
        "main",
        2,
        "fp1",
        "envelope-1",
    )
    assert (first.disabled, first.quarantined_at) == (False, None)
    assert [k.id for k in await store.list_provider_keys(sim.id)] == ["pk_1"]
    assert {k.id for k in await store.list_provider_keys()} == {"pk_1", "pk_2"}
    version = await store.config_version()
    changed = await store.update_provider_key(
        "pk_1", {"disabled": 1, "weight": 5, "quarantined_at": "2026-03-02T10:00:00.000000Z"}
    )
    assert changed is not None
    assert (changed.disabled, changed.weight, changed.quarantined_at) == (
        True,
        5,
        "2026-03-02T10:00:00.000000Z",
    )
    assert await store.config_version() > version
    cleared = await store.update_provider_key("pk_1", {"disabled": 0, "quarantined_at": None})
    assert cleared is not None and (cleared.disabled, cleared.quarantined_at) == (False, None)
    with pytest.raises(StoreError):
        await store.update_provider_key("pk_1", {"envelope": "x"})
    assert await store.update_provider_key("pk_missing", {"weight": 1}) is None
    assert await store.delete_provider_key("pk_1") is True
    assert await store.delete_provider_key("pk_1") is False
    assert [k.id for k in await store.list_provider_keys()] == ["pk_2"]


async def test_models_and_deployments(store: Store) -> None:
    sim = await store.create_provider("sim", "openai", "http://x/v1", {})
    await store.create_provider("backup", "openai", "http://y/v1", {})
    model = await store.upsert_model(
        "openai/gpt-x",
        "GPT X",
        "chat",
        128_000,
        16_384,
        CHEAP,
        [{"provider": "sim", "upstream_model": "gpt-x", "priority": 0, "weight": 3}],
        replace_deployments=True,
    )
    assert (model.id, model.name, model.mode, model.context_length, model.max_output, model.prices) == (
        "openai/gpt-x",
        "GPT X",
        "chat",
        128_000,
        16_384,
        CHEAP,
    )
    [dep] = model.deployments
    assert (dep.provider_id, dep.upstream_model, dep.priority, dep.weight, dep.prices, dep.disabled) == (
        sim.id,
        "gpt-x",
        0,
        3,
        None,
        False,
    )
    assert await store.get_deployment(dep.id) == dep
    assert await store.get_deployment("dep_missing") is None

    # Adding a deployment (with its own prices) keeps the first; the model's prices change.
    again = await store.upsert_model(
        "openai/gpt-x",
        "GPT X",
        "chat",
        128_000,
        16_384,
        DEAR,
        [{"provider": "backup", "upstream_model": "gpt-x-b", "priority": 1, "prices": CHEAP}],
        replace_deployments=False,
    )
    assert again.prices == DEAR and again.price_version_id != model.price_version_id
    assert again.created_at == model.created_at
    assert [(d.upstream_model, d.prices) for d in again.deployments] == [("gpt-x", None), ("gpt-x-b", CHEAP)]
    snapshots = await store.price_versions([model.price_version_id, again.price_version_id, 10**9])
    assert snapshots == {model.price_version_id: CHEAP, again.price_version_id: DEAR}
    assert await store.price_versions([]) == {}

    # An unknown provider refuses the whole change.
    with pytest.raises(StoreError, match="unknown provider"):
        await store.upsert_model(
            "openai/gpt-x",
            "Renamed",
            "chat",
            1,
            1,
            CHEAP,
            [{"provider": "nobody", "upstream_model": "m"}],
            replace_deployments=True,
        )
    assert await store.get_model("openai/gpt-x") == again

    await store.upsert_model("a/embed", "E", "embedding", 8_192, 0, CHEAP, [], replace_deployments=True)
    assert [m.id for m in await store.list_models()] == ["a/embed", "openai/gpt-x"]
    replaced = await store.upsert_model(
        "openai/gpt-x",
        "GPT X",
        "chat",
        128_000,
        16_384,
        DEAR,
        [{"provider": sim.id, "upstream_model": "gpt-x-2"}],
        replace_deployments=True,
    )
    assert [d.upstream_model for d in replaced.deployments] == ["gpt-x-2"]
    assert await store.delete_model("openai/gpt-x") is True
    assert await store.delete_model("openai/gpt-x") is False
    assert await store.get_model("openai/gpt-x") is None
    assert [m.id for m in await store.list_models()] == ["a/embed"]


async def test_migrate_is_idempotent(store: Store) -> None:
    assert await store.migrate() == []
