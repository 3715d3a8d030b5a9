"""The records built on every request have a hand-written __init__ (fast once compiled; see
docs/architecture.md, "Speed"): it must behave exactly as the dataclass's own would, taking every
field in order, by position or by name, with the same defaults, and storing each one, so a field
added later can't be left out of it. Checked by constructing records, not by reading the source."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from nemorouter.engine.http import RawResponse
from nemorouter.limits.gcra import Decision
from nemorouter.limits.local import Ticket
from nemorouter.money.cost import CostBreakdown
from nemorouter.money.settlement import Charge
from nemorouter.money.usage import Usage
from nemorouter.providers.canonical import ChatRequest
from nemorouter.providers.types import Completion, SseEvent, StreamStep, Upstream, UpstreamRequest
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
    ChatRequest,
    SseEvent,
    StreamStep,
]


class _Marker:
    """A value no default equals: shows which parameter landed in which field."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


def _marker(field: dataclasses.Field[Any], index: int) -> Any:
    """A distinct value for the field: an int where the record checks for one (`Usage`'s counts,
    halving field by field so that its parts never exceed their wholes)."""
    return 2 ** (40 - index) if str(field.type) == "int" else _Marker(field.name)


def _markers(cls: type) -> dict[str, Any]:
    return {f.name: _marker(f, i) for i, f in enumerate(dataclasses.fields(cls))}


def _fields_of(record: object) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", HAND_WRITTEN, ids=lambda c: c.__name__)
def test_init_takes_every_field_in_order_by_position_or_name(cls: type) -> None:
    values = _markers(cls)
    assert _fields_of(cls(*values.values())) == values
    assert _fields_of(cls(**values)) == values
    with pytest.raises(TypeError):
        cls(*values.values(), _Marker("one too many"))


@pytest.mark.parametrize("cls", HAND_WRITTEN, ids=lambda c: c.__name__)
def test_init_has_the_dataclass_defaults(cls: type) -> None:
    fields = dataclasses.fields(cls)
    required = [
        f for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    values = {f.name: _marker(f, i) for i, f in enumerate(required)}
    if values:
        with pytest.raises(TypeError):
            cls(*list(values.values())[:-1])  # every field without a default is required
    first, second = cls(**values), cls(**values)
    for field in fields:
        if field.default is not dataclasses.MISSING:
            assert getattr(first, field.name) == field.default, field.name
        elif field.default_factory is not dataclasses.MISSING:
            assert getattr(first, field.name) == field.default_factory(), field.name
            assert getattr(first, field.name) is not getattr(second, field.name), field.name  # a new one


def test_a_record_replaced_is_the_record_made_with_that_value() -> None:
    values = _markers(Generation)
    made = Generation(**values)
    assert dataclasses.replace(made, cost=99) == Generation(**{**values, "cost": 99})


def test_a_default_list_or_mapping_is_new_for_each_record() -> None:
    first, second = Ticket("k", 1, None, False), Ticket("k", 1, None, False)
    assert first.decisions == [] and first.decisions is not second.decisions
    assert first.token_buckets == [] and first.token_buckets is not second.token_buckets
    assert Upstream("m", "http://x", "s").config == {}


def test_an_upstreams_repr_leaves_out_its_secret() -> None:
    text = repr(Upstream("gpt-4o-mini", "https://api.openai.com/v1", "sk-vault-secret-1234"))
    assert "sk-vault-secret" not in text and "gpt-4o-mini" in text
