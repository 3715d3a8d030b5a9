"""The operator's reconciliation: our metering per provider key and day, and an invoice that
differs in two lines reported as exactly those two lines."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from conftest import Gateway, Sim, new_gateway


@pytest.fixture
def gw(tmp_path: Path, sim: Sim) -> Iterator[Gateway]:
    gateway = new_gateway(tmp_path, sim)
    gateway.start()
    yield gateway
    assert gateway.stop() == 0


def test_reconciliation_and_an_invoice_differing_in_two_lines(gw: Gateway, tmp_path: Path) -> None:
    client = gw.openai(gw.key(gw.account("5.00")))  # the only account of this gateway
    for model in ("openai/gpt-4o-mini", "openai/gpt-4o", "openai/gpt-4o-mini"):
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hello [sim:cached=3]"}], max_tokens=10
        )
    month = datetime.now(UTC).strftime("%Y-%m")
    answer = gw.admin("GET", f"/reconciliation?provider=sim&month={month}")
    assert answer.status_code == 200, answer.text
    rows = json.loads(answer.text, parse_float=Decimal)["data"]
    assert {r["model"] for r in rows} == {"gpt-4o-mini", "gpt-4o"}
    assert sum(r["requests"] for r in rows) == 3
    account = gw.admin("GET", "/accounts").json()["data"][0]["id"]
    assert sum(Decimal(r["cost"]) for r in rows) == Decimal(str(gw.balance(account)["total_usage"]))

    # Our lines, as the CLI sees them, become the "provider's export"; then two lines are changed.
    report = exact(gw, "reconcile", "--provider", "sim", "--month", month)
    assert report["data"] and report["data"][0]["provider_key_id"].startswith("pk_")
    invoice_rows = []
    mine = exact(
        gw, "reconcile", "--provider", "sim", "--month", month, "--invoice", str(_write(tmp_path, []))
    )
    for diff in mine["differences"]:  # against an empty invoice, every one of our lines differs
        ours = diff["ours"]
        invoice_rows.append(
            [diff["date"], diff["model"], diff["category"], ours["tokens"], format(ours["amount"], "f")]
        )
    assert {r[2] for r in invoice_rows} >= {"input", "cached", "output"}
    same = exact(
        gw,
        "reconcile",
        "--provider",
        "sim",
        "--month",
        month,
        "--invoice",
        str(_write(tmp_path, invoice_rows)),
    )
    assert same["differences"] == []
    changed = [list(r) for r in invoice_rows]
    changed[0][3] = int(changed[0][3]) + 100
    changed[-1][4] = format(Decimal(changed[-1][4]) + Decimal("0.01"), "f")
    result = exact(
        gw, "reconcile", "--provider", "sim", "--month", month, "--invoice", str(_write(tmp_path, changed))
    )
    assert [(d["date"], d["model"], d["category"]) for d in result["differences"]] == sorted(
        [tuple(changed[0][:3]), tuple(changed[-1][:3])]
    )
    bad = gw.cli(
        "reconcile", "--provider", "sim", "--month", month, "--invoice", str(tmp_path / "x.csv"), check=False
    )
    assert bad.returncode != 0


def exact(gw: Gateway, *args: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(gw.cli(*args).stdout, parse_float=Decimal)
    return found


def _write(tmp_path: Path, rows: list[list[object]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["date", "model", "category", "tokens", "amount"])
    writer.writerows(rows)
    path = tmp_path / f"invoice-{len(rows)}-{abs(hash(str(rows)))}.csv"
    path.write_text(buffer.getvalue())
    return path
