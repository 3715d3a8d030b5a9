"""Images on the OpenAI wire: the hold plan (per image or per token, over every candidate's
prices) and the answer read as untrusted input."""

from __future__ import annotations

import pytest

from nemorouter.money import Prices
from nemorouter.providers.image_bounds import INPUT_IMAGE_TOKENS, UnpricedTier, output_tokens, plan
from nemorouter.providers.images_wire import images_response

DALL_E_3 = Prices.from_json(
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
DALL_E_2 = Prices.from_json({"input": "0", "output": "0", "units": {"image/256x256/standard": "0.016"}})
GPT_IMAGE = Prices.from_json({"input": "5", "output": "40", "units": {"image_input_token": "0.00001"}})


def test_per_image_the_exact_tier_when_known_else_the_widest_name() -> None:
    exact = plan([DALL_E_3], 1, "1024x1792", "hd", "p", 0)
    assert (exact.per_image, exact.unit, exact.units, exact.sent) == (True, "image/1024x1792/hd", 1, {})
    defaults = plan([DALL_E_3], 1, None, None, "p", 0)
    assert defaults.unit == "image/1024x1024/standard"
    assert defaults.sent == {"size": "1024x1024", "quality": "standard"}
    assert plan([DALL_E_3], 1, "1024x1024", "auto", "p", 0).unit == "image/1024x1024"
    assert plan([DALL_E_3], 1, "auto", None, "p", 0).unit == "image"
    # No 1024x1024 tier: no default size is sent, the request is held at the dearest.
    assert plan([DALL_E_2], 4, None, None, "p", 0).unit == "image"
    assert plan([DALL_E_2], 4, None, None, "p", 0).units == 4


@pytest.mark.parametrize(
    ("size", "quality"), [("256x256", None), ("1024x1024", "ultra"), ("1792x1792", "hd"), (None, "ultra")]
)
def test_a_tier_no_candidate_prices_is_refused(size: str | None, quality: str | None) -> None:
    with pytest.raises(UnpricedTier):
        plan([DALL_E_3], 1, size, quality, "p", 0)


def test_candidates_that_bill_differently_are_refused() -> None:
    with pytest.raises(UnpricedTier):
        plan([DALL_E_3, GPT_IMAGE], 1, None, None, "p", 0)


def test_per_token_n_times_the_published_tokens_and_a_bound_per_input_file() -> None:
    held = plan([GPT_IMAGE], 3, "1536x1024", "high", "héllo", 2)
    assert (held.per_image, held.unit, held.units) == (False, "image_input_token", 2 * INPUT_IMAGE_TOKENS)
    assert held.input_bound == len("héllo".encode()) + 8 and held.max_output == 3 * 6240
    assert output_tokens("1024x1024", "low") == 272
    assert output_tokens("1024x1024", "auto") == 4160  # the dearest at that size
    assert output_tokens("auto", "medium") == 1584  # the dearest of that quality
    assert output_tokens(None, None) == output_tokens("4096x4096", "ultra") == 6240


def test_an_answer_is_read_as_untrusted_input() -> None:
    answer = images_response(
        {
            "created": 7,
            "data": [{"b64_json": "AAAA", "extra": 1}, {"url": "https://x/y.png", "revised_prompt": "r"}],
            "size": "1024x1024",
            "usage": {
                "input_tokens": 50,
                "input_tokens_details": {"text_tokens": 10, "image_tokens": 40},
                "output_tokens": 272,
            },
        }
    )
    assert answer.body == {
        "data": [{"b64_json": "AAAA"}, {"url": "https://x/y.png", "revised_prompt": "r"}],
        "created": 7,
        "size": "1024x1024",
    }
    usage = answer.usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens, usage.units) == (10, 272, 40)
    assert images_response({"data": [{"url": "u"}]}).usage is None  # DALL·E: no report
    for bad_usage in (
        {"input_tokens": 5, "input_tokens_details": {"image_tokens": 9}},
        {"input_tokens": -1},
        {"output_tokens": 1.5},
        {"input_tokens_details": "x"},
    ):
        spoiled = images_response({"data": [{"url": "u"}], "usage": bad_usage})
        assert spoiled.usage is None and spoiled.raw_usage == bad_usage
    for bad in ({}, {"data": "x"}, {"data": [{}]}, {"data": [{"url": ""}]}, {"data": ["u"]}, []):
        with pytest.raises(ValueError):
            images_response(bad)
