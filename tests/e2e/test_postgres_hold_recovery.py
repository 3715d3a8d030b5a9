"""Two `nemorouter serve` replicas on one PostgreSQL database, both with streams open; one is
killed with SIGKILL. The survivor releases the dead one's holds once its lease lapses (a short
lease here), never touches its own, finishes every stream it serves, and the ledger stays
exact: no hold left, every completed charge kept, `ledger verify` ok (seals included)."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx
import pytest

from conftest import SIM_PROVIDER_SECRET, Gateway, Sim

SERVER = os.environ.get("NEMO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
LEASE = 2.0  # seconds; the default is 15
PER_REPLICA = 15


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _server(sql: str) -> None:
    con = await asyncpg.connect(SERVER, timeout=10)
    try:
        await con.execute(sql)
    finally:
        await con.close()


async def _rows(url: str, sql: str) -> list[asyncpg.Record]:
    con = await asyncpg.connect(url, timeout=10)
    try:
        found: list[asyncpg.Record] = await con.fetch(sql)
        return found
    finally:
        await con.close()


@pytest.fixture
def replicas(tmp_path: Path, sim: Sim) -> Iterator[tuple[Gateway, Gateway, str]]:
    name = f"nemo_test_{secrets.token_hex(6)}"
    _run(_server(f"CREATE DATABASE {name}"))
    url = SERVER.rsplit("/", 1)[0] + "/" + name
    token = "test-admin-" + secrets.token_hex(8)
    env = {
        **os.environ,
        "NEMO_DATABASE_URL": url,
        "NEMO_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "NEMO_ADMIN_TOKEN": token,
        "NEMO_PROCESS_LEASE": str(LEASE),
        "NEMO_PROCESS_LEASE_RENEW": "0.3",
    }
    gateways = []
    for n in range(2):
        logs = tmp_path / f"replica-{n}"
        logs.mkdir()
        gateways.append(Gateway(data_dir=logs, admin_token=token, env={**env, "NEMO_DATA_DIR": str(logs)}))
    first, second = gateways
    try:
        first.cli("init")
        first.cli("providers", "add", "sim", "--kind", "openai", "--base-url", f"{sim.url}/v1")
        first.cli("providers", "add-key", "sim", "--label", "main", input=SIM_PROVIDER_SECRET + "\n")
        first.cli("models", "import", "--vendor", "openai", "--provider", "sim")
        first.start()
        second.start()
        yield first, second, url
    finally:
        for gw in gateways:
            gw.stop()
        _run(_server(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


async def stream_all(url: str, key: str, count: int, content: str) -> list[tuple[int, bool]]:
    """(status, whether the stream ended with [DONE]) per request."""
    body = {"model": "openai/gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": content}]}

    async def one(session: aiohttp.ClientSession) -> tuple[int, bool]:
        try:
            async with session.post(
                f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
            ) as resp:
                text = await resp.text()
                return resp.status, text.rstrip().endswith("data: [DONE]")
        except aiohttp.ClientError:
            return 0, False

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=count)) as session:
        return list(await asyncio.gather(*(one(session) for _ in range(count))))


def test_a_killed_replica_s_holds_are_released_by_the_survivor(
    replicas: tuple[Gateway, Gateway, str],
) -> None:
    doomed, survivor, url = replicas
    account = survivor.account("5.00")
    key = survivor.key(account)

    async def run() -> tuple[list[tuple[int, bool]], list[tuple[int, bool]], dict[str, Any]]:
        # The doomed replica's streams last 3 s, the survivor's 7 s: the survivor's are still
        # open, holding, when the dead one's lease lapses and its holds are released.
        short = asyncio.create_task(
            stream_all(doomed.url, key, PER_REPLICA, "A [sim:tokens=30,chunk_delay_ms=100]")
        )
        long = asyncio.create_task(
            stream_all(survivor.url, key, PER_REPLICA, "B [sim:tokens=35,chunk_delay_ms=200]")
        )
        await asyncio.sleep(1.0)
        pending = await _rows(url, "SELECT owner FROM generations WHERE status = 'pending'")
        assert len(pending) == 2 * PER_REPLICA and len({r["owner"] for r in pending}) == 2
        assert doomed.proc is not None
        os.kill(doomed.proc.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        seen: dict[str, Any] = {}
        while time.monotonic() - killed_at < LEASE + 3:
            rows = await _rows(
                url, "SELECT owner, status FROM generations WHERE status IN ('pending', 'orphaned')"
            )
            orphaned = [r for r in rows if r["status"] == "orphaned"]
            if orphaned:
                (live,) = await _rows(url, "SELECT owner FROM process_leases")
                seen = {
                    "after": time.monotonic() - killed_at,
                    "pending_owners": {r["owner"] for r in rows if r["status"] == "pending"},
                    "pending": sum(1 for r in rows if r["status"] == "pending"),
                    "orphaned_owners": {r["owner"] for r in orphaned},
                    "live": live["owner"],
                }
                break
            await asyncio.sleep(0.1)
        return await short, await long, seen

    short, long, seen = asyncio.run(run())
    assert doomed.proc is not None and doomed.proc.wait(timeout=10) == -signal.SIGKILL
    assert seen, f"no hold of the killed replica was released within {LEASE + 3} s"
    # Released only after the lease lapsed, while every survivor stream was still holding.
    assert LEASE - 0.5 <= seen["after"] <= LEASE + 2, seen
    assert seen["pending_owners"] == {seen["live"]} and seen["pending"] == PER_REPLICA, seen
    assert seen["live"] not in seen["orphaned_owners"]
    assert long == [(200, True)] * PER_REPLICA  # the survivor's streams were never touched
    finished = sum(1 for status, done in short if status == 200 and done)

    balance = survivor.balance(account)
    assert balance["held"] == 0
    mgmt = survivor.management_key(account)
    listed = httpx.get(
        f"{survivor.url}/v1/generations", params={"limit": 500}, headers={"Authorization": f"Bearer {mgmt}"}
    ).json()["data"]
    statuses = [g["status"] for g in listed]
    assert "pending" not in statuses and statuses.count("success") >= PER_REPLICA + finished
    assert statuses.count("orphaned") == PER_REPLICA - finished > 0
    charged = sum(Decimal(str(g["total_cost"])) for g in listed)
    assert charged == Decimal(str(balance["total_usage"])) > 0  # every completed charge kept
    time.sleep(1.0)  # the survivor's sealer runs twice a second
    report = survivor.cli_json("ledger", "verify")
    assert report["ok"] is True, report
    sealed = _run(_rows(url, "SELECT count(*) AS n FROM ledger_seals"))[0]["n"]
    assert sealed == 1 + statuses.count("success")  # the credit and every charge
