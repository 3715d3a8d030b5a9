"""SIGTERM lets in-flight streams finish and settle; a kill -9 leaves no hold open after restart."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from decimal import Decimal
from pathlib import Path

import aiohttp
import httpx

from conftest import Sim, new_gateway


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


def test_sigterm_drains_50_streams_then_exits_0(tmp_path: Path, sim: Sim) -> None:
    gw = new_gateway(tmp_path, sim)
    gw.start()
    account = gw.account("5.00")
    key = gw.key(account)

    async def run() -> list[tuple[int, bool]]:
        task = asyncio.create_task(stream_all(gw.url, key, 50, "Slow [sim:tokens=30,chunk_delay_ms=50]"))
        await asyncio.sleep(0.6)  # every stream is under way
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGTERM)
        return await task

    results = asyncio.run(run())
    assert gw.proc is not None and gw.proc.wait(timeout=40) == 0
    assert results == [(200, True)] * 50
    gw.start()  # the ledger, read back after the restart
    try:
        balance = gw.balance(account)
        assert balance["held"] == 0 and Decimal(str(balance["total_usage"])) > 0
        assert gw.cli_json("ledger", "verify")["ok"] is True
    finally:
        assert gw.stop() == 0


def test_kill_9_mid_load_then_restart_leaves_no_open_hold(tmp_path: Path, sim: Sim) -> None:
    gw = new_gateway(tmp_path, sim)
    gw.start()
    account = gw.account("5.00")
    key = gw.key(account)

    async def run() -> list[tuple[int, bool]]:
        task = asyncio.create_task(stream_all(gw.url, key, 200, "Slow [sim:tokens=30,chunk_delay_ms=40]"))
        await asyncio.sleep(0.8)
        assert gw.proc is not None
        os.kill(gw.proc.pid, signal.SIGKILL)
        return await task

    results = asyncio.run(run())
    assert gw.proc is not None and gw.proc.wait(timeout=10) == -signal.SIGKILL
    finished = sum(1 for status, done in results if status == 200 and done)
    time.sleep(0.2)
    gw.start()  # recovery releases the holds the dead process left
    try:
        balance = gw.balance(account)
        assert balance["held"] == 0
        report = gw.verify()
        assert report["ok"] is True, report
        records = gw.cli_json("ledger", "verify")
        assert records["ok"] is True
        # Every stream that completed before the kill was charged, once: its record says success.
        mgmt = gw.management_key(account)
        listed = httpx.get(
            f"{gw.url}/v1/generations", params={"limit": 500}, headers={"Authorization": f"Bearer {mgmt}"}
        ).json()["data"]
        statuses = [g["status"] for g in listed]
        assert statuses.count("success") >= finished
        assert "pending" not in statuses
        assert set(statuses) <= {"success", "orphaned", "cancelled", "partial", "error"}
        charged = sum(Decimal(str(g["total_cost"])) for g in listed)
        assert charged == Decimal(str(balance["total_usage"]))
    finally:
        assert gw.stop() == 0
