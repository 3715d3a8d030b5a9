"""The suite-wide secret scan (tests/secret_scan.py) finds what it must: planted secrets in a log
file, a SQLite database (main file and WAL) and a PostgreSQL dump; and nothing in clean files.

The planted files live outside the session's directory, so the real scan at the end never sees them.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from nemorouter.logs import redact
from nemorouter.service.keyformat import new_key
from secret_scan import Registry, dump_postgres, files_to_scan, report, scan

SERVER = os.environ.get("NEMO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def outside() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="planted-secrets-") as path:
        yield Path(path)


def test_a_planted_secret_in_a_log_line_is_found(outside: Path) -> None:
    registry = Registry()
    registry.add("sk-provider-planted-123456", "a provider secret")
    (outside / "gateway.log").write_text('{"msg": "calling with sk-provider-planted-123456"}\n')
    (outside / "clean.log").write_text('{"msg": "calling with [redacted]"}\n')
    (outside / "notes.txt").write_text("sk-provider-planted-123456")  # not a log: not scanned
    hits = scan(files_to_scan(outside), registry)
    assert [(h.path.name, h.what) for h in hits] == [("gateway.log", "a provider secret")]
    assert "sk-provider-planted" not in report(hits, 2)  # the report names places, never secrets


def test_many_secrets_some_inside_others_are_each_found_where_they_are(outside: Path) -> None:
    # The scan writes its secrets as one trie-shaped pattern (secret_scan._one_pattern): every
    # planted secret is found at its own offset, the longer of two that start alike as itself.
    registry = Registry()
    planted = [f"tok-{secrets.token_urlsafe(12)}" for _ in range(300)]
    planted += ["shared-prefix-secret", "shared-prefix-secret-longer", "shared-prefix-other"]
    planted += ["long-" + secrets.token_hex(4000)]  # deeper than Python's recursion limit, byte by byte
    for number, secret in enumerate(planted):
        registry.add(secret, f"secret {number}")
    noise = secrets.token_bytes(64).hex()
    text = "".join(f"{noise[: number % 50]} {secret};" for number, secret in enumerate(planted))
    (outside / "many.log").write_text(text + " shared-prefix-secre shared-prefix- tok-\n")
    hits = scan(files_to_scan(outside), registry)
    assert [(h.what, h.offset) for h in hits] == [
        (f"secret {number}", text.index(f" {secret};") + 1) for number, secret in enumerate(planted)
    ]


def test_an_unregistered_key_is_found_by_its_shape_but_not_once_redacted(outside: Path) -> None:
    key, mgmt = new_key("inference"), new_key("management")
    (outside / "a.log").write_text(f"key {key}\nmgmt {mgmt}\n")
    (outside / "b.log").write_text(redact(f"key {key} mgmt {mgmt}") + "\n")
    hits = scan(files_to_scan(outside), Registry())
    assert sorted((h.path.name, h.what) for h in hits) == [("a.log", "a NemoRouter key")] * 2


def test_a_planted_key_in_a_sqlite_database_and_its_wal_is_found(outside: Path) -> None:
    key = new_key("inference")
    registry = Registry()
    registry.add(key, "a customer key")
    db = outside / "nemorouter.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA wal_autocheckpoint=0")
    con.execute("CREATE TABLE t (v TEXT)")
    con.execute("INSERT INTO t VALUES (?)", (key,))
    con.commit()
    hits = scan(files_to_scan(outside), registry)
    assert {h.path.name for h in hits} == {"nemorouter.db-wal"}
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    assert {h.path.name for h in scan(files_to_scan(outside), registry)} == {"nemorouter.db"}


async def test_a_planted_key_in_a_postgres_database_is_found_in_its_dump(outside: Path) -> None:
    key = new_key("management")
    name = f"nemo_test_{secrets.token_hex(6)}"
    server = await asyncpg.connect(SERVER, timeout=10)
    await server.execute(f"CREATE DATABASE {name}")
    url = SERVER.rsplit("/", 1)[0] + "/" + name
    try:
        con = await asyncpg.connect(url)
        await con.execute("CREATE TABLE notes (id int, body text)")
        await con.execute("INSERT INTO notes VALUES (1, $1)", f"note: {key}")
        await con.close()
        dump_postgres(url, outside / "db.pgdump")
    finally:
        await server.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await server.close()
    hits = scan(files_to_scan(outside), Registry())
    assert [(h.path.name, h.what) for h in hits] == [("db.pgdump", "a NemoRouter key")]


def test_under_xdist_a_secret_one_worker_made_is_found_in_any_workers_log(outside: Path) -> None:
    """`make test` runs on pytest-xdist workers: each registers its own secrets and writes its own
    files, and the controller scans every worker's files for what all of them registered."""
    (outside / "test_a_registers.py").write_text(
        "from secret_scan import SESSION\n\n"
        "def test_registers() -> None:\n"
        "    SESSION.registry.add('planted-by-one-worker-7f3a9c', 'a provider secret')\n"
    )
    (outside / "test_b_writes.py").write_text(
        "from pathlib import Path\n\n"
        "def test_writes(tmp_path: Path) -> None:\n"
        "    (tmp_path / 'gateway.log').write_text('calling with planted-by-one-worker-7f3a9c')\n"
    )
    tests = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), os.environ.get("PYTHONPATH", "")])}
    args = ["-q", "-p", "conftest", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadfile"]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "--basetemp", str(outside / "base"), str(outside)],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "2 passed" in out and "SECRET SCAN: 1 plaintext secret(s)" in out, out
    assert "popen-gw" in out and "gateway.log: a provider secret" in out, out
    assert "planted-by-one-worker-7f3a9c" not in out  # the report names the place, not the secret
