"""The shape docs/architecture.md draws, kept: small modules, a short gateway flow, and no import
cycles between any two modules (the layers themselves are import-linter's contracts in
pyproject.toml, run by `make lint`)."""

from __future__ import annotations

from pathlib import Path

import grimp

SRC = Path(__file__).resolve().parents[1] / "src" / "nemorouter"
MAX_MODULE_LINES = 450
MAX_GATEWAY_LINES = 250


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_source_module_is_over_450_lines() -> None:
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := _lines(p)) > MAX_MODULE_LINES}
    assert long == {}


def test_the_gateway_flow_stays_short() -> None:
    assert _lines(SRC / "service" / "gateway.py") <= MAX_GATEWAY_LINES


def test_no_import_cycle_between_modules() -> None:
    """Every import counts, those under TYPE_CHECKING too: a cycle of types is a cycle of parts."""
    graph = grimp.build_graph("nemorouter", exclude_type_checking_imports=False, cache_dir=None)
    cycles = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None:  # module -> imported -> ... -> module
                cycles.append(" -> ".join((module, *back)))
    assert cycles == []
