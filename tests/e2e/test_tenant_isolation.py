"""Tenant isolation, route by route: account A's keys (inference and management) aimed at account
B's ids get 404 (403 where the contract says the key is of the wrong kind, 401 on the operator's
API), and B's data is the same afterwards.

The matrix is built from the app's route table: every route whose path takes an id, and every
route known to take an id in its query, must be listed in EXPECTED (or be an operator route, which
a customer key can never pass), so a new route with an id fails this test until it is covered.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Mount, Route

from conftest import Gateway
from nemorouter.app import create_app
from nemorouter.settings import Settings

NOT_FOUND, FORBIDDEN, UNAUTHORIZED = 404, 403, 401
# (method, path) -> (status for A's inference key, status for A's management key), each aimed at B.
EXPECTED: dict[tuple[str, str], tuple[int, int]] = {
    ("GET", "/v1/keys/{key_id}"): (FORBIDDEN, NOT_FOUND),
    ("PATCH", "/v1/keys/{key_id}"): (FORBIDDEN, NOT_FOUND),
    ("DELETE", "/v1/keys/{key_id}"): (FORBIDDEN, NOT_FOUND),
    ("POST", "/v1/keys/{key_id}/rotate"): (FORBIDDEN, NOT_FOUND),
    ("GET", "/v1/generation?id"): (NOT_FOUND, NOT_FOUND),
}
# Path parameters that are not another tenant's id: a management key reads its own account's
# statement for any month, so there is nothing of B's to reach. Checked below all the same.
OWN_ACCOUNT_ONLY = {("GET", "/v1/statements/{month}")}
# Path parameters that name nothing of a tenant's: the public model list, the same for every caller.
PUBLIC = {("GET", "/v1/models/{model_id}")}
# Routes that take an id in the query string (the route table does not say; the contract does).
QUERY_IDS = {("GET", "/v1/generation"): "id"}
# Bodies sent with writes: each would change B's key if it reached it.
BODIES = {"PATCH": {"disabled": True, "limit": "0.01", "name": "stolen"}, "POST": {"grace_seconds": 0}}


# The console's pages are reached with a session cookie, not a key: their id routes are checked,
# each with another account's id, in tests/console/test_console_auth.py
# (test_another_accounts_ids_are_not_found); operator pages refuse a customer's session outright.
CONSOLE_COVERED = {
    ("GET", "/console/activity/{generation_id}"),
    ("POST", "/console/keys/{key_id}/{action}"),
    ("POST", "/console/settings/management-keys/{key_id}/revoke"),
    ("GET", "/console/invite/{token}"),  # a one-time secret, not an id: unknown ones are 404
    ("POST", "/console/invite/{token}"),
    ("GET", "/console/billing/statements/{month}.{fmt}"),  # the signed-in account's own month
}


def console_id_routes(tmp_path: Path) -> set[tuple[str, str]]:
    """(method, path) of every console page that takes an id (operator pages aside)."""
    app = create_app(Settings.from_env({"NEMO_DATA_DIR": str(tmp_path)}))
    found = set()
    for mount in app.app.routes:
        if not isinstance(mount, Mount):
            continue
        for route in mount.routes:
            path = mount.path + route.path.replace(":str}", "}").replace(":path}", "}")
            if "{" in path and not path.startswith("/console/admin/") and path != "/console/{rest}":
                found |= {(m, path) for m in getattr(route, "methods", None) or () if m != "HEAD"}
    return found


def test_every_console_id_route_is_covered(tmp_path: Path) -> None:
    uncovered = console_id_routes(tmp_path) - CONSOLE_COVERED
    assert not uncovered, f"console pages taking an id with no tenant-isolation case: {sorted(uncovered)}"


def id_routes(tmp_path: Path) -> set[tuple[str, str]]:
    """(method, path) of every API route that takes an id, from the app's own route table."""
    app = create_app(Settings.from_env({"NEMO_DATA_DIR": str(tmp_path)}))
    found = set()
    for route in app.app.routes:
        if isinstance(route, Mount):
            continue  # the console: see CONSOLE_COVERED
        assert isinstance(route, Route)
        path = route.path.replace(":path}", "}")
        for method in route.methods or ():
            if method == "HEAD":
                continue
            if "{" in path:
                found.add((method, path))
            if (method, path) in QUERY_IDS:
                found.add((method, f"{path}?{QUERY_IDS[method, path]}"))
    return found


class Tenant:
    """An account with an inference key (which has made one request) and a management key."""

    def __init__(self, gw: Gateway, name: str) -> None:
        self.gw = gw
        self.account = gw.account("2.00", name=name)
        created = gw.admin("POST", f"/accounts/{self.account}/keys", {"name": f"{name}-key", "rpm": 1000})
        self.key, self.key_id = created.json()["key"], created.json()["data"]["id"]
        mgmt = gw.admin("POST", f"/accounts/{self.account}/management-keys", {"name": f"{name}-mgmt"})
        self.mgmt, self.mgmt_id = mgmt.json()["key"], mgmt.json()["data"]["id"]
        chat = httpx.post(
            f"{gw.url}/v1/chat/completions",
            json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=30,
        )
        assert chat.status_code == 200, chat.text
        self.generation_id = chat.headers["x-nemo-request-id"]

    def ids(self) -> dict[str, str]:
        """Values for every path or query parameter that names something of this tenant's."""
        return {
            "key_id": self.key_id,
            "account_id": self.account,
            "id": self.generation_id,
            "month": "2026-01",
            # Operator-side things have no tenant; any value will do, the token check comes first.
            "name": "sim",
            "model_id": "openai/gpt-4o-mini",
        }

    def state(self) -> dict[str, Any]:
        """Everything of this tenant's an attack could change: account, keys, the request record."""
        auth = {"Authorization": f"Bearer {self.mgmt}"}
        gen = httpx.get(f"{self.gw.url}/v1/generation", params={"id": self.generation_id}, headers=auth)
        return {
            "account": self.gw.balance(self.account),
            "keys": self.gw.admin("GET", f"/accounts/{self.account}/keys").json()["data"],
            "generation": gen.json(),
            "own keys": httpx.get(f"{self.gw.url}/v1/keys", headers=auth).json(),
        }


def fill(path: str, ids: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The URL path with B's ids in it, and B's ids for the query."""
    url, _, query_name = path.partition("?")
    names = re.findall(r"{(\w+)}", url)
    missing = [n for n in names + ([query_name] if query_name else []) if n not in ids]
    assert not missing, f"{path}: no value for {missing}; add it to Tenant.ids()"
    for name in names:
        url = url.replace(f"{{{name}}}", ids[name])
    return url, ({query_name: ids[query_name]} if query_name else {})


def test_every_id_route_is_in_the_matrix(tmp_path: Path) -> None:
    uncovered = {
        r for r in id_routes(tmp_path) if r not in EXPECTED and r not in OWN_ACCOUNT_ONLY | PUBLIC
    } - {r for r in id_routes(tmp_path) if r[1].startswith("/admin/v1/")}
    assert not uncovered, f"routes taking an id with no tenant-isolation case: {sorted(uncovered)}"


@pytest.fixture(scope="module")
def tenants(gateway: Gateway) -> tuple[Tenant, Tenant]:
    return Tenant(gateway, "tenant-a"), Tenant(gateway, "tenant-b")


def test_a_cannot_reach_b_by_id(gateway: Gateway, tenants: tuple[Tenant, Tenant], tmp_path: Path) -> None:
    a, b = tenants
    before = b.state()
    checked = []
    for method, path in sorted(id_routes(tmp_path)):
        if (method, path) in OWN_ACCOUNT_ONLY | PUBLIC:
            continue
        expected = EXPECTED.get((method, path), (UNAUTHORIZED, UNAUTHORIZED))  # operator routes
        url, query = fill(path, b.ids())
        for secret, status in zip((a.key, a.mgmt), expected, strict=True):
            resp = httpx.request(
                method,
                f"{gateway.url}{url}",
                params=query,
                json=BODIES.get(method) if method in ("PATCH", "POST", "PUT") else None,
                headers={"Authorization": f"Bearer {secret}"},
                timeout=30,
            )
            assert resp.status_code == status, (method, path, secret[:16], resp.text)
            error = resp.json()["error"]
            assert error["code"] == status and error["type"] and error["message"]
            assert b.key_id not in resp.text or status == NOT_FOUND  # an echo of the asked-for id only
            assert b.account not in resp.text or path.startswith("/admin/")
            checked.append((method, path))
    assert len(checked) >= 2 * len(EXPECTED)
    assert b.state() == before
    # B's key still works after every attempt on it.
    again = httpx.get(f"{gateway.url}/v1/key", headers={"Authorization": f"Bearer {b.key}"})
    assert again.status_code == 200 and again.json()["data"]["id"] == b.key_id
    assert gateway.verify()["ok"]


def test_a_statement_is_always_the_callers_own(gateway: Gateway, tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    for method, path in OWN_ACCOUNT_ONLY:
        url, _ = fill(path, b.ids())
        for secret, status in ((a.key, FORBIDDEN), (a.mgmt, 200)):
            resp = httpx.request(
                method, f"{gateway.url}{url}", headers={"Authorization": f"Bearer {secret}"}, timeout=30
            )
            assert resp.status_code == status, resp.text
            if status == 200:
                assert resp.json()["data"]["account_id"] == a.account != b.account


def test_lists_show_only_the_callers_own(gateway: Gateway, tenants: tuple[Tenant, Tenant]) -> None:
    """The id-less reads a key can make: nothing of B's in any of them."""
    a, b = tenants
    for secret in (a.key, a.mgmt):
        for path in ("/v1/key", "/v1/keys", "/v1/generations", "/v1/credits", "/v1/usage", "/v1/leaks"):
            resp = httpx.get(f"{gateway.url}{path}", headers={"Authorization": f"Bearer {secret}"})
            assert resp.status_code in (200, 403), (path, resp.text)
            for mine_not in (b.key_id, b.mgmt_id, b.account, b.generation_id):
                assert mine_not not in resp.text, path


def test_a_public_route_answers_every_caller_alike(gateway: Gateway, tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    for method, path in PUBLIC:
        url, _ = fill(path, b.ids())
        answers = [
            httpx.request(method, f"{gateway.url}{url}", headers=headers, timeout=30)
            for headers in ({}, {"Authorization": f"Bearer {a.key}"}, {"Authorization": f"Bearer {b.mgmt}"})
        ]
        assert {r.status_code for r in answers} == {200}
        assert answers[0].json() == answers[1].json() == answers[2].json()
