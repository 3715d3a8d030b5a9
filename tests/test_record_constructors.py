"""The records built on every request have a hand-written __init__ (fast once compiled; see
docs/architecture.md, "Speed"): it must take exactly the dataclass's fields, in order, with the
same defaults, and store each one, so a field added later can't be left out of it."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from nemorouter.engine.http import RawResponse
from nemorouter.limits.gcra import Decision
from nemorouter.limits.local import Ticket
from nemorouter.money.cost import CostBreakdown
from nemorouter.money.settlement import Charge
from nemorouter.money.usage import Usage
from nemorouter.providers.types import Completion, Upstream, UpstreamRequest
from nemorouter.service.admission import Call
from nemorouter.service.gateway import JsonReply
from nemorouter.store.records import Generation, Hold, Outcome, ReserveResult

HAND_WRITTEN = [
    Hold,
    ReserveResult,
    Generation,
    Outcome,
    RawResponse,
    UpstreamRequest,
    Upstream,
    Completion,
    JsonReply,
    Call,
    Ticket,
    Decision,
    CostBreakdown,
    Usage,
    Charge,
]


SRC = Path(__file__).resolve().parents[1] / "src"


def _init_of(cls: type) -> ast.FunctionDef:
    """The class's __init__ as written (a compiled class has no signature to inspect)."""
    tree = ast.parse((SRC / (cls.__module__.replace(".", "/") + ".py")).read_text())
    found = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    return next(n for n in found.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")


@pytest.mark.parametrize("cls", HAND_WRITTEN, ids=lambda c: c.__name__)
def test_init_takes_every_field_with_its_default(cls: type) -> None:
    init = _init_of(cls)
    params = init.args.args[1:]
    defaults = [None] * (len(params) - len(init.args.defaults)) + list(init.args.defaults)
    fields = dataclasses.fields(cls)
    assert [p.arg for p in params] == [f.name for f in fields]
    for field, default in zip(fields, defaults, strict=True):
        if field.default is not dataclasses.MISSING:
            assert default is not None and ast.literal_eval(default) == field.default, field.name
        elif field.default_factory is not dataclasses.MISSING:
            assert default is not None and ast.literal_eval(default) is None, field.name  # "a new one"
        else:
            assert default is None, field.name
    stored = {
        t.attr
        for n in init.body
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Attribute)
    }
    assert stored == {f.name for f in fields}


def test_init_stores_every_field() -> None:
    def sample(index: int, param: ast.arg) -> object:
        kind = ast.unparse(param.annotation) if param.annotation else ""  # as written in the source
        if kind.startswith("bool"):
            return True
        return 10 + index if kind.startswith("int") else f"{param.arg}-value"

    values = {p.arg: sample(i, p) for i, p in enumerate(_init_of(Generation).args.args[1:])}
    made = Generation(**values)
    assert {f.name: getattr(made, f.name) for f in dataclasses.fields(Generation)} == values
    assert dataclasses.replace(made, cost=99) == Generation(**{**values, "cost": 99})


def test_a_default_list_or_mapping_is_new_for_each_record() -> None:
    first, second = Ticket("k", 1, None, False), Ticket("k", 1, None, False)
    assert first.decisions == [] and first.decisions is not second.decisions
    assert first.token_buckets == [] and first.token_buckets is not second.token_buckets
    assert Upstream("m", "http://x", "s").config == {}


def test_an_upstreams_repr_leaves_out_its_secret() -> None:
    text = repr(Upstream("gpt-4o-mini", "https://api.openai.com/v1", "sk-vault-secret-1234"))
    assert "sk-vault-secret" not in text and "gpt-4o-mini" in text
