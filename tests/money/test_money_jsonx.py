"""Money in JSON (CONTRACT.md "Money in JSON"): `Usd` is written as an exact number literal."""

from __future__ import annotations

import json
from decimal import Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemorouter import jsonx
from nemorouter.money import Usd, format_usd

PROPERTY = settings(max_examples=150, deadline=None, database=None)


@pytest.mark.parametrize(
    ("pico", "literal"),
    [
        (123_450_000, b"0.00012345"),
        (1, b"0.000000000001"),
        (0, b"0.0"),
        (10**12, b"1.0"),
        (-1_500_000_000_000, b"-1.5"),
        (9_223_372_036_854_775_807, b"9223372.036854775807"),
        (10**40, b"10000000000000000000000000000.0"),
    ],
)
def test_usd_is_an_exact_number_literal(pico: int, literal: bytes) -> None:
    assert jsonx.dumps(Usd(pico)) == literal
    assert jsonx.dumps({"cost": Usd(pico)}) == b'{"cost":' + literal + b"}"


def test_nested_in_lists_and_dicts() -> None:
    body = {
        "data": [
            {"id": "a", "balance": Usd(5 * 10**12), "held": Usd(1)},
            {"id": "b", "amounts": [Usd(123_450_000), Usd(-7), 3, "x"]},
        ],
        "usage": {"cost": Usd(10**13 + 1), "tokens": 12},
    }
    assert jsonx.dumps(body) == (
        b'{"data":[{"id":"a","balance":5.0,"held":0.000000000001},'
        b'{"id":"b","amounts":[0.00012345,-0.000000000007,3,"x"]}],'
        b'"usage":{"cost":10.000000000001,"tokens":12}}'
    )


def test_output_is_valid_json_that_parses_exactly() -> None:
    out = jsonx.dumps({"cost": Usd(123_450_000), "big": Usd(10**40 + 1)})
    parsed = jsonx.loads_exact(out)
    assert parsed == {
        "cost": Decimal("0.00012345"),
        "big": Decimal("10000000000000000000000000000.000000000001"),
    }
    assert isinstance(parsed["cost"], Decimal)
    # A float parse would lose the last digit of the big amount; the literal itself carries it.
    assert json.loads(out)["big"] != parsed["big"]


@pytest.mark.parametrize(
    "text",
    [
        "\x020123456789abcdef:123",
        "\x02deadbeefdeadbeef:-5",
        "\\u0002deadbeefdeadbeef:5",
        "u0002:7",
        "\x02:1",
        "Usd(1)",
    ],
)
def test_user_text_that_looks_like_a_marker_is_not_rewritten(text: str) -> None:
    out = jsonx.dumps({"content": text, "cost": Usd(1)})
    assert json.loads(out) == {"content": text, "cost": 1e-12}
    assert jsonx.loads_exact(out)["content"] == text


def test_strings_that_read_as_money_stay_strings() -> None:
    # Only a `Usd` becomes a number literal; text that looks like one, or like its repr, does not.
    for text in ("0.000000000002", "-5", "Usd(2)", '2", "x": 1', "\x02:2"):
        assert jsonx.loads_exact(jsonx.dumps([text, Usd(2)])) == [text, Decimal("2E-12")]


@PROPERTY
@given(st.text(max_size=40))
def test_any_user_string_survives(text: str) -> None:
    out = jsonx.dumps({"s": text, "cost": Usd(42)})
    assert jsonx.loads_exact(out) == {"s": text, "cost": Decimal("0.000000000042")}


@PROPERTY
@given(st.integers(min_value=-(10**30), max_value=10**30))
def test_round_trip_through_loads_exact(pico: int) -> None:
    parsed = jsonx.loads_exact(jsonx.dumps({"amount": Usd(pico)}))["amount"]
    assert isinstance(parsed, Decimal)
    assert parsed == Decimal(format_usd(pico))
    with localcontext(prec=100):
        assert parsed * 10**12 == pico


def test_decimals_are_written_as_strings() -> None:
    assert jsonx.dumps({"price": Decimal("1.25")}) == b'{"price":"1.25"}'


def test_unknown_types_are_refused() -> None:
    with pytest.raises(TypeError):
        jsonx.dumps({"x": object()})


def test_loads_exact_parses_fractions_as_decimal_and_keeps_ints() -> None:
    parsed = jsonx.loads_exact('{"amount": 0.1, "n": 3, "tiny": 0.000000000001, "neg": -2.50}')
    assert parsed == {"amount": Decimal("0.1"), "n": 3, "tiny": Decimal("1E-12"), "neg": Decimal("-2.50")}
    assert isinstance(parsed["n"], int)
    assert type(parsed["amount"]) is Decimal
    assert jsonx.loads_exact(b"[1.10]") == [Decimal("1.10")]


def test_fast_loads_is_plain_json() -> None:
    assert jsonx.loads(b'{"a": [1, "b"]}') == {"a": [1, "b"]}
