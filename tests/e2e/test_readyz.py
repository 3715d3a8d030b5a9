"""GET /readyz checks the database, and Redis when NEMO_REDIS_URL is set: 503 naming the database
when it does not answer; a Redis that does not answer is named as `degraded` with a 200 (every
replica still serves then, on per-process rate limits). With a real Redis, a Redis URL
on a closed port, and a PostgreSQL database that goes away under a running gateway."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
from pathlib import Path

import asyncpg
import httpx

from conftest import Gateway, free_port, new_gateway

SERVER = os.environ.get("NEMO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("NEMO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def ready(gw: Gateway) -> tuple[int, dict[str, object]]:
    answer = httpx.get(f"{gw.url}/readyz", timeout=10)
    return answer.status_code, answer.json()


def with_redis(gw: Gateway, url: str) -> Gateway:
    # A key prefix of its own, should anything in the gateway write to this Redis.
    gw.env.update(NEMO_REDIS_URL=url, NEMO_REDIS_PREFIX=f"nemo-test-{secrets.token_hex(4)}:")
    return gw


def test_ready_with_a_live_redis(tmp_path: Path) -> None:
    gw = with_redis(new_gateway(tmp_path, None), REDIS)
    gw.start()
    try:
        assert ready(gw) == (200, {"ok": True, "database": True, "redis": True})
    finally:
        assert gw.stop() == 0


def test_a_redis_that_does_not_answer_is_named_but_leaves_the_replica_ready(tmp_path: Path) -> None:
    gw = with_redis(new_gateway(tmp_path, None), f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
    gw.start()
    try:
        for _ in range(2):  # and again: the probe's connection is retried each time
            assert ready(gw) == (200, {"ok": True, "database": True, "redis": False, "degraded": ["redis"]})
        assert httpx.get(f"{gw.url}/healthz").status_code == 200
    finally:
        assert gw.stop() == 0


async def _server(sql: str) -> None:
    con = await asyncpg.connect(SERVER, timeout=10)
    try:
        await con.execute(sql)
    finally:
        await con.close()


def test_a_database_that_went_away_is_named(tmp_path: Path) -> None:
    name = f"nemo_test_{secrets.token_hex(6)}"
    asyncio.run(_server(f"CREATE DATABASE {name}"))
    gw = with_redis(new_gateway(tmp_path, None), REDIS)
    gw.env.update(
        NEMO_DATABASE_URL=SERVER.rsplit("/", 1)[0] + "/" + name,
        NEMO_MASTER_KEY=base64.b64encode(os.urandom(32)).decode(),
    )
    try:
        gw.cli("init")
        gw.start()
        assert ready(gw) == (200, {"ok": True, "database": True, "redis": True})
        asyncio.run(_server(f"DROP DATABASE {name} WITH (FORCE)"))
        assert ready(gw) == (503, {"ok": False, "database": False, "redis": True, "failed": ["database"]})
    finally:
        gw.stop()
        asyncio.run(_server(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
