"""The chat body's output limit: every limit field validated, the smallest held, n choices of it."""

from __future__ import annotations

import json

import pytest

from nemorouter.errors import InvalidRequest
from nemorouter.frontdoors.openai_chat import parse_chat
from nemorouter.providers.canonical import ChatRequest
from nemorouter.service.bodies import held_output

HI = [{"role": "user", "content": "Hi"}]


def parsed(**fields: object) -> ChatRequest:
    return parse_chat(json.dumps({"model": "m", "messages": HI, **fields}).encode())


@pytest.mark.parametrize(
    "field", ["max_tokens", "max_completion_tokens", "max_output_tokens", "max_new_tokens"]
)
@pytest.mark.parametrize("value", [0, -1, "10", 1.5, True, [1]])
def test_every_limit_field_must_be_a_positive_integer(field: str, value: object) -> None:
    with pytest.raises(InvalidRequest, match=field):
        parsed(**{field: value})


def test_the_held_limit_is_the_smallest_field() -> None:
    assert parsed(max_completion_tokens=1, max_tokens=200_000).max_output == 1
    assert parsed(max_tokens=200_000, max_output_tokens=3).max_output == 3
    assert parsed().max_output is None


def test_held_output_covers_n_choices_of_the_limit() -> None:
    assert held_output(10, [4096], 3) == 30
    assert held_output(None, [4096, 16_384], 2) == 32_768  # the largest model that may serve
    assert held_output(50_000, [4096], 1) == 50_000  # a client's own limit is sent as it is


def test_a_model_without_an_output_limit_needs_the_clients() -> None:
    with pytest.raises(InvalidRequest, match="max_completion_tokens"):
        held_output(None, [0], 1)
    assert held_output(5, [0], 1) == 5
