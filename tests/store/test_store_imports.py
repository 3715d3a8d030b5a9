"""The store package's import graph, read from the source with `ast`: no circle inside store/,
the protocol and the shared records import no backend, and no backend imports another or
`open_store` (which imports them)."""

from __future__ import annotations

import ast
from pathlib import Path

import nemorouter.store

ROOT = Path(nemorouter.store.__file__).parent
BACKENDS = ("nemorouter.store.sqlite", "nemorouter.store.postgres")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """The store modules `name` imports, at the top or inside a function (`from pkg import mod`
    counts as importing `pkg.mod` when that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return {m for m in found if m in MODULES}


GRAPH = {name: imports_of(name) for name in MODULES}


def circle() -> list[str] | None:
    """One import circle among the store's modules, if there is any."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return None
        for imported in sorted(GRAPH[name]):
            found = visit(imported, [*path, name])
            if found:
                return found
        done.add(name)
        return None

    for name in sorted(GRAPH):
        found = visit(name, [])
        if found:
            return found
    return None


def reaches(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for imported in GRAPH[todo.pop()]:
            if imported not in seen:
                seen.add(imported)
                todo.append(imported)
    return seen


def in_backend(name: str) -> str | None:
    return next((b for b in BACKENDS if name == b or name.startswith(b + ".")), None)


def test_the_graph_is_read() -> None:
    assert "nemorouter.store.base" in GRAPH["nemorouter.store.sqlite.money_mirror"]
    assert "nemorouter.store.rows" in GRAPH["nemorouter.store.postgres.money"]  # `from ... import rows`
    assert {"nemorouter.store.sqlite", "nemorouter.store.postgres"} <= GRAPH["nemorouter.store.open"]


def test_no_import_circle_in_the_store() -> None:
    assert circle() is None


def test_the_protocol_and_the_shared_modules_import_no_backend() -> None:
    for name in GRAPH:
        if in_backend(name) is None and name != "nemorouter.store.open":
            assert not {m for m in reaches(name) if in_backend(m)}, name


def test_no_backend_imports_the_other_or_open_store() -> None:
    for name in GRAPH:
        backend = in_backend(name)
        if backend is None:
            continue
        for imported in reaches(name):
            assert in_backend(imported) in (None, backend), (name, imported)
            assert imported != "nemorouter.store.open", name
