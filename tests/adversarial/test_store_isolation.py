"""Issue 20, item 3 (the store's part): no single request can stop the store from committing the
others. Before: one settle SQLite could not write (a usage report whose cost passed 64 bits)
failed the shared transaction of its event-loop iteration, which was retried forever: every
other tenant got 500s or hung, `/readyz` answered 503, only a restart recovered.

Here the real gateway (SQLite) serves two tenants at once while the database refuses every
write of one tenant's records (a trigger keyed on its key id: any statement that raises, not
only a bad value). That tenant's requests fail; the other tenant is served, exactly charged,
within a second; `/readyz` stays 200; and once the database accepts the writes again, the
culprit tenant is served too and `ledger verify` is ok.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import pytest

from conftest import Gateway, Sim, new_gateway

BODY = {
    "model": "openai/gpt-4o-mini",
    "messages": [{"role": "user", "content": "Say something [sim:latency_ms=100]"}],
    "max_tokens": 20,
}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gateway = new_gateway(tmp_path_factory.mktemp("isolation"), sim)
    gateway.start()
    yield gateway
    assert gateway.stop() == 0


def _sql(gw: Gateway, statement: str) -> None:
    con = sqlite3.connect(gw.data_dir / "nemorouter.db", isolation_level=None)
    try:
        con.execute("PRAGMA busy_timeout=10000")
        con.execute(statement)
    finally:
        con.close()


def _chat(gw: Gateway, key: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    resp = httpx.post(
        f"{gw.url}/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    return resp, time.monotonic() - started


def _cost(resp: httpx.Response) -> Decimal:
    return Decimal(str(json.loads(resp.text, parse_float=Decimal)["usage"]["cost"]))


def _usage(gw: Gateway, account_id: str) -> Any:
    found = json.loads(gw.admin("GET", f"/accounts/{account_id}").text, parse_float=Decimal)["data"]
    return found["total_usage"], found["held"]


def test_a_tenant_whose_writes_fail_does_not_stop_the_others(gw: Gateway) -> None:
    culprit_account, other_account = gw.account("5"), gw.account("5")
    culprit, other = gw.key(culprit_account), gw.key(other_account)
    culprit_key_id = gw.admin("GET", f"/accounts/{culprit_account}/keys").json()["data"][0]["id"]
    _sql(
        gw,
        "CREATE TRIGGER refuse_culprit BEFORE UPDATE OF status ON generations"
        f" WHEN NEW.key_id = '{culprit_key_id}' AND NEW.status <> 'pending'"
        " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    )
    try:
        # Culprit and other tenant side by side, so their settles share batches.
        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(_chat, gw, culprit if i % 2 else other) for i in range(32)]
            answers = [f.result() for f in futures]
        others = [(r, t) for i, (r, t) in enumerate(answers) if not i % 2]
        culprits = [r for i, (r, _) in enumerate(answers) if i % 2]
        assert all(r.status_code == 200 for r, _ in others), [
            r.text for r, _ in others if r.status_code != 200
        ]
        assert max(t for _, t in others) < 5.0
        # Each culprit request failed alone and cleanly (an error in the contract's shape).
        for r in culprits:
            if r.status_code != 200:
                assert "error" in r.json(), r.text
        assert any(r.status_code != 200 for r in culprits)
        # The gateway is live and ready; another tenant is served within a second.
        assert httpx.get(f"{gw.url}/readyz", timeout=5).status_code == 200
        resp, took = _chat(gw, other)
        assert resp.status_code == 200 and took < 1.0, (resp.status_code, took)
        # The other tenant paid exactly what its replies said, to the pico-dollar, and holds nothing.
        paid = sum((_cost(r) for r, _ in others), Decimal(0)) + _cost(resp)
        assert _usage(gw, other_account) == (paid, 0)
    finally:
        _sql(gw, "DROP TRIGGER refuse_culprit")
    # The database accepts the culprit's writes again: it is served and charged like anyone.
    before = _usage(gw, culprit_account)[0]
    resp, _ = _chat(gw, culprit)
    assert resp.status_code == 200, resp.text
    assert _usage(gw, culprit_account)[0] == before + _cost(resp)
    report = gw.verify()
    assert report["ok"] is True, report
