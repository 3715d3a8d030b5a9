"""PostgreSQL only: what the SQLite store cannot show (sums beyond 64 bits, replicas migrating
at once), how the store opens (lazily, with its pool sized from the environment, and with a
clear error when the server cannot be reached), and the connections reserves and settles keep."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import fields, replace
from datetime import UTC, datetime

import asyncpg
import pytest

from nemorouter.money.amounts import MAX_AMOUNT, AmountRangeError
from nemorouter.settings import DbPool, Settings
from nemorouter.store.base import StoreError
from nemorouter.store.open import open_store
from nemorouter.store.postgres import PostgresStore
from nemorouter.store.records import ApiKey, Hold
from nemorouter.timeutil import iso, new_id

NOW_TEXT = iso(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))
BIG = 9 * 10**18  # near the largest single amount (BIGINT): about 9 million USD


async def test_sums_grow_beyond_64_bits_and_each_account_stays_in_range(pg_url: str) -> None:
    """An account's total credits stop at MAX_AMOUNT (as on SQLite: one contract); sums over
    many accounts (a provider's usage) pass 64 bits and stay exact, as plain ints."""
    store = PostgresStore(pg_url)
    try:
        accounts, keys, pendings = [], [], []
        for i in range(3):
            account = await store.create_account(f"whale{i}", None)
            await store.add_credit(account.id, BIG, "wire", f"w{i}")
            await store.add_credit(account.id, MAX_AMOUNT - BIG, "wire", f"top{i}")  # exactly the maximum
            with pytest.raises(AmountRangeError, match=r"9223372\.036854775807"):
                await store.add_credit(account.id, 1, "wire", f"past{i}")
            key = await _key(store, account.id)
            h = Hold(new_id("gen_"), account.id, key, MAX_AMOUNT, "all", "p", NOW_TEXT)
            assert (await store.reserve(h, NOW_TEXT)).ok
            pending = await store.get_generation(h.request_id)
            assert pending is not None
            done = replace(pending, status="success", cost=MAX_AMOUNT, provider="sim")
            assert await store.settle(h.request_id, done, "all")
            accounts.append(account.id)
            keys.append(key)
            pendings.append(pending)
        found = await store.get_account(accounts[0])
        stored_key = await store.get_key(keys[0])
        assert found is not None and stored_key is not None
        assert (found.total_credits, found.total_usage, found.balance, found.held) == (
            MAX_AMOUNT,
            MAX_AMOUNT,
            0,
            0,
        )
        assert stored_key.usage == stored_key.window_usage == MAX_AMOUNT
        assert await store.key_spend_since(keys[0], "2000-01-01") == MAX_AMOUNT
        assert await store.charges_before(accounts[0], "2100-01-01") == MAX_AMOUNT
        [row] = await store.usage_rows(accounts[0], "2026-01-01", "2027-01-01")
        assert (row.requests, row.cost) == (1, MAX_AMOUNT)
        [by_provider] = await store.provider_usage_rows("sim", "2026-01-01", "2027-01-01")
        assert (by_provider.requests, by_provider.cost) == (3, 3 * MAX_AMOUNT) and 3 * MAX_AMOUNT > 2**64
        # Plain ints everywhere: no Decimal, no driver record leaves the store.
        for record in (found, stored_key, row, by_provider, *pendings):
            for f in fields(record):
                value = getattr(record, f.name)
                assert value is None or type(value) in (int, str, bool, tuple), (f.name, type(value))
        assert (await store.verify_ledger()).ok
    finally:
        await store.close()


async def _key(store: PostgresStore, account_id: str) -> str:
    key = ApiKey(
        id=new_id("key_", 10),
        account_id=account_id,
        scope="inference",
        name="k",
        hint="sk-nemo-v1-...",
        limit=None,
        limit_reset=None,
        window_start="",
        window_usage=0,
        usage=0,
        held=0,
        expires_at=None,
        disabled=False,
        revoked_at=None,
        rpm=None,
        tpm=None,
        max_concurrency=None,
        allowed_models=None,
        created_at=NOW_TEXT,
        updated_at=NOW_TEXT,
    )
    return (await store.create_key(key, new_id("hash_"))).id


async def test_replicas_starting_together_migrate_once(pg_database: str) -> None:
    stores = [PostgresStore(pg_database, min_size=1, max_size=2) for _ in range(4)]
    try:
        assert await stores[0].get_meta("config_version") is None  # not initialized: no error
        every = [version for version, _ in PostgresStore._migration_files()]
        assert every[:4] == [1, 2, 3, 4] and every == sorted(every)
        assert await stores[0].pending_migrations() == every
        applied = await asyncio.gather(*(s.migrate() for s in stores))
        assert sorted(applied) == [[], [], [], every]
        assert await stores[3].config_version() == 1
        assert await stores[2].pending_migrations() == []
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_an_unreachable_server_is_a_clear_store_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    store = PostgresStore(f"postgresql://nemo:s3cret@127.0.0.1:{port}/nemo")
    with pytest.raises(StoreError) as caught:
        await store.config_version()
    assert f"127.0.0.1:{port}/nemo" in str(caught.value) and "s3cret" not in str(caught.value)
    await store.close()


def test_open_store_sizes_the_pool_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgres://postgres@127.0.0.1:5432/none"  # nothing connects until first use
    assert isinstance(open_store(url), PostgresStore)
    monkeypatch.setenv("NEMO_DB_POOL_MIN", "0")
    monkeypatch.setenv("NEMO_DB_POOL_MAX", "3")
    monkeypatch.setenv("NEMO_DB_COMMAND_TIMEOUT", "2.5")
    store = open_store(url)
    assert (store._sizes, store._command_timeout) == ((0, 3), 2.5)  # type: ignore[attr-defined]
    assert Settings.from_env().db_pool == DbPool(0, 3, 2.5)
    monkeypatch.setenv("NEMO_DB_POOL_MAX", "many")
    with pytest.raises(StoreError, match="NEMO_DB_POOL_MAX"):
        open_store(url)
    monkeypatch.setenv("NEMO_DB_POOL_MIN", "5")
    monkeypatch.setenv("NEMO_DB_POOL_MAX", "2")
    with pytest.raises(StoreError, match="pool size"):
        open_store(url)
    monkeypatch.setenv("NEMO_DB_POOL_MIN", "1")
    monkeypatch.setenv("NEMO_DB_COMMAND_TIMEOUT", "-1")
    with pytest.raises(StoreError, match="NEMO_DB_COMMAND_TIMEOUT"):
        open_store(url)
    monkeypatch.setenv("NEMO_DB_COMMAND_TIMEOUT", "0")
    assert Settings.from_env().db_pool == DbPool(1, 2, None)  # 0: statements are never cut off


async def test_a_statement_past_the_command_timeout_is_cancelled(pg_url: str) -> None:
    store = open_store(pg_url, DbPool(1, 1, 0.3))
    try:
        assert await store.pending_migrations() == []
        with pytest.raises(TimeoutError):
            await store._one("SELECT pg_sleep(2)")  # type: ignore[attr-defined]
        assert await store.pending_migrations() == []  # the connection is usable again
    finally:
        await store.close()


async def test_settle_function_takes_the_outcome_columns_in_order(pg_url: str) -> None:
    # nemo_settle and nemo_settle_many (migration 0013's overloads, with the unit columns) bind
    # the outcome by position: their parameters must follow `_OUTCOME_COLUMNS`, or a settle would
    # write one column's value into another. The store calls the overload of that many arguments.
    from nemorouter.store.postgres.money import _OUTCOME_COLUMNS

    store = PostgresStore(pg_url)
    try:
        await store.migrate()
        expected = ["p_id", "p_window", *(f"p_{c}" for c in _OUTCOME_COLUMNS)]
        for name in ("nemo_settle", "nemo_settle_many"):
            found = await store._one(
                "SELECT proargnames FROM pg_proc WHERE proname = $1 AND pronargs = $2", name, len(expected)
            )
            assert found is not None, name
            assert list(found[0]) == expected, name
    finally:
        await store.close()


# Reserves and settles run on two pool connections kept for them (store/postgres/conn.py
# `_call_kept`), not taken from the pool and handed back per call.


async def _charge(store: PostgresStore, account_id: str, key_id: str) -> None:
    hold = Hold(new_id("gen_"), account_id, key_id, 1_000, "all", "p", NOW_TEXT)
    assert (await store.reserve(hold, NOW_TEXT)).ok
    pending = await store.get_generation(hold.request_id)
    assert pending is not None
    assert await store.settle(hold.request_id, replace(pending, status="success", cost=700), "all")


async def test_reserves_and_settles_keep_their_connections_and_replace_a_lost_one(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    try:
        account = await store.create_account("kept", None)
        await store.add_credit(account.id, 10**9, "wire", "k1")
        key_id = await _key(store, account.id)
        await _charge(store, account.id, key_id)
        kept = dict(store._kept)
        assert set(kept) == {"reserve", "settle"} and kept["reserve"] is not kept["settle"]
        for _ in range(3):
            await _charge(store, account.id, key_id)
        assert store._kept == kept  # the same two connections, call after call
        # The server drops the reserves' connection: the next reserve fails alone (as a lost
        # connection always did), the connection goes back to the pool, and the one after runs
        # on a fresh one.
        pid = kept["reserve"].get_server_pid()
        admin = await asyncpg.connect(pg_url)
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
        await admin.close()
        await asyncio.sleep(0.1)
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
            await _charge(store, account.id, key_id)
        assert "reserve" not in store._kept
        await _charge(store, account.id, key_id)
        assert store._kept["reserve"].get_server_pid() != pid
        found = await store.get_account(account.id)
        assert found is not None and (found.total_usage, found.held) == (5 * 700, 0)
    finally:
        await asyncio.wait_for(store.close(), 5)  # the kept connections go back: no wait


async def test_a_small_pool_keeps_no_connection(pg_url: str) -> None:
    store = PostgresStore(pg_url, min_size=1, max_size=2)
    try:
        account = await store.create_account("small", None)
        await store.add_credit(account.id, 10**9, "wire", "s1")
        key_id = await _key(store, account.id)
        await asyncio.gather(*(_charge(store, account.id, key_id) for _ in range(4)))
        assert store._kept == {}
    finally:
        await store.close()


async def test_batched_settles_store_any_text_exactly(pg_url: str) -> None:
    """Batched reserves and settles send each column as the text of an array
    (store/postgres/array_text.py): quotes, backslashes, braces, commas, newlines, the word NULL and NULL itself all
    come back exactly as given, one request to each record."""
    store = PostgresStore(pg_url)
    nasty = ['say "hi"', "back\\slash\\", "{a,b}", "NULL", "", "line\nbreak\ttab", "ünïcödé ✓", ' "\\" ']
    try:
        account = await store.create_account("texts", None)
        await store.add_credit(account.id, 10**9, "wire", "t1")
        key_id = await _key(store, account.id)
        holds = [
            Hold(new_id("gen_"), account.id, key_id, 1_000, "all", "p", NOW_TEXT, model=m) for m in nasty
        ]
        assert all(r.ok for r in await asyncio.gather(*(store.reserve(h, NOW_TEXT) for h in holds)))
        pendings = [await store.get_generation(h.request_id) for h in holds]
        assert [p.model for p in pendings if p is not None] == nasty
        done = [
            replace(
                p, status="success", cost=i, error=text, raw_usage=None if i % 2 else text, latency_ms=None
            )
            for i, (p, text) in enumerate(zip(pendings, reversed(nasty), strict=True))
            if p is not None
        ]
        assert all(await asyncio.gather(*(store.settle(g.id, g, "all") for g in done)))
        for g in done:
            found = await store.get_generation(g.id)
            assert found is not None
            assert (found.error, found.raw_usage, found.cost, found.latency_ms) == (
                g.error,
                g.raw_usage,
                g.cost,
                None,
            )
        stored = await store.get_account(account.id)
        assert stored is not None and (stored.total_usage, stored.held) == (sum(range(len(nasty))), 0)
    finally:
        await store.close()


async def test_a_settle_whose_caller_is_cancelled_still_commits(pg_url: str) -> None:
    """A client that leaves while its settle waits for (or rides in) a batch cancels only its own
    wait: the charge is made all the same, once, and the batch's other settles with it."""
    store = PostgresStore(pg_url)
    try:
        account = await store.create_account("cancelled", None)
        await store.add_credit(account.id, 10**9, "wire", "c1")
        key_id = await _key(store, account.id)
        holds = [Hold(new_id("gen_"), account.id, key_id, 1_000, "all", "p", NOW_TEXT) for _ in range(6)]
        assert all(r.ok for r in await asyncio.gather(*(store.reserve(h, NOW_TEXT) for h in holds)))
        pendings = [await store.get_generation(h.request_id) for h in holds]
        settles = [
            asyncio.ensure_future(store.settle(p.id, replace(p, status="success", cost=700), "all"))
            for p in pendings
            if p is not None
        ]
        await asyncio.sleep(0)  # the first batch is on its way
        for cancelled_at, task in enumerate(settles):
            if cancelled_at % 2 == 0:  # every other caller leaves: before and while its batch runs
                task.cancel()
            await asyncio.sleep(0)
        outcomes = await asyncio.gather(*settles, return_exceptions=True)
        assert [isinstance(o, asyncio.CancelledError) for o in outcomes] == [True, False] * 3
        await asyncio.sleep(0.2)  # the batches a cancelled caller was in commit all the same
        for hold in holds:
            found = await store.get_generation(hold.request_id)
            assert found is not None and (found.status, found.cost) == ("success", 700)
        after = await store.get_account(account.id)
        assert after is not None and (after.total_usage, after.held) == (6 * 700, 0)
    finally:
        await store.close()
