"""The compiled money mirror's SQL: the outcome of a request reaches every column of its record,
in the order the UPDATE names them (a column added to `generations` can't be left unwritten)."""

from __future__ import annotations

import ast
import operator
from pathlib import Path

from nemorouter.store import rows
from nemorouter.store.records import Generation
from nemorouter.store.sqlite.outcome import COMPLETE, OUTCOME_COLUMNS, outcome_row

SRC = Path(__file__).resolve().parents[2] / "src"
SET_AT_RESERVE = {"id", "account_id", "key_id", "created_at"}


def test_outcome_columns_are_every_column_but_those_set_at_reserve() -> None:
    assert set(OUTCOME_COLUMNS) == set(rows.GENERATION_COLUMNS) - SET_AT_RESERVE
    assert len(OUTCOME_COLUMNS) == len(set(OUTCOME_COLUMNS))
    assert COMPLETE.count("?") == len(OUTCOME_COLUMNS) + 1


def _annotations(cls: type) -> dict[str, str]:
    """The fields' annotations as written (a compiled dataclass's `Field.type` is not)."""
    tree = ast.parse((SRC / (cls.__module__.replace(".", "/") + ".py")).read_text())
    found = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    return {
        n.target.id: ast.unparse(n.annotation)
        for n in found.body
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
    }


def _distinct(kind: str, name: str, index: int) -> object:
    """A value of type `kind` that no other field has (booleans alternate)."""
    if kind == "bool":
        return index % 2 == 0
    if kind.startswith("int"):
        return 1000 + index
    return f"v-{name}"


def test_outcome_row_gives_each_column_its_field_in_order_and_the_id_last() -> None:
    kinds = _annotations(Generation)
    gen = Generation(**{name: _distinct(kind, name, i) for i, (name, kind) in enumerate(kinds.items())})
    expected = tuple(
        int(v) if isinstance(v, bool) else v  # booleans are written as SQLite's integers
        for v in operator.attrgetter(*OUTCOME_COLUMNS, "id")(gen)
    )
    assert outcome_row(gen) == expected
    assert not any(isinstance(v, bool) for v in outcome_row(gen))
