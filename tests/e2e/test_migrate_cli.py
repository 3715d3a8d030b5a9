"""`nemorouter migrate up|status` on both backends, through the real command: what is pending and
applied, per file; applying only what is missing; several `up` at once on PostgreSQL apply each
migration once; a database that cannot be reached is one error line, without its password."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from conftest import NEMOROUTER
from nemorouter.store.migration_files import migration_names

SERVER = os.environ.get("NEMO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def env_for(data_dir: Path, database_url: str | None = None) -> dict[str, str]:
    env = {**os.environ, "NEMO_DATA_DIR": str(data_dir)}
    for name in ("NEMO_DATABASE_URL", "NEMO_MASTER_KEY", "NEMO_ADMIN_TOKEN", "NEMO_REDIS_URL"):
        env.pop(name, None)
    if database_url is not None:
        env["NEMO_DATABASE_URL"] = database_url
    return env


def nemo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NEMOROUTER, *args], env=env, capture_output=True, text=True, timeout=60)


def nemo_json(env: dict[str, str], *args: str) -> Any:
    result = nemo(env, *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


async def _server(sql: str) -> None:
    con = await asyncpg.connect(SERVER, timeout=10)
    try:
        await con.execute(sql)
    finally:
        await con.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    name = f"nemo_test_{secrets.token_hex(6)}"
    asyncio.run(_server(f"CREATE DATABASE {name}"))
    try:
        yield SERVER.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(_server(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def states(status: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["state"] for m in status["migrations"]}


def test_migrate_on_sqlite(tmp_path: Path) -> None:
    env = {**env_for(tmp_path / "data"), "NEMO_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()}
    names = list(migration_names("sqlite").values())
    assert names[:2] == ["0001_init", "0002_leaks_and_account_limits"]
    assert "0007_process_leases" in names

    before = nemo_json(env, "migrate", "status")
    assert before["backend"] == "sqlite" and before["pending"] == names
    assert set(states(before).values()) == {"pending"}
    assert not (tmp_path / "data" / "nemorouter.db").exists()  # looking never creates a database

    up = nemo_json(env, "migrate", "up")
    assert (up["applied"], up["pending"]) == (names, [])
    after = nemo_json(env, "migrate", "status")
    assert after["pending"] == [] and set(states(after).values()) == {"applied"}
    assert all(m["applied_at"].startswith("20") for m in after["migrations"])
    assert nemo_json(env, "migrate", "up")["applied"] == []

    # A database from an older build: the last migration is missing; `up` applies just that.
    db = sqlite3.connect(tmp_path / "data" / "nemorouter.db")
    with db:
        db.execute("DROP TABLE process_leases")
        db.execute("DELETE FROM schema_migrations WHERE version = 7")
    db.close()
    assert nemo_json(env, "migrate", "status")["pending"] == ["0007_process_leases"]
    stale = nemo(env, "accounts", "list")
    assert stale.returncode == 1 and "nemorouter migrate up" in stale.stderr
    assert nemo_json(env, "migrate", "up")["applied"] == ["0007_process_leases"]
    assert nemo_json(env, "init")["migrations_applied"] == []  # init finds nothing left to do


def test_migrate_on_postgres(tmp_path: Path, pg_url: str) -> None:
    env = env_for(tmp_path / "data", pg_url)
    names = list(migration_names("postgres").values())
    before = nemo_json(env, "migrate", "status")
    assert before["backend"] == "postgres" and before["pending"] == names
    assert before["database"] == pg_url.split("@", 1)[1]

    # Three deploy jobs at once: the first applies everything, the others wait and find nothing.
    jobs = [
        subprocess.Popen([*NEMOROUTER, "migrate", "up"], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [json.loads(job.communicate(timeout=60)[0]) for job in jobs]
    assert sorted(o["applied"] for o in outputs) == [[], [], names]
    assert all(o["pending"] == [] for o in outputs)
    after = nemo_json(env, "migrate", "status")
    assert after["pending"] == [] and set(states(after).values()) == {"applied"}

    async def forget_newest() -> None:
        con = await asyncpg.connect(pg_url)
        try:
            await con.execute("DROP TABLE process_leases; DELETE FROM schema_migrations WHERE version = 7")
        finally:
            await con.close()

    asyncio.run(forget_newest())
    assert states(nemo_json(env, "migrate", "status"))["0007_process_leases"] == "pending"
    assert nemo_json(env, "migrate", "up")["applied"] == ["0007_process_leases"]


def test_an_unreachable_database_is_one_error_line(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = env_for(tmp_path, f"postgresql://nemo:s3cret-pw@127.0.0.1:{port}/nemo")
    for command in ("up", "status"):
        result = nemo(env, "migrate", command)
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr.startswith(f"error: cannot open PostgreSQL at 127.0.0.1:{port}/nemo")
        assert len(result.stderr.strip().splitlines()) == 1 and "s3cret-pw" not in result.stderr


def test_a_bad_setting_is_one_error_line(tmp_path: Path) -> None:
    for name, value in (
        ("NEMO_PROCESS_LEASE_RENEW", "20"),
        ("NEMO_PROCESS_LEASE", "long"),
        ("NEMO_DB_POOL_MAX", "many"),
    ):
        result = nemo({**env_for(tmp_path), name: value}, "migrate", "status")
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.startswith("error: ") and name in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
