"""Exact USD amounts: `parse_usd` (text, int, Decimal -> pico-USD) and `format_usd` (pico-USD -> text)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemorouter.money import PICO_PER_USD, Usd, format_usd, parse_usd
from nemorouter.money.amounts import MAX_AMOUNT, AmountRangeError, MoneyFormatError, check_amount

PROPERTY = settings(max_examples=200, deadline=None, database=None)


def test_one_usd_is_ten_to_the_twelve_pico() -> None:
    assert PICO_PER_USD == 1_000_000_000_000


@pytest.mark.parametrize(
    ("text", "pico"),
    [
        ("0", 0),
        ("1", 1_000_000_000_000),
        ("1.5", 1_500_000_000_000),
        ("0.1", 100_000_000_000),
        ("0.2", 200_000_000_000),
        ("0.3", 300_000_000_000),
        ("0.00012345", 123_450_000),
        ("0.000000000001", 1),
        ("0.000000000010", 10),
        ("123456.789012345678", 123_456_789_012_345_678),
        ("-2.25", -2_250_000_000_000),
        ("+3", 3_000_000_000_000),
        ("  4.5\n", 4_500_000_000_000),
        (".5", 500_000_000_000),
        ("7.", 7_000_000_000_000),
        ("9223372.036854775807", 9_223_372_036_854_775_807),  # the largest int64 amount
        ("9223372.036854775807", 2**63 - 1),  # the most the ledger holds, to the pico-dollar
    ],
)
def test_parse_decimal_strings_exactly(text: str, pico: int) -> None:
    assert parse_usd(text) == pico


def test_sum_of_tenths_is_exact() -> None:
    # The classic float failure (0.1 + 0.2 != 0.3) cannot happen with integer pico-USD.
    assert parse_usd("0.1") + parse_usd("0.2") == parse_usd("0.3")


@pytest.mark.parametrize(
    ("value", "pico"), [(0, 0), (1, 10**12), (-7, -7 * 10**12), (9_223_372, 9_223_372 * 10**12)]
)
def test_parse_ints(value: int, pico: int) -> None:
    assert parse_usd(value) == pico


@pytest.mark.parametrize(
    ("value", "pico"),
    [
        (Decimal("0.00012345"), 123_450_000),
        (Decimal("1E-12"), 1),
        (Decimal("-0.5"), -500_000_000_000),
        (Decimal("2.000000000000000"), 2 * 10**12),  # trailing zeros carry no extra precision
    ],
)
def test_parse_decimals(value: Decimal, pico: int) -> None:
    assert parse_usd(value) == pico


@pytest.mark.parametrize("value", [0.1, 1.0, 0.0, float("nan"), float("inf")])
def test_floats_are_refused(value: float) -> None:
    with pytest.raises(MoneyFormatError):
        parse_usd(value)


@pytest.mark.parametrize("value", [True, False])
def test_bools_are_refused(value: bool) -> None:
    # bool is an int subclass: True must not become 1 USD.
    with pytest.raises(MoneyFormatError):
        parse_usd(value)


@pytest.mark.parametrize(
    "text",
    [
        "nan",
        "NaN",
        "-nan",
        "sNaN",
        "inf",
        "-inf",
        "+inf",
        "Infinity",
        "-Infinity",
        "1e3",
        "1E3",
        "1e-3",
        "2.5E+2",
        "1_000",
        "1 000",
        "",
        "   ",
        "abc",
        "1,5",
        "0x10",
        "1.2.3",
        "--1",
        "$1",
    ],
)
def test_non_plain_decimal_text_is_refused(text: str) -> None:
    with pytest.raises(MoneyFormatError):
        parse_usd(text)


@pytest.mark.parametrize(
    "value", ["0.0000000000001", "1.0000000000005", "-0.0000000000001", Decimal("1E-13")]
)
def test_more_than_twelve_places_is_refused(value: object) -> None:
    with pytest.raises(MoneyFormatError):
        parse_usd(value)


@pytest.mark.parametrize(
    "value", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), None, [1], {"a": 1}, b"1"]
)
def test_non_finite_decimals_and_other_types_are_refused(value: object) -> None:
    with pytest.raises(MoneyFormatError):
        parse_usd(value)


def test_money_format_error_is_a_value_error() -> None:
    assert issubclass(MoneyFormatError, ValueError)


@pytest.mark.parametrize(
    ("pico", "text"),
    [
        (0, "0.0"),
        (1, "0.000000000001"),
        (10, "0.00000000001"),
        (123_450_000, "0.00012345"),
        (10**12, "1.0"),
        (5 * 10**12, "5.0"),
        (1_500_000_000_000, "1.5"),
        (1_234_567_890_123, "1.234567890123"),
        (-1, "-0.000000000001"),
        (-500_000_000_000, "-0.5"),
        (-1_500_000_000_000, "-1.5"),
        (-3 * 10**12, "-3.0"),
        (9_223_372_036_854_775_807, "9223372.036854775807"),
        (10**30, "1000000000000000000.0"),
    ],
)
def test_format_is_exact_trimmed_with_at_least_one_decimal(pico: int, text: str) -> None:
    assert format_usd(pico) == text


@PROPERTY
@given(st.integers(min_value=-MAX_AMOUNT, max_value=MAX_AMOUNT))
def test_format_then_parse_round_trips(pico: int) -> None:
    text = format_usd(pico)
    assert parse_usd(text) == pico
    whole, _, frac = text.lstrip("-").partition(".")
    assert whole.isdigit() and frac.isdigit()
    assert 1 <= len(frac) <= 12
    assert frac == "0" or not frac.endswith("0")
    assert text.startswith("-") == (pico < 0)
    # The text is the exact decimal value, as Decimal sees it.
    assert Decimal(text) == Decimal(pico) / Decimal(PICO_PER_USD)


@PROPERTY
@given(
    st.decimals(min_value=-(9 * 10**6), max_value=9 * 10**6, places=12, allow_nan=False, allow_infinity=False)
)
def test_parse_then_format_preserves_the_value(value: Decimal) -> None:
    pico = parse_usd(format(value, "f"))
    assert Decimal(format_usd(pico)) == value
    assert parse_usd(value) == pico


@pytest.mark.parametrize(
    ("value", "pico"),
    [
        ("9223372.036854775806", MAX_AMOUNT - 1),  # past a float's 53 bits: no pico-dollar lost
        (Decimal("9223372.036854775806"), MAX_AMOUNT - 1),
    ],
)
def test_large_amounts_parse_exactly(value: object, pico: int) -> None:
    assert format_usd(pico) == "9223372.036854775806"
    assert parse_usd(value) == pico


@pytest.mark.parametrize(
    "value",
    [
        "9223372.036854775808",
        "-9223372.036854775808",
        "10000000000000000000000",
        9_223_373,
        -(10**20),
        Decimal("1E+40"),
        Decimal("-1E+999999"),
    ],
)
def test_amounts_past_the_range_are_refused_naming_the_maximum(value: object) -> None:
    with pytest.raises(AmountRangeError, match=r"\$9223372\.036854775807"):
        parse_usd(value)


def test_the_range_is_a_signed_64_bit_integer_of_pico_usd() -> None:
    assert MAX_AMOUNT == 2**63 - 1 == parse_usd("9223372.036854775807")
    assert check_amount(MAX_AMOUNT) == MAX_AMOUNT and check_amount(-MAX_AMOUNT) == -MAX_AMOUNT
    with pytest.raises(AmountRangeError):
        check_amount(MAX_AMOUNT + 1)


@pytest.mark.parametrize("text", ["1234567890123456.0000000000001", "99999999999999999.9999999999999"])
def test_thirteen_places_on_large_amounts_are_refused(text: str) -> None:
    with pytest.raises(MoneyFormatError):
        parse_usd(text)  # actual: 1234567890123456 * 10**12 and 10**29 (rounded up)


def test_usd_marker_equality_hash_and_repr() -> None:
    assert Usd(5) == Usd(5)
    assert Usd(5) != Usd(6)
    assert Usd(5) != 5
    assert hash(Usd(123_450_000)) == hash(Usd(123_450_000))
    assert repr(Usd(123_450_000)) == "Usd(0.00012345)"
    assert repr(Usd(-(10**12))) == "Usd(-1.0)"
