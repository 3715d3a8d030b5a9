"""PostgreSQL's batch functions against their one-request originals (migrations 0008, 0013,
0014): a batch of reserves (`nemo_reserve_many`) or settles (`nemo_settle_many`) must leave the
rows and give the outcomes that the same requests, run one after the other through
`nemo_reserve` and `nemo_settle`, would. The batches fold each key's and each account's writes
into one UPDATE per row, so the cases are drawn to make the fold work: several keys and accounts
in one batch, limits and balances that run out midway, revoked, disabled, expired and unknown
keys, duplicate request ids, and windows that change (and change back) within one key's
settles. Each case runs both ways from the same rows, each in a transaction rolled back after."""

from __future__ import annotations

import random
from typing import Any

import asyncpg
import pytest

from nemorouter.store.postgres.array_text import array_text
from nemorouter.store.postgres.money import (
    _OUTCOME_COLUMNS,
    _REFUSED,
    _RESERVE,
    _RESERVE_MANY,
    _SETTLE,
    _SETTLE_MANY,
)

NOW = "2026-03-02T10:00:00.000000Z"
CASES = 60


def _columns(batch: list[tuple[Any, ...]]) -> list[str]:
    """A batch's columns as the store sends them: each the text of an array (`array_text`)."""
    return [array_text(column) for column in zip(*batch, strict=True)]


async def _state(conn: asyncpg.Connection) -> dict[str, Any]:
    """Every row the money functions write, as plain values."""
    return {
        "keys": [
            tuple(r)
            for r in await conn.fetch(
                "SELECT id, held, usage, window_start, window_usage FROM api_keys ORDER BY id"
            )
        ],
        "accounts": [
            tuple(r) for r in await conn.fetch("SELECT id, held, total_usage FROM accounts ORDER BY id")
        ],
        "generations": [tuple(r) for r in await conn.fetch("SELECT * FROM generations ORDER BY id")],
        "queued": sorted(tuple(r) for r in await conn.fetch("SELECT kind, row_id FROM seal_queue")),
    }


async def _seed(conn: asyncpg.Connection, rng: random.Random) -> tuple[list[str], list[tuple[str, str]]]:
    """Three accounts and six keys in states drawn for this case; (account ids, (key, account))."""
    accounts = [f"acc_{i}" for i in range(3)]
    for account in accounts:
        credits = rng.choice([0, 5_000, 20_000, 10**9])
        await conn.execute(
            "INSERT INTO accounts (id, name, total_credits, total_usage, held, created_at)"
            " VALUES ($1, $1, $2, $3, $4, $5)",
            account,
            credits,
            rng.choice([0, credits // 4]),
            rng.choice([0, credits // 5]),
            NOW,
        )
    keys = []
    for i in range(6):
        key, account = f"key_{i}", rng.choice(accounts)
        await conn.execute(
            "INSERT INTO api_keys (id, account_id, scope, name, hint, limit_pico, window_start, window_usage,"
            " held, usage, expires_at, disabled, revoked_at, created_at, updated_at)"
            " VALUES ($1, $2, 'inference', $1, 'h', $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
            key,
            account,
            rng.choice([None, 3_000, 10_000, 50_000]),
            rng.choice(["w1", "w2", ""]),
            rng.choice([0, 1_000, 4_000]),
            rng.choice([0, 500]),
            rng.choice([0, 7_000]),
            rng.choice([None, None, None, "2026-03-02T09:00:00.000000Z", "2026-03-03T00:00:00.000000Z"]),
            rng.random() < 0.1,
            "2026-03-01T00:00:00.000000Z" if rng.random() < 0.1 else None,
            NOW,
        )
        keys.append((key, account))
    return accounts, keys


def _reserves(
    rng: random.Random, accounts: list[str], keys: list[tuple[str, str]], taken: list[str]
) -> list[tuple[Any, ...]]:
    """A batch of reserves: nemo_reserve's arguments, mostly on a few keys so limits run out."""
    batch: list[tuple[Any, ...]] = []
    for n in range(rng.randint(1, 20)):
        key, account = rng.choice(keys[: rng.choice([1, 2, 6])])
        if rng.random() < 0.05:
            key = "key_missing"
        if rng.random() < 0.05:
            account = rng.choice([*accounts, "acc_missing"])
        earlier = [item[5] for item in batch]
        request_id = rng.choice([*earlier, *taken]) if rng.random() < 0.1 and earlier + taken else f"gen_{n}"
        amount = rng.choice([0, 100, 1_000, 2_500, 6_000])
        window = rng.choice(["w1", "w1", "w2"])
        batch.append((amount, key, NOW, window, account, request_id, "m", "chat", False, "me", NOW))
    return batch


async def _one_reserve(conn: asyncpg.Connection, item: tuple[Any, ...]) -> str:
    """nemo_reserve as the store runs it alone: a refusal raised after the key was held rolls
    back the whole call (here, to a savepoint)."""
    try:
        async with conn.transaction():
            return str(await conn.fetchval(_RESERVE, *item))
    except asyncpg.RaiseError as exc:
        return str(exc.message).removeprefix(_REFUSED)


async def _rolled_back(conn: asyncpg.Connection, work: Any) -> tuple[Any, dict[str, Any]]:
    transaction = conn.transaction()
    await transaction.start()
    try:
        result = await work()
        return result, await _state(conn)
    finally:
        await transaction.rollback()


@pytest.mark.parametrize("case", range(CASES))
async def test_a_reserve_batch_decides_and_writes_as_its_reserves_one_by_one(pg_url: str, case: int) -> None:
    rng = random.Random(case)
    conn = await asyncpg.connect(pg_url)
    try:
        accounts, keys = await _seed(conn, rng)
        taken = []
        if rng.random() < 0.5:  # a request id that already has a record
            assert await _one_reserve(
                conn, (0, keys[0][0], NOW, "w1", keys[0][1], "gen_old", "m", "chat", False, "me", NOW)
            ) in {"ok", "key", "account"}
            taken.append("gen_old")
        batch = _reserves(rng, accounts, keys, taken)

        async def one_by_one() -> list[str]:
            return [await _one_reserve(conn, item) for item in batch]

        async def in_one_batch() -> list[str]:
            return list(await conn.fetchval(_RESERVE_MANY, *_columns(batch)))

        expected, expected_rows = await _rolled_back(conn, one_by_one)
        found, found_rows = await _rolled_back(conn, in_one_batch)
        assert found == expected
        assert found_rows == expected_rows
    finally:
        await conn.close()


def _settle_values(rng: random.Random, request_id: str) -> list[Any]:
    outcome: dict[str, Any] = {c: None for c in _OUTCOME_COLUMNS}
    outcome.update(
        model="m",
        endpoint="chat",
        streamed=False,
        cancelled=False,
        status="success",
        cost=rng.choice([0, 50, 900, 3_000]),
        prompt_tokens=rng.randint(0, 99),
        completion_tokens=rng.randint(0, 99),
        cached_tokens=0,
        cache_write_tokens=0,
        cache_write_1h_tokens=0,
        reasoning_tokens=0,
        units=0,
        raw_usage=f"usage of {request_id}",
    )
    return [outcome[c] for c in _OUTCOME_COLUMNS]


@pytest.mark.parametrize("case", range(CASES))
async def test_a_settle_batch_charges_and_writes_as_its_settles_one_by_one(pg_url: str, case: int) -> None:
    rng = random.Random(1000 + case)
    conn = await asyncpg.connect(pg_url)
    try:
        accounts, keys = await _seed(conn, rng)
        for account in accounts:  # enough to hold everything below
            await conn.execute("UPDATE accounts SET total_credits = 10^12 WHERE id = $1", account)
        await conn.execute(
            "UPDATE api_keys SET limit_pico = NULL, disabled = FALSE, revoked_at = NULL, expires_at = NULL"
        )
        pending = []
        for n in range(rng.randint(1, 24)):
            key, account = rng.choice(keys[: rng.choice([1, 2, 6])])
            item = (
                rng.choice([1_000, 5_000]),
                key,
                NOW,
                "w1",
                account,
                f"gen_{n}",
                "m",
                "chat",
                False,
                "me",
                NOW,
            )
            assert await _one_reserve(conn, item) == "ok"
            pending.append(f"gen_{n}")
        if rng.random() < 0.3:  # one of them already settled: its second settle changes nothing
            assert await conn.fetchval(_SETTLE, pending[0], "w1", *_settle_values(rng, pending[0]))
        ids = rng.sample(pending, rng.randint(1, len(pending)))
        if rng.random() < 0.2:
            ids.append("gen_unknown")
        # Windows drawn so one key's settles may move to a new window and back within the batch.
        batch = [(i, rng.choice(["w1", "w1", "w2", "w3"]), *_settle_values(rng, i)) for i in ids]

        async def one_by_one() -> set[str]:
            return {item[0] for item in batch if await conn.fetchval(_SETTLE, *item)}

        async def in_one_batch() -> set[str]:
            return {r[0] for r in await conn.fetch(_SETTLE_MANY, *_columns(batch))}

        expected, expected_rows = await _rolled_back(conn, one_by_one)
        found, found_rows = await _rolled_back(conn, in_one_batch)
        assert found == expected
        assert found_rows == expected_rows
        # Each request the batch made final is queued for its seal once, beside those before it.
        before = (await _state(conn))["queued"]
        queued = [row_id for kind, row_id in found_rows["queued"] if (kind, row_id) not in before]
        assert sorted(queued) == sorted(found)
    finally:
        await conn.close()


async def test_a_settle_batch_writes_each_key_once(pg_url: str) -> None:
    """The point of the fold: 30 settles of one key make one new version of its row, not 30
    (the versions a transaction makes cannot be pruned before it commits; 128 of them overflow
    the page). Read from the row's xmin/ctid: one UPDATE per batch leaves it on its page."""
    rng = random.Random(7)
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(
            "INSERT INTO accounts (id, name, total_credits, created_at) VALUES ('acc', 'acc', 10^12, $1)", NOW
        )
        await conn.execute(
            "INSERT INTO api_keys (id, account_id, scope, name, hint, created_at, updated_at)"
            " VALUES ('key', 'acc', 'inference', 'k', 'h', $1, $1)",
            NOW,
        )
        ids = [f"gen_{n}" for n in range(30)]
        reserves = [(1_000, "key", NOW, "w1", "acc", i, "m", "chat", False, "me", NOW) for i in ids]
        updates = "SELECT relname, n_tup_upd FROM pg_stat_xact_user_tables WHERE relname IN ('api_keys', 'accounts')"
        async with conn.transaction():  # the counts of this transaction's own writes
            assert set(await conn.fetchval(_RESERVE_MANY, *_columns(reserves))) == {"ok"}
            reserved = dict(await conn.fetch(updates))
            batch = [(i, "w1", *_settle_values(rng, i)) for i in ids]
            assert len(await conn.fetch(_SETTLE_MANY, *_columns(batch))) == 30
            settled = dict(await conn.fetch(updates))
        assert reserved == {"api_keys": 1, "accounts": 1}
        assert settled == {"api_keys": 2, "accounts": 2}
        held, usage = await conn.fetchrow("SELECT held, usage FROM api_keys WHERE id = 'key'")
        assert held == 0 and usage == sum(item[2 + _OUTCOME_COLUMNS.index("cost")] for item in batch)
    finally:
        await conn.close()
