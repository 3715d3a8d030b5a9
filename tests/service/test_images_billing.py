"""What an images answer is billed for: never more images than asked, never a per-image
model's tokens, and without a readable report the hold's own bounds."""

from __future__ import annotations

from nemorouter.money import Usage
from nemorouter.providers.image_bounds import ImageHold
from nemorouter.providers.types import Completion
from nemorouter.service.images import _billed

PER_IMAGE = ImageHold(True, "image/1024x1024/hd", 2, 0, 0, {})
PER_TOKEN = ImageHold(False, "image_input_token", 8192, 20, 2 * 272, {})


def images(count: int, usage: Usage | None = None) -> Completion:
    return Completion({"data": [{"url": "u"}] * count}, usage, None, None)


def test_a_provider_that_returns_more_images_than_asked_is_billed_for_n() -> None:
    usage, raw = _billed(PER_IMAGE, images(5, Usage(prompt_tokens=10**9, units=99)), 2, {})
    assert (usage.unit, usage.units, usage.prompt_tokens, usage.completion_tokens) == (
        PER_IMAGE.unit,
        2,
        0,
        0,
    )
    assert raw["images"] == 2
    assert _billed(PER_IMAGE, images(0), 2, {})[0].units == 0  # no image, no charge


def test_per_token_the_report_else_the_bounds_and_published_tokens() -> None:
    reported = Usage(prompt_tokens=7, completion_tokens=272, units=40)
    usage, _ = _billed(PER_TOKEN, images(1, reported), 2, {"size": "1024x1024", "quality": "low"})
    assert (usage.prompt_tokens, usage.completion_tokens, usage.unit, usage.units) == (
        7,
        272,
        "image_input_token",
        40,
    )
    usage, raw = _billed(PER_TOKEN, images(3), 2, {"size": "1024x1024", "quality": "low"})
    assert (usage.prompt_tokens, usage.completion_tokens, usage.units) == (20, 2 * 272, 8192)
    assert raw == {"estimated": True}
