"""Provision a fresh NemoRouter for the benchmark through its admin CLI, every feature on.

Kept apart from run.py so that a change in the CLI is a change here only. The provisioning mirrors
real use: an upstream provider with a vaulted key, a priced model, a funded account and a key with
spend, RPM and TPM limits, so each benchmarked request pays for auth, limits, the credit hold and
its settlement. The limits are set high enough never to reject a request in a long run.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

ADMIN_TOKEN = "bench-admin-token"
UPSTREAM_KEY = "sk-stub-upstream-key"
MODEL = "bench/gpt-4o-mini"
INPUT_USD_PER_MTOK, OUTPUT_USD_PER_MTOK = "0.15", "0.6"  # the model's prices, exact decimals


@dataclass
class NemoRouter:
    """What run.py needs to start and load the gateway."""

    serve_argv: list[str]
    env: dict[str, str]
    api_key: str
    model: str = MODEL
    account_id: str = ""
    cleanup: Callable[[], None] = field(default=lambda: None)  # drops what a shared setup made


def cli_path() -> Path:
    """The `nemorouter` console script installed in the same venv as this interpreter."""
    return Path(sys.executable).parent / "nemorouter"


def _cli(env: dict[str, str], *args: str, stdin: str | None = None) -> Any:
    """Run one admin command and return its JSON output; fail loudly with its stderr."""
    argv = [str(cli_path()), *args]
    proc = subprocess.run(
        argv, input=stdin, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv[1:])}` exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    out = proc.stdout.strip()
    try:
        return json.loads(out) if out else None
    except json.JSONDecodeError:  # tolerate log lines before the JSON document
        return json.loads(out.splitlines()[-1])


def setup_nemorouter(
    data_dir: Path, stub_url: str, port: int, shared: dict[str, str] | None = None, workers: int = 1
) -> NemoRouter:
    """Initialise state in `data_dir` against the stub at `stub_url` (.../v1); return how to serve it.

    With `shared` (env vars: NEMO_DATABASE_URL, NEMO_REDIS_URL, ...) the state is in PostgreSQL and
    Redis instead of the data dir's SQLite file, and `workers` processes serve it.
    """
    if not cli_path().exists():
        raise RuntimeError(
            f"NemoRouter CLI not found at {cli_path()} (is the package installed in this venv?)"
        )
    env = {**os.environ, "NEMO_DATA_DIR": str(data_dir), "NEMO_ADMIN_TOKEN": ADMIN_TOKEN, **(shared or {})}
    _cli(env, "init")
    _cli(env, "providers", "add", "stub", "--kind", "openai", "--base-url", stub_url)
    _cli(env, "providers", "add-key", "stub", "--label", "main", stdin=UPSTREAM_KEY + "\n")
    prices = ["--input", INPUT_USD_PER_MTOK, "--output", OUTPUT_USD_PER_MTOK]
    prices += ["--context", "128000", "--max-output", "16384"]
    _cli(env, "models", "add", MODEL, *prices, "--deploy", "stub:gpt-4o-mini")
    account_id = _cli(env, "accounts", "create", "bench", "--email", "bench@example.com")["data"]["id"]
    _cli(env, "credits", "add", account_id, "1000000", "--reason", "bench", "--idempotency-key", "bench-1")
    limits = ["--limit", "900000", "--rpm", "100000000", "--tpm", "100000000000"]
    created = _cli(env, "keys", "create", account_id, "--name", "bench", *limits)
    # `python -m nemorouter` is the command with its entry point (cli/entry.py), which loads the
    # compiled build for `serve`, whatever console script an older install left in the venv.
    serve = [sys.executable, "-m", "nemorouter", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if workers != 1:
        serve += ["--workers", str(workers)]
    return NemoRouter(serve_argv=serve, env=env, api_key=created["key"], account_id=account_id)


def add_key(nemo: NemoRouter, name: str) -> tuple[str, str]:
    """Another key of the bench account, no limits but its spend cap: (secret, key id)."""
    created = _cli(nemo.env, "keys", "create", nemo.account_id, "--name", name, "--limit", "900000")
    return created["key"], created["data"]["id"]


def exact_cost_pico(prompt_tokens: int, completion_tokens: int) -> int:
    """What the bench model must charge for a usage, from its prices (USD per million tokens)."""
    per_token = Decimal(10**12) / Decimal(10**6)
    cost = (
        prompt_tokens * Decimal(INPUT_USD_PER_MTOK) + completion_tokens * Decimal(OUTPUT_USD_PER_MTOK)
    ) * per_token
    assert cost == cost.to_integral_value()
    return int(cost)


def charges(nemo: NemoRouter, key_id: str, limit: int) -> dict[str, Any]:
    """What the gateway charged (bench/charges.py, through its store; run after it stopped)."""
    argv = [sys.executable, str(Path(__file__).with_name("charges.py")), nemo.account_id, key_id, str(limit)]
    proc = subprocess.run(argv, env=nemo.env, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"reading the charges failed: {proc.stderr.strip()[-2000:]}")
    found: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return found


def setup_shared(
    data_dir: Path, stub_url: str, port: int, postgres_url: str, redis_url: str, workers: int
) -> NemoRouter:
    """The same gateway on a fresh PostgreSQL database (made here, dropped by `cleanup`) and Redis."""
    import asyncpg
    import redis

    name = f"nemo_bench_{secrets.token_hex(6)}"
    prefix = f"nemo-bench-{secrets.token_hex(6)}:"

    def on_server(sql: str) -> None:
        async def run() -> None:
            con = await asyncpg.connect(postgres_url, timeout=10)
            try:
                await con.execute(sql)
            finally:
                await con.close()

        asyncio.run(run())

    def cleanup() -> None:
        on_server(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()

    on_server(f"CREATE DATABASE {name}")
    if os.environ.get("NEMO_BENCH_PG_ASYNC_COMMIT") == "1":  # what the disk costs: commits skip the WAL flush
        on_server(f"ALTER DATABASE {name} SET synchronous_commit = off")
    shared = {
        "NEMO_DATABASE_URL": postgres_url.rsplit("/", 1)[0] + "/" + name,
        "NEMO_REDIS_URL": redis_url,
        "NEMO_REDIS_PREFIX": prefix,
        "NEMO_MASTER_KEY": _master_key(),
    }
    try:
        nemo = setup_nemorouter(data_dir, stub_url, port, shared, workers)
    except BaseException:
        cleanup()
        raise
    nemo.cleanup = cleanup
    return nemo


def _master_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()
