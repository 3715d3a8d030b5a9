"""`nemorouter ledger verify` on a real server's file: entries are sealed within a second of being
settled (and at shutdown), and a row edited in the SQLite file afterwards is named."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import httpx

from conftest import NEMOROUTER, Gateway, Sim, new_gateway, wait_until


def raw(db_path: Path, *statements: tuple[str, tuple[object, ...]]) -> None:
    con = sqlite3.connect(db_path, isolation_level=None)
    try:
        for sql, params in statements:
            con.execute(sql, params)
    finally:
        con.close()


CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}


def _sealed(db: Path) -> int:
    with sqlite3.connect(db) as con:
        return int(con.execute("SELECT count(*) FROM ledger_seals").fetchone()[0])


def test_the_server_seals_within_a_second_and_the_cli_names_an_edited_row(tmp_path: Path, sim: Sim) -> None:
    gw: Gateway = new_gateway(tmp_path, sim)
    gw.start()
    db = gw.data_dir / "nemorouter.db"
    try:
        account = gw.account("5.00")
        key = gw.key(account)
        answers = [
            httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"})
            for _ in range(3)
        ]
        assert [a.status_code for a in answers] == [200] * 3
        assert wait_until(lambda: _sealed(db) == 4, timeout=3)  # one credit, three charges
        assert gw.verify() == {
            "ok": True,
            "problems": [],
            "overruns": 0,
            "overrun_requests": [],
            "notes": [],
        }
    finally:
        assert gw.stop() == 0
    gen_id = answers[1].headers["x-nemo-request-id"]
    with sqlite3.connect(db) as con:
        (credit_id,) = con.execute("SELECT id FROM credits").fetchone()
    swap = [
        ("UPDATE ledger_seals SET seq = -1 WHERE seq = 2", ()),
        ("UPDATE ledger_seals SET seq = 2 WHERE seq = 3", ()),
        ("UPDATE ledger_seals SET seq = 3 WHERE seq = -1", ()),
    ]
    cases: dict[str, tuple[list[tuple[str, tuple[object, ...]]], str]] = {
        "credit amount": (
            [("UPDATE credits SET amount = amount * 2 WHERE id = ?", (credit_id,))],
            f"credit {credit_id}: changed",
        ),
        "generation cost": (
            [("UPDATE generations SET cost = 0 WHERE id = ?", (gen_id,))],
            f"generation {gen_id}: changed",
        ),
        "deleted row": (
            [("DELETE FROM generations WHERE id = ?", (gen_id,))],
            f"generation {gen_id}: removed",
        ),
        "swapped rows": (swap, "seal 2 does not follow"),
    }
    for name, (edits, needle) in cases.items():
        copy = tmp_path / f"copy-{name.replace(' ', '-')}"
        shutil.copytree(gw.data_dir, copy)
        raw(copy / "nemorouter.db", *edits)
        env = {**gw.env, "NEMO_DATA_DIR": str(copy)}
        result = subprocess.run(
            [*NEMOROUTER, "ledger", "verify"], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 1, (name, result.stdout, result.stderr)
        report = json.loads(result.stdout)
        assert report["ok"] is False
        assert any(needle in p for p in report["problems"]), (name, report["problems"])
