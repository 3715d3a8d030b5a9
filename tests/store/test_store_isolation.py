"""Store contract (SQLite and PostgreSQL): one request's bad write fails that request alone.

On SQLite every write of one event-loop iteration shares a transaction (a batch); a value SQL
cannot hold, or any statement that raises, used to fail the whole batch, which was then retried
forever. Here each test sends a bad write together with good ones in the same iteration and
checks that the bad one fails with a StoreError while the others commit, exactly.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from nemorouter.money.amounts import MAX_AMOUNT
from nemorouter.service.administration.admin import Admin
from nemorouter.store.base import Store, StoreError
from nemorouter.store.records import Generation, Hold

from .conftest import RawSql
from .contract.test_money_settle_contract import NOW_TEXT, USD, hold, make_key, state
from .contract.test_money_settle_contract import outcome as _outcome


def outcome(h: Hold, cost: int, status: str = "success", **fields: Any) -> Generation:
    try:
        return _outcome(h, cost, status, **fields)
    except TypeError:  # the compiled record (tools/build_native.py) refuses a wrong type itself
        pytest.skip("the compiled Generation cannot even hold a value of this type")


async def _settled_together(store: Store, admin: Admin, bad_cost: int) -> None:
    """A settle charging `bad_cost` and a good one, in one batch: the bad one fails alone."""
    key = await make_key(admin, "10")
    other = await make_key(admin, "10")  # another tenant
    bad, good = hold(key, 2 * USD), hold(other, 2 * USD)
    assert (await store.reserve(bad, NOW_TEXT)).ok and (await store.reserve(good, NOW_TEXT)).ok
    later = hold(other, USD)
    results = await asyncio.gather(
        store.settle(bad.request_id, outcome(bad, bad_cost), "all"),
        store.settle(good.request_id, outcome(good, 123), "all"),
        store.reserve(later, NOW_TEXT),
        return_exceptions=True,
    )
    assert isinstance(results[0], StoreError), results[0]
    assert bad.request_id in str(results[0]) and "nothing was written" in str(results[0])
    assert results[1] is True
    assert not isinstance(results[2], BaseException) and results[2].ok
    # the other tenant's charge and hold are committed, to the pico-dollar
    account, found = await state(store, other)
    assert (account.total_usage, account.held, found.usage) == (123, USD, 123)
    record = await store.get_generation(good.request_id)
    assert record is not None and (record.status, record.cost) == ("success", 123)
    # the bad request changed nothing: its hold is still open, its account untouched
    account, found = await state(store, key)
    assert (account.total_usage, account.held, found.usage, found.held) == (0, 2 * USD, 0, 2 * USD)
    assert {h.request_id for h in await store.open_holds()} == {bad.request_id, later.request_id}
    # ... and the store goes on: the held request can still be settled properly, the later one too
    assert await store.settle(bad.request_id, outcome(bad, 5), "all") is True
    assert await store.settle(later.request_id, outcome(later, 7), "all") is True
    assert (await store.verify_ledger()).ok


@pytest.mark.parametrize("bad_cost", [2**70, MAX_AMOUNT + 1, -1, -(2**70)])
async def test_a_cost_out_of_range_fails_alone(admin: Admin, store: Store, bad_cost: int) -> None:
    await _settled_together(store, admin, bad_cost)


@pytest.mark.parametrize("bad_count", [2**64, -(2**63) - 1, 1.5, "12"])
async def test_a_count_sql_cannot_hold_exactly_fails_alone(
    admin: Admin, store: Store, bad_count: Any
) -> None:
    """Past 64 bits SQLite refuses it; a float it would store as REAL, silently."""
    key = await make_key(admin, "10")
    other = await make_key(admin, "10")
    bad, good = hold(key, USD), hold(other, USD)
    assert (await store.reserve(bad, NOW_TEXT)).ok and (await store.reserve(good, NOW_TEXT)).ok
    results = await asyncio.gather(
        store.settle(bad.request_id, outcome(bad, 10, completion_tokens=bad_count), "all"),
        store.settle(good.request_id, outcome(good, 10, completion_tokens=5), "all"),
        return_exceptions=True,
    )
    assert isinstance(results[0], StoreError) and results[1] is True
    record = await store.get_generation(good.request_id)
    assert record is not None and (record.completion_tokens, record.cost) == (5, 10)


async def test_a_release_with_a_value_sql_cannot_bind_fails_alone(admin: Admin, store: Store) -> None:
    key = await make_key(admin, "10")
    bad, good = hold(key, USD), hold(key, USD)
    assert (await store.reserve(bad, NOW_TEXT)).ok and (await store.reserve(good, NOW_TEXT)).ok
    odd: Any = {"not": "text"}
    results = await asyncio.gather(
        store.release(bad.request_id, outcome(bad, 0, status="error", error=odd)),
        store.release(good.request_id, outcome(good, 0, status="error", error="upstream 500")),
        return_exceptions=True,
    )
    assert isinstance(results[0], StoreError) and results[1] is True
    account, _ = await state(store, key)
    assert account.held == USD  # only the bad request's hold is left
    assert [h.request_id for h in await store.open_holds()] == [bad.request_id]


async def test_a_negative_hold_is_refused(admin: Admin, store: Store) -> None:
    key = await make_key(admin, "10")
    with pytest.raises(StoreError, match="hold"):
        await store.reserve(hold(key, -USD), NOW_TEXT)
    account, _ = await state(store, key)
    assert (account.balance, account.held) == (10 * USD, 0)


async def test_a_charge_past_a_total_range_fails_alone(
    admin: Admin, store: Store, raw_sql: RawSql, store_url: str
) -> None:
    """A total near the top of the range (set behind the store's back): a charge that would take
    it past MAX_AMOUNT is refused, never written as an overflowed (REAL) total."""
    key = await make_key(admin, "10")
    other = await make_key(admin, "10")
    await raw_sql("UPDATE api_keys SET usage = ? WHERE id = ?", MAX_AMOUNT - 10, key.id)
    bad, good = hold(key, USD), hold(other, USD)
    assert (await store.reserve(bad, NOW_TEXT)).ok and (await store.reserve(good, NOW_TEXT)).ok
    results = await asyncio.gather(
        store.settle(bad.request_id, outcome(bad, 11), "all"),
        store.settle(good.request_id, outcome(good, 11), "all"),
        return_exceptions=True,
    )
    if store_url.startswith("sqlite"):
        assert isinstance(results[0], StoreError) and "key's usage" in str(results[0])
        _, found = await state(store, key)
        assert found.usage == MAX_AMOUNT - 10 and isinstance(found.usage, int)
    else:  # NUMERIC totals: kept exactly
        assert results[0] is True
        _, found = await state(store, key)
        assert found.usage == MAX_AMOUNT + 1
    assert results[1] is True


_SQLITE_TRIGGER = (
    "CREATE TRIGGER boom BEFORE UPDATE ON generations WHEN NEW.finish_reason = 'explode'"
    " BEGIN SELECT RAISE(ABORT, 'boom'); END"
)
_PG_FUNCTION = (
    "CREATE FUNCTION nemo_test_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " IF NEW.finish_reason = 'explode' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$"
)
_PG_TRIGGER = (
    "CREATE TRIGGER boom BEFORE UPDATE ON generations FOR EACH ROW EXECUTE FUNCTION nemo_test_boom()"
)


async def _ddl(store_url: str, raw_sql: RawSql, *statements: str) -> None:
    for sql in statements:
        if store_url.startswith("sqlite"):
            await raw_sql(sql)
        else:
            con = await asyncpg.connect(store_url)
            try:
                await con.execute(sql)
            finally:
                await con.close()


async def test_any_statement_that_raises_fails_its_request_alone(
    admin: Admin, store: Store, raw_sql: RawSql, store_url: str
) -> None:
    """Not a bad value: the database refuses one request's write (a trigger here). That request
    fails; the rest of its batch commits, and the store keeps committing afterwards."""
    sqlite = store_url.startswith("sqlite")
    await _ddl(store_url, raw_sql, *((_SQLITE_TRIGGER,) if sqlite else (_PG_FUNCTION, _PG_TRIGGER)))
    try:
        key = await make_key(admin, "10")
        other = await make_key(admin, "10")
        holds = [hold(key, USD), hold(other, USD), hold(other, USD)]
        for h in holds:
            assert (await store.reserve(h, NOW_TEXT)).ok
        later = hold(key, USD)
        results = await asyncio.gather(
            store.settle(holds[0].request_id, outcome(holds[0], 100, finish_reason="stop"), "all"),
            store.settle(holds[1].request_id, outcome(holds[1], 200, finish_reason="explode"), "all"),
            store.reserve(later, NOW_TEXT),
            store.settle(holds[2].request_id, outcome(holds[2], 300, finish_reason="stop"), "all"),
            return_exceptions=True,
        )
        assert results[0] is True and results[3] is True
        assert isinstance(results[1], Exception) and "boom" in str(results[1])
        if sqlite:
            assert isinstance(results[1], StoreError)
        assert not isinstance(results[2], BaseException) and results[2].ok
        account, found = await state(store, other)
        assert (account.total_usage, account.held, found.usage) == (300, USD, 300)
        account, found = await state(store, key)
        assert (account.total_usage, account.held) == (100, USD)
        assert {h.request_id for h in await store.open_holds()} == {holds[1].request_id, later.request_id}
        # the store still commits: a new batch after the failure
        assert await store.settle(later.request_id, outcome(later, 1, finish_reason="stop"), "all") is True
        assert (
            await store.settle(holds[1].request_id, outcome(holds[1], 2, finish_reason="stop"), "all") is True
        )
        assert await store.open_holds() == []
        assert (await store.verify_ledger()).ok
    finally:
        if sqlite:
            await _ddl(store_url, raw_sql, "DROP TRIGGER boom")
        else:
            await _ddl(
                store_url, raw_sql, "DROP TRIGGER boom ON generations", "DROP FUNCTION nemo_test_boom()"
            )


async def test_a_hold_past_the_range_is_refused_like_any_unaffordable_hold(
    admin: Admin, store: Store
) -> None:
    """A hold no balance or limit can afford is a refusal (402/403 to the client), not an error."""
    key = await make_key(admin, "10")
    refused = await store.reserve(hold(key, 2**70), NOW_TEXT)
    assert (refused.reason, refused.available) == ("insufficient_credits", 10 * USD)
    _, limited = await admin.create_key(key.account_id, {"name": "capped", "limit": "1"})
    refused = await store.reserve(hold(limited, MAX_AMOUNT + 1), NOW_TEXT)
    assert (refused.reason, refused.available) == ("key_limit_exceeded", USD)
    account, _ = await state(store, key)
    assert (account.held, await store.open_holds()) == (0, [])


async def test_a_settle_with_text_sql_cannot_bind_fails_alone(admin: Admin, store: Store) -> None:
    """Text columns are not checked on the hot path: the database's own refusal fails the one
    request (SQLite: its batch is rebuilt without it), and its hold stays open."""
    key = await make_key(admin, "10")
    bad, good = hold(key, USD), hold(key, USD)
    assert (await store.reserve(bad, NOW_TEXT)).ok and (await store.reserve(good, NOW_TEXT)).ok
    odd: Any = ["stop"]
    results = await asyncio.gather(
        store.settle(bad.request_id, outcome(bad, 10, finish_reason=odd), "all"),
        store.settle(good.request_id, outcome(good, 20, finish_reason="stop"), "all"),
        return_exceptions=True,
    )
    assert isinstance(results[0], StoreError) and results[1] is True
    account, found = await state(store, key)
    assert (account.total_usage, account.held, found.usage) == (20, USD, 20)
    assert [h.request_id for h in await store.open_holds()] == [bad.request_id]
    assert (await store.verify_ledger()).ok
