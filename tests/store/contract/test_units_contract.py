"""Requests priced per unit on both stores: the unit and its count are kept with the charge,
summed apart per unit in the reports, and sealed (a count edited after sealing is named), while
every entry without units is hashed as before units existed (old chains still verify)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import orjson

from nemorouter.service.administration.admin import Admin
from nemorouter.store import seals
from nemorouter.store.base import Store
from nemorouter.store.records import Generation, Hold
from nemorouter.timeutil import iso, time_ordered_id

from .test_ledger_seals_contract import RawQuery, RawSql, make_key

NOW_TEXT = iso(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))


async def _charge(store: Store, account_id: str, key_id: str, cost: int, unit: str | None, units: int) -> str:
    gen_id = time_ordered_id("gen-")
    held = Hold(gen_id, account_id, key_id, 10**12, "all", "proc", NOW_TEXT, model="openai/dall-e-3")
    assert (await store.reserve(held, NOW_TEXT)).ok
    gen = Generation(
        id=gen_id,
        account_id=account_id,
        key_id=key_id,
        model="openai/dall-e-3",
        endpoint="images",
        streamed=False,
        status="success",
        created_at=NOW_TEXT,
        provider="openai",
        cost=cost,
        hold=10**12,
        unit=unit,
        units=units,
    )
    assert await store.settle(gen_id, gen, "all")
    return gen_id


async def test_units_are_kept_summed_per_unit_and_sealed(store: Store, admin: Admin) -> None:
    key = await make_key(admin)
    hd = await _charge(store, key.account_id, key.id, 160_000_000_000, "image/1024x1024/hd", 2)
    await _charge(store, key.account_id, key.id, 80_000_000_000, "image/1024x1024/hd", 1)
    await _charge(store, key.account_id, key.id, 40_000_000_000, "image/1024x1024/standard", 1)
    await _charge(store, key.account_id, key.id, 7, None, 0)
    found = await store.get_generation(hd)
    assert found is not None and (found.unit, found.units) == ("image/1024x1024/hd", 2)
    rows = await store.usage_rows(key.account_id, "2026-03-01", "2026-04-01")
    by_unit = {r.unit: (r.requests, r.units, r.cost) for r in rows}
    assert by_unit == {
        "image/1024x1024/hd": (2, 3, 240_000_000_000),
        "image/1024x1024/standard": (1, 1, 40_000_000_000),
        None: (1, 0, 7),
    }
    provider_rows = await store.provider_usage_rows("openai", "2026-03-01", "2026-04-01")
    assert sorted((r.unit or "", r.units) for r in provider_rows) == [
        ("", 0),
        ("image/1024x1024/hd", 3),
        ("image/1024x1024/standard", 1),
    ]
    await store.seal_ledger()
    assert (await store.verify_ledger()).ok


async def test_a_unit_count_edited_after_sealing_is_named(
    store: Store, admin: Admin, raw_sql: RawSql, raw_query: RawQuery
) -> None:
    key = await make_key(admin)
    gen_id = await _charge(store, key.account_id, key.id, 80_000_000_000, "image/1024x1024/hd", 1)
    await store.seal_ledger()
    assert (await store.verify_ledger()).ok
    assert await raw_sql("UPDATE generations SET units = 5 WHERE id = ?", gen_id) == 1
    report = await store.verify_ledger()
    assert any(gen_id in p and "changed after it was sealed" in p for p in report.problems), report.problems


def test_an_entry_without_units_hashes_as_it_did_before_units() -> None:
    # The fields that existed before units, hashed as the earlier code did: kind, then values.
    before_units = ["gen-1", "acct", "key", "m/x", "p", None, None, None, "chat", 0, 0, "success"]
    before_units += [12, 7, 0, 0, 0, 0, 1_000, 10**9, 3, "2026-03-02T10:00:00.000000Z"]
    assert len(before_units) == len(seals.GENERATION_FIELDS) - 2
    old = hashlib.sha256(orjson.dumps(["generation", *before_units])).hexdigest()
    assert seals.digest("generation", [*before_units, None, 0]) == old
    assert seals.digest("generation", [*before_units, "second", 3]) != old
    assert seals.digest("generation", [*before_units, "second", 4]) != seals.digest(
        "generation", [*before_units, "second", 3]
    )
