"""Prices per unit (an image of a size and quality, a character, a second of audio, a search):
parsed exactly, found by name, held at their dearest, charged and cut to what was held."""

from __future__ import annotations

import pytest

from nemorouter.money import Prices, Usage, charge_for, cost_of, named, within_limits, worst_case_cost
from nemorouter.money.amounts import MoneyFormatError
from nemorouter.money.holds import max_affordable_output

PICO = 10**12
# dall-e-3's list prices per image (USD): standard 1024 0.04, 1792 0.08; hd 1024 0.08, 1792 0.12.
DALLE3 = Prices.from_json(
    {
        "input": "0",
        "output": "0",
        "units": {
            "image/1024x1024/standard": "0.04",
            "image/1024x1792/standard": "0.08",
            "image/1024x1024/hd": "0.08",
            "image/1024x1792/hd": "0.12",
        },
    }
)
TTS = Prices.from_json({"input": "0", "units": {"character": "0.000015"}})  # 15 USD per 1M characters


def test_unit_prices_are_exact_pico_usd_per_unit_and_round_trip() -> None:
    assert dict(DALLE3.units) == {
        "image/1024x1024/hd": 80_000_000_000,
        "image/1024x1024/standard": 40_000_000_000,
        "image/1024x1792/hd": 120_000_000_000,
        "image/1024x1792/standard": 80_000_000_000,
    }
    assert TTS.units == (("character", 15_000_000),)
    assert Prices.from_json(DALLE3.to_json()) == DALLE3
    assert DALLE3.to_json()["units"]["image/1024x1024/standard"] == "0.04"
    assert "units" not in Prices.from_json({"input": "1"}).to_json()  # token prices unchanged


@pytest.mark.parametrize(
    "units",
    [
        {"Image/HD": "0.1"},  # upper case
        {"image//hd": "0.1"},  # an empty part
        {"": "0.1"},
        {"image hd": "0.1"},
        {"a/b/c/d/e": "0.1"},  # too deep
        {"x" * 41: "0.1"},
        {"image": "-0.1"},  # negative
        {"image": "0.0000000000001"},  # below a pico-dollar
        {"image": 0.1},  # a float
        {"image": "abc"},
        ["image", "0.1"],  # not an object
    ],
)
def test_bad_unit_prices_are_refused_by_name(units: object) -> None:
    with pytest.raises(MoneyFormatError):
        Prices.from_json({"input": "0", "units": units})


def test_a_unit_is_found_by_its_name_else_the_dearest_under_it_else_the_dearest_of_its_kind() -> None:
    assert DALLE3.unit_rate("image/1024x1024/hd") == 80_000_000_000
    assert DALLE3.unit_rate("image/1024x1792") == 120_000_000_000  # either quality: the dearest
    assert DALLE3.unit_rate("image") == 120_000_000_000  # no size named: the dearest of all
    assert DALLE3.unit_rate("image/512x512/standard") == 120_000_000_000  # not listed: never cheaper
    assert DALLE3.unit_rate("image/1024x10240/hd") == 120_000_000_000  # a prefix of a name is not it
    assert DALLE3.unit_rate("second") == 0  # not priced at all: free, still counted
    assert TTS.unit_rate("character") == 15_000_000


def test_cost_adds_units_at_their_rate_to_the_tokens() -> None:
    both = Prices.from_json({"input": "5", "output": "40", "units": {"image/1024x1024/hd": "0.08"}})
    usage = Usage(prompt_tokens=100, completion_tokens=10, unit="image/1024x1024/hd", units=3)
    parts = cost_of(usage, both)
    assert parts.units == 3 * 80_000_000_000
    assert parts.total == 100 * 5_000_000 + 10 * 40_000_000 + 3 * 80_000_000_000
    assert cost_of(Usage(units=0, unit="image/1024x1024/hd"), both).total == 0


def test_the_hold_covers_every_unit_at_its_dearest_rate() -> None:
    assert worst_case_cost(DALLE3, 0, 0, "image/1024x1024/standard", 2) == 2 * 40_000_000_000
    assert worst_case_cost(DALLE3, 0, 0, "image", 2) == 2 * 120_000_000_000
    assert worst_case_cost(TTS, 0, 0, "character", 4096) == 4096 * 15_000_000
    # a request priced per unit has no max_tokens to lower: its output allowance is not offered
    assert max_affordable_output(DALLE3, 0, 10**11, "image", 1) is None


def test_units_beyond_the_hold_are_cut_and_the_charge_never_passes_it() -> None:
    unit = "image/1024x1024/standard"
    hold = worst_case_cost(DALLE3, 0, 0, unit, 2)
    honest = charge_for(Usage(unit=unit, units=2), DALLE3, hold, 0, 0, max_units=2)
    assert (honest.cost, honest.usage.units, honest.overrun) == (hold, 2, 0)
    fewer = charge_for(Usage(unit=unit, units=1), DALLE3, hold, 0, 0, max_units=2)
    assert (fewer.cost, fewer.usage.units) == (40_000_000_000, 1)
    lying = charge_for(Usage(unit=unit, units=10**9), DALLE3, hold, 0, 0, max_units=2)
    assert (lying.cost, lying.usage.units) == (hold, 2)
    assert lying.overrun == 10**9 * 40_000_000_000 - hold
    # a dearer tier than the one held (the provider's word): still at most the hold
    dearer = charge_for(Usage(unit="image/1024x1792/hd", units=2), DALLE3, hold, 0, 0, max_units=2)
    assert dearer.cost == hold
    # free units beyond the hold are recorded cut to it too (they fit a column, they were not asked for)
    free = charge_for(Usage(unit="second", units=10**15), Prices(0, 0), 0, 0, 0, max_units=30)
    assert (free.cost, free.usage.units) == (0, 30)


def test_within_limits_cuts_units_and_keeps_the_name() -> None:
    usage = Usage(prompt_tokens=5, unit="second", units=90)
    cut = within_limits(usage, 5, 0, 60)
    assert (cut.unit, cut.units, cut.prompt_tokens) == ("second", 60, 5)
    assert within_limits(usage, 5, 0, 90) is usage


def test_the_request_names_the_units_an_adapter_counted() -> None:
    counted = Usage(prompt_tokens=3, units=2)
    assert (named(counted, "image/1024x1024/hd").unit, named(counted, "image/1024x1024/hd").units) == (
        "image/1024x1024/hd",
        2,
    )
    own = Usage(unit="second", units=7)
    assert named(own, "image") is own  # a unit the adapter named itself is kept
    assert named(counted, "") is counted


@pytest.mark.parametrize("units", [-1, 1.5, True, "3", None])
def test_a_unit_count_must_be_an_exact_non_negative_integer(units: object) -> None:
    with pytest.raises(ValueError, match="units"):
        Usage(unit="image", units=units)
