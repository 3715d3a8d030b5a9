"""The audit log end to end: changes made through the admin API, the management API and the CLI
each leave an entry naming who (operator token, management key id, CLI user), what (action,
target ids, non-secret parameters) and when; GET /admin/v1/audit filters them; a row tampered
with in the database makes `nemorouter audit verify` and GET /admin/v1/audit/verify fail."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import Gateway, Sim, new_gateway


@pytest.fixture
def gw(tmp_path: Path, sim: Sim) -> Iterator[Gateway]:
    gateway = new_gateway(tmp_path, sim, via_cli=True)  # the CLI's own entries are looked at
    gateway.start()
    yield gateway
    gateway.stop()


def entries(gw: Gateway, **query: str) -> list[dict[str, object]]:
    resp = httpx.get(
        f"{gw.url}/admin/v1/audit", params=query, headers={"Authorization": f"Bearer {gw.admin_token}"}
    )
    assert resp.status_code == 200, resp.text
    found: list[dict[str, object]] = resp.json()["data"]
    return found


def test_every_entry_point_is_audited_and_tampering_is_found(gw: Gateway) -> None:
    # The CLI (init registered the simulator: provider, its key, the model import).
    cli_entries = entries(gw, action="provider_key.add")
    assert len(cli_entries) == 1 and str(cli_entries[0]["actor"]).startswith("cli:")

    # The admin API.
    account = gw.account("3.00", name="audited")
    mgmt_resp = gw.admin("POST", f"/accounts/{account}/management-keys", {"name": "ops"})
    mgmt, mgmt_id = mgmt_resp.json()["key"], mgmt_resp.json()["data"]["id"]

    # The management API.
    auth = {"Authorization": f"Bearer {mgmt}"}
    created = httpx.post(f"{gw.url}/v1/keys", json={"name": "ci", "limit": "0.50"}, headers=auth)
    assert created.status_code == 201, created.text
    key, key_id = created.json()["key"], created.json()["data"]["id"]
    assert httpx.patch(f"{gw.url}/v1/keys/{key_id}", json={"rpm": 7}, headers=auth).status_code == 200
    assert httpx.post(f"{gw.url}/v1/keys/{key_id}/rotate", json={}, headers=auth).status_code == 201
    put = httpx.put(
        f"{gw.url}/v1/alerts",
        json={"url": "https://user:pw@hooks.example.com/in?token=abc", "low_balance_threshold": "1"},
        headers=auth,
    )
    assert put.status_code == 200, put.text
    signing_secret = put.json()["signing_secret"]
    # A refused change leaves no entry.
    assert httpx.patch(f"{gw.url}/v1/keys/{key_id}", json={"rpm": -1}, headers=auth).status_code == 400

    mine = entries(gw, account_id=account)
    assert [e["action"] for e in mine] == [
        "alerts.configure",
        "key.rotate",
        "key.update",
        "key.create",
        "key.create",
        "credit.add",
        "account.create",
    ]
    actors = {e["action"]: e["actor"] for e in mine}
    assert actors["account.create"] == actors["credit.add"] == "admin"
    assert actors["key.update"] == actors["alerts.configure"] == f"management_key:{mgmt_id}"
    update = next(e for e in mine if e["action"] == "key.update")
    assert update["targets"] == {"key_id": key_id} and update["params"] == {"rpm": 7}
    alerts_entry = next(e for e in mine if e["action"] == "alerts.configure")
    assert alerts_entry["params"]["url"] == "https://hooks.example.com/in"  # type: ignore[index]
    assert all(str(e["at"]).endswith("Z") for e in mine)
    text = json.dumps(entries(gw, limit="1000"))
    for secret in (mgmt, key, signing_secret, "pw@", "token=abc"):
        assert secret not in text

    # Filters.
    assert [e["action"] for e in entries(gw, target=key_id)] == ["key.rotate", "key.update", "key.create"]
    assert entries(gw, actor="admin", action="credit.add")[0]["targets"]["account_id"] == account  # type: ignore[index]
    assert entries(gw, **{"from": "2999-01-01"}) == []
    bad = httpx.get(
        f"{gw.url}/admin/v1/audit",
        params={"limit": "0"},
        headers={"Authorization": f"Bearer {gw.admin_token}"},
    )
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request"
    assert httpx.get(f"{gw.url}/admin/v1/audit", headers=auth).status_code == 401

    # The chain verifies, by API and CLI; then one row is changed behind the gateway's back.
    verify = gw.admin("GET", "/audit/verify").json()
    assert verify["ok"] is True and verify["problems"] == [] and verify["entries"] >= 10
    assert gw.cli_json("audit", "verify")["ok"] is True
    seq = next(e["seq"] for e in mine if e["action"] == "key.update")
    with sqlite3.connect(gw.data_dir / "nemorouter.db") as db:
        db.execute("UPDATE audit_log SET params = ? WHERE seq = ?", ('{"rpm":7000}', seq))
    db.close()
    verify = gw.admin("GET", "/audit/verify").json()
    assert verify["ok"] is False
    assert verify["problems"] == [f"audit entry {seq} (key.update): changed after it was written"]
    failed = gw.cli("audit", "verify", check=False)
    assert failed.returncode == 1 and json.loads(failed.stdout)["ok"] is False
    listed = gw.cli_json("audit", "list", "--action", "key.update")["data"]
    assert listed[0]["params"] == {"rpm": 7000}  # the list shows what is there; verify says it is wrong
