"""/openapi.json documents every route there is, and nothing that isn't."""

from __future__ import annotations

from pathlib import Path

import httpx
from starlette.routing import Mount, Route

from conftest import Gateway
from nemorouter.app import create_app
from nemorouter.app.fast import DOORS
from nemorouter.settings import Settings


def served_operations(tmp_path: Path) -> set[tuple[str, str]]:
    app = create_app(Settings.from_env({"NEMO_DATA_DIR": str(tmp_path)}))
    found = {("post", path) for path in DOORS}
    for route in app.app.routes:
        if isinstance(route, Mount) and route.path == "/console":
            continue  # the web console's HTML pages (tests/console), not an API
        assert isinstance(route, Route)
        path = route.path.replace(":path}", "}")
        for method in route.methods or ():
            if method != "HEAD":
                found.add((method.lower(), path))
    return found


def test_the_document_matches_the_routes(gateway: Gateway, tmp_path: Path) -> None:
    document = httpx.get(f"{gateway.url}/openapi.json").json()
    assert document["openapi"].startswith("3.")
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    assert documented == served_operations(tmp_path)
    for item in document["paths"].values():
        for operation in item.values():
            assert operation["summary"] and "default" in operation["responses"]
