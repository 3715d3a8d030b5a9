"""`nemorouter init` + `nemorouter serve` on PostgreSQL, from an empty data dir (CONTRACT.md: "A
replica needs no local state"): exact costs streaming and not, the hard cap under 200 concurrent
requests, and a clean ledger. PostgreSQL must be running (as for tests/store); a fresh database
is made for this module and dropped afterwards."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from conftest import SIM_PROVIDER_SECRET, Gateway, Sim
from nemorouter.store.postgres import PostgresStore
from secret_scan import SESSION as SECRET_SCAN

SERVER = os.environ.get("NEMO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# The bundled list price of openai/gpt-4o-mini, USD per 1M tokens (src/nemorouter/data/catalog.csv).
INPUT_PER_M, OUTPUT_PER_M = Decimal("0.15"), Decimal("0.6")
CAPPED = {
    "model": "openai/gpt-4o-mini",
    # The simulator sleeps 300 ms, so all 200 requests are in flight together.
    "messages": [{"role": "user", "content": "Cap me [sim:latency_ms=300]"}],
    "max_tokens": 50,
}


def _on_server(sql: str) -> None:
    async def run() -> None:
        try:
            con = await asyncpg.connect(SERVER, timeout=10)
        except (OSError, asyncpg.PostgresError) as exc:
            pytest.fail(
                f"PostgreSQL is not reachable at {SERVER} ({exc}); start it or set NEMO_TEST_POSTGRES_URL"
            )
        try:
            await con.execute(sql)
        finally:
            await con.close()

    with ThreadPoolExecutor(1) as pool:  # a loop of its own, whatever pytest-asyncio runs
        pool.submit(asyncio.run, run()).result()


@pytest.fixture(scope="module")
def pg_gateway(workdir: Path, sim: Sim) -> Iterator[Gateway]:
    name = f"nemo_test_{secrets.token_hex(6)}"
    _on_server(f"CREATE DATABASE {name}")
    empty = workdir / f"empty-{name}"  # NEMO_DATA_DIR: must stay empty (it is never even made)
    logs = workdir / f"logs-{name}"
    logs.mkdir()
    token = "test-admin-" + secrets.token_hex(8)
    env = {
        **os.environ,
        "NEMO_DATA_DIR": str(empty),
        "NEMO_DATABASE_URL": SERVER.rsplit("/", 1)[0] + "/" + name,
        "NEMO_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "NEMO_ADMIN_TOKEN": token,
    }
    gw = Gateway(data_dir=logs, admin_token=token, env=env)
    try:
        every = [version for version, _ in PostgresStore._migration_files()]
        assert gw.cli_json("init")["migrations_applied"] == every
        assert gw.cli_json("init")["migrations_applied"] == []  # idempotent
        gw.cli("providers", "add", "sim", "--kind", "openai", "--base-url", f"{sim.url}/v1")
        gw.cli("providers", "add-key", "sim", "--label", "main", input=SIM_PROVIDER_SECRET + "\n")
        gw.cli("models", "import", "--vendor", "openai", "--provider", "sim")
        gw.start()
        yield gw
        assert gw.stop() == 0
        assert not empty.exists() or not any(empty.iterdir())
    finally:
        gw.stop()
        SECRET_SCAN.before_dropping_postgres(env["NEMO_DATABASE_URL"])
        _on_server(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def exact(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


def expected_cost(prompt: int, completion: int) -> Decimal:
    return (prompt * INPUT_PER_M + completion * OUTPUT_PER_M) / 10**6


def test_ready_on_postgres(pg_gateway: Gateway) -> None:
    assert httpx.get(f"{pg_gateway.url}/readyz").json() == {"ok": True, "database": True}


def test_chat_exact_cost_non_stream_and_stream(pg_gateway: Gateway) -> None:
    account = pg_gateway.account("5.00")
    key = pg_gateway.key(account)
    headers = {"Authorization": f"Bearer {key}"}
    body = {
        "model": "openai/gpt-4o-mini",
        "messages": [{"role": "user", "content": "Hello there, how are you?"}],
    }
    whole = httpx.post(f"{pg_gateway.url}/v1/chat/completions", json=body, headers=headers, timeout=30)
    assert whole.status_code == 200, whole.text
    usage = exact(whole.text)["usage"]
    cost = expected_cost(usage["prompt_tokens"], usage["completion_tokens"])
    assert usage["cost"] == cost == Decimal(whole.headers["x-nemo-cost"])

    with httpx.stream(
        "POST",
        f"{pg_gateway.url}/v1/chat/completions",
        json={**body, "stream": True, "max_tokens": 12},
        headers=headers,
        timeout=30,
    ) as streamed:
        request_id = streamed.headers["x-nemo-request-id"]
        frames = [line for line in streamed.iter_lines() if line.startswith("data: ")]
    assert frames[-1] == "data: [DONE]"
    final = exact(frames[-2][len("data: ") :])
    stream_cost = final["usage"]["cost"]
    assert final["usage"]["completion_tokens"] == 12
    assert stream_cost == expected_cost(final["usage"]["prompt_tokens"], 12)

    record = httpx.get(f"{pg_gateway.url}/v1/generation", params={"id": request_id}, headers=headers)
    data = exact(record.text)["data"]
    assert (data["streamed"], data["status"], data["total_cost"]) == (True, "success", stream_cost)
    balance = pg_gateway.balance(account)
    assert Decimal(str(balance["total_usage"])) == cost + stream_cost
    assert Decimal(str(balance["balance"])) == Decimal("5") - cost - stream_cost
    assert balance["held"] == 0
    report = pg_gateway.verify()
    assert (report["ok"], report["problems"], report["overruns"]) == (True, [], 0), report


def hold_of(gateway: Gateway) -> Decimal:
    """The worst case the gateway holds for CAPPED, read from the 402 of a key that affords nothing."""
    probe = gateway.key(gateway.account("1.00"), limit="0.000000000001")
    refused = httpx.post(
        f"{gateway.url}/v1/chat/completions", json=CAPPED, headers={"Authorization": f"Bearer {probe}"}
    )
    assert refused.status_code == 402, refused.text
    needed: Decimal = exact(refused.text)["error"]["needed"]
    return needed


async def fire(gateway: Gateway, key: str, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=gateway.url, limits=limits, timeout=60) as client:
        return await asyncio.gather(
            *(
                client.post("/v1/chat/completions", json=CAPPED, headers={"Authorization": f"Bearer {key}"})
                for _ in range(count)
            )
        )


@pytest.mark.parametrize("cap", ["key_limit_exceeded", "insufficient_credits"])
def test_the_cap_holds_under_200_concurrent_requests(pg_gateway: Gateway, cap: str) -> None:
    allowed = hold_of(pg_gateway) * 10
    if cap == "key_limit_exceeded":
        account = pg_gateway.account("100.00")
        key = pg_gateway.key(account, limit=str(allowed))
    else:
        account = pg_gateway.account(str(allowed))
        key = pg_gateway.key(account)
    responses = asyncio.run(fire(pg_gateway, key, 200))
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert len(ok) >= 10, f"only {len(ok)} requests were served"
    assert {r.status_code for r in refused} == {402}
    assert {r.json()["error"]["type"] for r in refused} == {cap}
    charged = sum((exact(r.text)["usage"]["cost"] for r in ok), Decimal(0))
    balance = pg_gateway.balance(account)
    assert Decimal(str(balance["total_usage"])) == charged <= allowed
    assert balance["held"] == 0
    report = pg_gateway.verify()
    assert report["ok"] is True, report
    assert [o for o in report["overrun_requests"] if o["account_id"] == account] == [], report
    # The CLI reads the same database: same verdict.
    assert pg_gateway.cli_json("ledger", "verify")["ok"] is True
