"""Round trips per request on PostgreSQL + Redis, counted on the wire (issue 23): a gateway whose
database and Redis connections go through counting proxies (tests/wire_count.py). One request
at a time costs one PostgreSQL round trip to reserve and one to settle, nothing else per
request (no key lookup, no pool reset), and one Redis round trip to admit plus one, off the
request's path, to finish; concurrent reserves and settles share round trips (batches.py) and
are still held and charged exactly."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
import redis

from conftest import SIM_PROVIDER_SECRET, Gateway, Sim
from wire_count import WireCount, counting_proxy

SERVER = os.environ.get("NEMO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("NEMO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
MODEL = "openai/gpt-4o-mini"
QUICK = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
# Background loops (lease, sealer, outbox, alerts, config version) query on a clock, not per
# request: about 7 round trips a second idle, and a round of the ledger sealer is 8 at once; a new
# pool connection looks its types up (3).
BACKGROUND_PER_SECOND, BACKGROUND_AT_ONCE = 20, 40


@dataclass
class Counted:
    gateway: Gateway
    postgres: WireCount
    redis: WireCount


def _on_server(sql: str) -> None:
    async def run() -> None:
        con = await asyncpg.connect(SERVER, timeout=10)
        try:
            await con.execute(sql)
        finally:
            await con.close()

    with ThreadPoolExecutor(1) as pool:  # a loop of its own, whatever pytest-asyncio runs
        pool.submit(asyncio.run, run()).result()


def _where(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or (5432 if url.startswith("postgres") else 6379)


@pytest.fixture(scope="module")
def counted(workdir: Path, sim: Sim) -> Iterator[Counted]:
    name = f"nemo_test_{secrets.token_hex(6)}"
    prefix = f"nemo-test-{secrets.token_hex(6)}:"
    _on_server(f"CREATE DATABASE {name}")
    logs = workdir / f"logs-{name}"
    logs.mkdir()
    token = "test-admin-" + secrets.token_hex(8)
    try:
        with (
            counting_proxy("postgres", _where(SERVER)) as (pg_port, pg_count),
            counting_proxy("redis", _where(REDIS)) as (redis_port, redis_count),
        ):
            env = {
                **os.environ,
                "NEMO_DATA_DIR": str(workdir / f"empty-{name}"),
                "NEMO_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{pg_port}/{name}",
                "NEMO_REDIS_URL": f"redis://127.0.0.1:{redis_port}/{urlsplit(REDIS).path.strip('/') or 0}",
                "NEMO_REDIS_PREFIX": prefix,
                "NEMO_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
                "NEMO_ADMIN_TOKEN": token,
            }
            gw = Gateway(data_dir=logs, admin_token=token, env=env)
            try:
                gw.cli("init")
                gw.cli("providers", "add", "sim", "--kind", "openai", "--base-url", f"{sim.url}/v1")
                gw.cli("providers", "add-key", "sim", "--label", "main", input=SIM_PROVIDER_SECRET + "\n")
                gw.cli("models", "import", "--vendor", "openai", "--provider", "sim")
                gw.start()
                yield Counted(gw, pg_count, redis_count)
                assert gw.stop() == 0
            finally:
                gw.stop()
    finally:
        _on_server(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        client = redis.Redis.from_url(REDIS)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


def _limited_key(gw: Gateway) -> dict[str, str]:
    """A key with a spend limit, RPM and TPM: every request pays for auth, limits, hold, settle."""
    key = gw.key(gw.account("50.00"), limit="10", rpm=1_000_000, tpm=1_000_000_000)
    return {"Authorization": f"Bearer {key}"}


def _matching(trips: Counter[str], word: str) -> int:
    return sum(n for label, n in trips.items() if word in label)


def test_one_request_at_a_time_costs_two_postgres_round_trips(counted: Counted) -> None:
    gw, n = counted.gateway, 100
    headers = _limited_key(gw)
    with httpx.Client(base_url=gw.url, headers=headers, timeout=30) as client:
        for _ in range(10):  # warm: statements prepared, key and routes cached
            assert client.post("/v1/chat/completions", json=QUICK).status_code == 200
        time.sleep(0.5)
        counted.postgres.take()
        counted.redis.take()
        started = time.monotonic()
        for _ in range(n):
            assert client.post("/v1/chat/completions", json=QUICK).status_code == 200
        time.sleep(0.3)  # the last finish reaches Redis (off the request's path)
        elapsed = time.monotonic() - started
    pg, _ = counted.postgres.take()
    trips, commands = counted.redis.take()
    assert _matching(pg, "nemo_reserve") == n, pg  # alone: a batch of one, one round trip
    assert _matching(pg, "nemo_settle") == n, pg
    assert _matching(pg, "pg_advisory_unlock_all") == 0, pg  # no reset after every statement
    per_request = {label: count for label, count in pg.items() if count >= n * 0.9}
    assert sum(per_request.values()) == 2 * n, per_request  # nothing else runs once per request
    background = BACKGROUND_PER_SECOND * elapsed + BACKGROUND_AT_ONCE
    assert sum(pg.values()) <= 2 * n + background, pg
    scripts = _matching(trips, "EVALSHA")
    assert scripts <= 2 * n, trips  # admit on the path, finish after it
    # Besides: a new pool connection's HELLO, CLIENT SETINFO and PING (a finish still out when
    # the next admission goes needs a second connection), nothing else.
    assert sum(trips.values()) - scripts <= 10, trips
    assert set(commands) <= {"EVALSHA", "HELLO", "CLIENT", "PING"} and commands["EVALSHA"] <= 2 * n, commands


def test_concurrent_requests_share_round_trips_and_are_charged_exactly(counted: Counted) -> None:
    gw, n = counted.gateway, 64
    account = gw.account("50.00")
    key = gw.key(account, limit="10", rpm=1_000_000, tpm=1_000_000_000)
    slow = {**QUICK, "messages": [{"role": "user", "content": "together [sim:latency_ms=300]"}]}
    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        assert client.post("/v1/chat/completions", json=QUICK).status_code == 200
        first = Decimal(str(gw.balance(account)["total_usage"]))
        counted.postgres.take()
        with ThreadPoolExecutor(n) as pool:
            answers = list(pool.map(lambda _: client.post("/v1/chat/completions", json=slow), range(n)))
    pg, _ = counted.postgres.take()
    assert [a.status_code for a in answers] == [200] * n
    # Reserves and settles arriving together go in one statement and one commit. The answers come
    # back together (the simulator's 300 ms), the requests as the client's threads start them.
    assert 1 <= _matching(pg, "nemo_settle") <= n // 2, pg
    assert 1 <= _matching(pg, "nemo_reserve") < n, pg
    charged = sum(Decimal(a.headers["x-nemo-cost"]) for a in answers)
    balance = gw.balance(account)
    assert Decimal(str(balance["total_usage"])) - first == charged  # each exactly once
    assert Decimal(str(balance["held"])) == 0
    report = gw.verify()
    assert (report["ok"], report["problems"]) == (True, []), report


def _generations(gw: Gateway, account_id: str) -> dict[str, int]:
    async def run() -> dict[str, int]:
        con = await asyncpg.connect(gw.env["NEMO_DATABASE_URL"], timeout=10)
        try:
            found = await con.fetch(
                "SELECT status, count(*) FROM generations WHERE account_id = $1 GROUP BY status", account_id
            )
        finally:
            await con.close()
        return {row[0]: row[1] for row in found}

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


def test_holds_reserved_beside_refused_admissions_are_given_back(counted: Counted) -> None:
    """With Redis limits, a request's admission and its reserve go at once when no other
    admission is out (service/admission.py): a request the limits refuse gets its 429 with its
    hold given back exactly (`nemo_unreserve`: no record, nothing held); once refused, the key's
    next requests wait for the limits and reach no database while it is asked to wait. Many at
    once: as many answered as the limit allows, nothing left held, the ledger clean."""
    gw = counted.gateway
    account = gw.account("50.00")
    key = gw.key(account, limit="10", rpm=3)
    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        counted.postgres.take()
        answers = [client.post("/v1/chat/completions", json=QUICK) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        pg, _ = counted.postgres.take()
        assert _matching(pg, "nemo_reserve") == 4 and _matching(pg, "nemo_unreserve") == 1, pg
        charged = sum(Decimal(a.headers["x-nemo-cost"]) for a in answers[:3])
        balance = gw.balance(account)
        assert Decimal(str(balance["total_usage"])) == charged
        assert Decimal(str(balance["held"])) == 0
        assert _generations(gw, account) == {"success": 3}
        counted.postgres.take()
        for _ in range(5):
            assert client.post("/v1/chat/completions", json=QUICK).status_code == 429
        pg, _ = counted.postgres.take()
        assert _matching(pg, "nemo_reserve") == _matching(pg, "nemo_unreserve") == 0, pg
    n = 12
    account = gw.account("50.00")
    key = gw.key(account, limit="10", rpm=3)
    with (
        httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client,
        ThreadPoolExecutor(n) as pool,
    ):
        answers = list(pool.map(lambda _: client.post("/v1/chat/completions", json=QUICK), range(n)))
    assert sorted(a.status_code for a in answers) == [200] * 3 + [429] * (n - 3)
    balance = gw.balance(account)
    assert Decimal(str(balance["held"])) == 0
    assert _generations(gw, account) == {"success": 3}
    report = gw.verify()
    assert (report["ok"], report["problems"]) == (True, []), report
