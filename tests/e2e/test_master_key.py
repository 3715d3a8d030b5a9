"""The vault knows its master key (issue 20, item 8), through the real `nemorouter` processes.

A master key that does not open the database's vault stops `serve` and every CLI command with
one `error:` line; `init` never mints a second master key over an existing vault; a vault made
before the check value existed gets one on its next start under the right key; and what cannot
be routed at load is logged, one warning line each.
"""

from __future__ import annotations

import base64
import os
import secrets
import sqlite3
import subprocess
import time
from pathlib import Path

from conftest import NEMOROUTER, Gateway

WRONG_KEY = base64.b64encode(os.urandom(32)).decode()
SECRET = "sk-sim-vault-test-" + secrets.token_hex(8)


def fresh(base: Path) -> Gateway:
    """`init`ed data dir (master.key on disk) with one provider and one vault key."""
    data_dir = base / f"vault-{secrets.token_hex(4)}"
    data_dir.mkdir(parents=True)
    env = {
        **os.environ,
        "NEMO_DATA_DIR": str(data_dir),
        "NEMO_ADMIN_TOKEN": "test-admin-" + secrets.token_hex(8),
    }
    for name in ("NEMO_DATABASE_URL", "NEMO_MASTER_KEY", "NEMO_REDIS_URL"):
        env.pop(name, None)
    gw = Gateway(data_dir=data_dir, admin_token=env["NEMO_ADMIN_TOKEN"], env=env)
    gw.cli("init")
    gw.cli("providers", "add", "up", "--kind", "openai", "--base-url", "http://127.0.0.1:9/v1")
    gw.cli("providers", "add-key", "up", "--label", "main", input=SECRET + "\n")
    return gw


def db(gw: Gateway) -> sqlite3.Connection:
    return sqlite3.connect(gw.data_dir / "nemorouter.db")


def meta(gw: Gateway, key: str) -> str | None:
    with db(gw) as con:
        row = con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert WRONG_KEY not in result.stderr + result.stdout and SECRET not in result.stderr + result.stdout
    return lines[0]


def with_env(gw: Gateway, **changes: str | None) -> Gateway:
    env = dict(gw.env)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return Gateway(data_dir=gw.data_dir, admin_token=gw.admin_token, env=env)


def test_serve_under_a_wrong_master_key_exits_at_once_with_one_line(tmp_path: Path) -> None:
    gw = fresh(tmp_path)
    assert meta(gw, "vault_check") is not None  # sealed at init
    started = time.monotonic()
    result = subprocess.run(
        [*NEMOROUTER, "serve", "--port", "0"],
        env={**gw.env, "NEMO_MASTER_KEY": WRONG_KEY},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert time.monotonic() - started < 10
    line = one_error_line(result)
    assert "master key (NEMO_MASTER_KEY) does not open this database's vault" in line
    assert "listening" not in result.stdout


def test_every_cli_command_refuses_a_wrong_master_key(tmp_path: Path) -> None:
    gw = fresh(tmp_path)
    wrong = with_env(gw, NEMO_MASTER_KEY=WRONG_KEY)
    for args in (("providers", "list"), ("accounts", "list"), ("init",)):
        line = one_error_line(wrong.cli(*args, check=False))
        assert "does not open this database's vault" in line, args


def test_add_key_under_a_wrong_master_key_is_refused(tmp_path: Path) -> None:
    gw = fresh(tmp_path)
    wrong = with_env(gw, NEMO_MASTER_KEY=WRONG_KEY)
    other = "sk-sim-other-" + secrets.token_hex(8)
    result = wrong.cli("providers", "add-key", "up", "--label", "second", input=other + "\n", check=False)
    assert "does not open this database's vault" in one_error_line(result)
    with db(gw) as con:
        assert con.execute("SELECT count(*) FROM provider_keys").fetchone()[0] == 1
    # The vault is still under one key: the right one serves its secret.
    listed = gw.cli_json("providers", "list")["data"][0]["keys"]
    assert [k["label"] for k in listed] == ["main"]


def test_a_lost_master_key_file_mints_no_second_key(tmp_path: Path) -> None:
    gw = fresh(tmp_path)
    master = gw.data_dir / "master.key"
    original = master.read_bytes()
    master.unlink()
    line = one_error_line(gw.cli("init", check=False))
    assert "refusing to create a new master key" in line and "master.key" in line
    assert not master.exists()
    # The same with no provider key left: the check value alone says a vault exists.
    master.write_bytes(original)
    master.chmod(0o600)
    with db(gw) as con:
        con.execute("DELETE FROM provider_keys")
    master.unlink()
    assert "refusing to create a new master key" in one_error_line(gw.cli("init", check=False))
    assert not master.exists()
    # With the file restored, init is the idempotent no-op it always was.
    master.write_bytes(original)
    master.chmod(0o600)
    assert gw.cli_json("init")["migrations_applied"] == []


def test_a_vault_without_a_check_value_gets_one_under_the_right_key_only(tmp_path: Path) -> None:
    gw = fresh(tmp_path)
    with db(gw) as con:  # a vault made before the check value existed
        con.execute("DELETE FROM meta WHERE key = 'vault_check'")
    # A wrong key opens none of its provider secrets: refused, and no check value recorded.
    wrong = with_env(gw, NEMO_MASTER_KEY=WRONG_KEY)
    assert "does not open this database's vault" in one_error_line(
        wrong.cli("providers", "list", check=False)
    )
    assert meta(gw, "vault_check") is None
    # The next start under the right key records it ...
    gw.start()
    try:
        assert meta(gw, "vault_check") is not None
    finally:
        assert gw.stop() == 0
    # ... and from then on a wrong key is refused by the check value itself, even with no secrets.
    with db(gw) as con:
        con.execute("DELETE FROM provider_keys")
    assert "does not open this database's vault" in one_error_line(
        wrong.cli("providers", "list", check=False)
    )


def test_routing_problems_are_logged_at_start_one_line_each(tmp_path: Path) -> None:
    gw = fresh(tmp_path)
    gw.cli("providers", "add", "empty", "--kind", "openai", "--base-url", "http://127.0.0.1:9/v1")
    gw.cli("models", "import", "--vendor", "openai", "--provider", "empty")
    with db(gw) as con:  # one sealed secret damaged on disk (a bad restore, a tampered row)
        (key_id, envelope) = con.execute("SELECT id, envelope FROM provider_keys").fetchone()
        head, _, tail = envelope.rpartition(".")
        con.execute(
            "UPDATE provider_keys SET envelope = ? WHERE id = ?",
            (f"{head}.{'B' if tail[0] == 'A' else 'A'}{tail[1:]}", key_id),
        )
    gw.start()
    try:
        lines = (gw.data_dir / "gateway.log").read_text().splitlines()
    finally:
        assert gw.stop() == 0
    problems = [line for line in lines if "routing problem" in line]
    damaged = [line for line in problems if key_id in line]
    assert len(damaged) == 1 and "failed authentication" in damaged[0], problems
    empty = [line for line in problems if "provider empty has no usable vault key" in line]
    assert len(empty) == 1 and "deployment(s) cannot serve" in empty[0], problems
    assert len(set(problems)) == len(problems)  # one line each
    assert all(SECRET not in line for line in lines)
