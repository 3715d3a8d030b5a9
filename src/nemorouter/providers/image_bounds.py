"""What an images request may cost at most, known before it is sent: the unit it is billed in,
how many of them, and (for models billed per token) its input bound and output limit.

Two ways OpenAI bills images (platform.openai.com/docs/pricing):

- **Per image** (DALL·E 2 and 3): a price per image for each size and quality, our units
  `image/<size>/<quality>` (`image/1024x1024/hd`). A request is held for `n` images of the
  exact tier when it names both size and quality, else of the dearest tier it may be billed
  at (the dearest under `image/<size>`, or of all `image/...`). A request that names neither
  is sent with OpenAI's DALL·E defaults, 1024x1024 and standard, where the model prices that
  tier: its tier is then known, and so is its price.
- **Per token** (GPT Image): text input and image output tokens at the model's input and
  output rates, input image tokens (edits) at its `image_input_token` unit. The output is
  held at `n` x the tokens OpenAI publishes per image of the requested size and quality (the
  dearest when either is `auto` or unknown), the text at its UTF-8 bytes, each input image
  at `INPUT_IMAGE_TOKENS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nemorouter.money import Prices
from nemorouter.providers.bounds import MESSAGE_ALLOWANCE

IMAGE = "image"  # the kind of a per-image unit: image/<size>/<quality>
IMAGE_INPUT_TOKEN = "image_input_token"  # GPT Image's input image tokens, priced apart from text
DEFAULT_SIZE = "1024x1024"  # OpenAI's default size for every image model
DEFAULT_QUALITY = "standard"  # DALL·E's default quality (the only one DALL·E 2 has)


class UnpricedTier(ValueError):
    """The request asks for a tier its models do not price (the gateway answers 400)."""


# Output tokens of one GPT Image image by size and quality, as OpenAI publishes them
# (platform.openai.com/docs/guides/image-generation, "Cost and latency").
OUTPUT_TOKENS = {
    ("1024x1024", "low"): 272,
    ("1024x1024", "medium"): 1056,
    ("1024x1024", "high"): 4160,
    ("1024x1536", "low"): 408,
    ("1024x1536", "medium"): 1584,
    ("1024x1536", "high"): 6240,
    ("1536x1024", "low"): 408,
    ("1536x1024", "medium"): 1584,
    ("1536x1024", "high"): 6240,
}
DEAREST_OUTPUT = max(OUTPUT_TOKENS.values())
# Input image tokens of one edited image (or mask). OpenAI publishes no formula for GPT Image
# inputs; a 1024x1024 image is about 3,050 tokens at high input fidelity. This bound is well
# above that: a report beyond it is the operator's overrun, never the customer's charge.
INPUT_IMAGE_TOKENS = 8192


def output_tokens(size: str | None, quality: str | None) -> int:
    """The output tokens of one GPT Image image: the exact count for a known size and quality,
    else the dearest the rest allows (`auto`, absent or unknown)."""
    exact = OUTPUT_TOKENS.get((size or "", quality or ""))
    if exact is not None:
        return exact
    fits = [t for (s, q), t in OUTPUT_TOKENS.items() if s == size or q == quality]
    return max(fits) if fits else DEAREST_OUTPUT


def image_tiers(prices: Prices) -> set[str]:
    """The per-image units this price list names (`image/<size>/<quality>`)."""
    return {name for name, _ in prices.units if name.split("/", 1)[0] == IMAGE}


@dataclass(frozen=True, slots=True)
class ImageHold:
    """How one images request is held and billed: `unit` x `units` (`per_image`: images of a
    tier; else input image tokens), plus `input_bound` text tokens and `max_output` output
    tokens for a model billed per token. `sent` holds the fields to set in the body upstream
    (the DALL·E defaults that fix its tier)."""

    per_image: bool
    unit: str
    units: int
    input_bound: int
    max_output: int
    sent: dict[str, str]


def plan(
    prices: Sequence[Prices], n: int, size: str | None, quality: str | None, prompt: str, inputs: int
) -> ImageHold:
    """The hold of `n` images of `size`/`quality` (None: not given) over every candidate's
    prices; `inputs` is the number of files an edit sends. A 400 for a tier no candidate
    prices, or for candidates that bill in different ways."""
    tiers = [image_tiers(p) for p in prices]
    if all(tiers):
        return _per_image(set().union(*tiers), tiers, n, size, quality)
    if any(tiers):
        raise UnpricedTier("the models of this request bill images in different ways; name them apart")
    return ImageHold(
        per_image=False,
        unit=IMAGE_INPUT_TOKEN,
        units=inputs * INPUT_IMAGE_TOKENS,
        input_bound=len(prompt.encode()) + MESSAGE_ALLOWANCE,
        max_output=n * output_tokens(size, quality),
        sent={},
    )


def _per_image(
    offered: set[str], each: list[set[str]], n: int, size: str | None, quality: str | None
) -> ImageHold:
    sent: dict[str, str] = {}
    if size is None and all(any(t.startswith(f"{IMAGE}/{DEFAULT_SIZE}/") for t in ts) for ts in each):
        size = sent["size"] = DEFAULT_SIZE
    if size is not None and size != "auto":
        sizes = sorted({t.split("/")[1] for t in offered if t.count("/") >= 1})
        if not any(t.startswith(f"{IMAGE}/{size}/") or t == f"{IMAGE}/{size}" for t in offered):
            raise UnpricedTier(f"`size` {size!r} is not offered by this model (sizes: {', '.join(sizes)})")
        default = f"{IMAGE}/{size}/{DEFAULT_QUALITY}"
        if quality is None and all(default in ts for ts in each):
            quality = sent["quality"] = DEFAULT_QUALITY
        if quality is not None and quality != "auto":
            if f"{IMAGE}/{size}/{quality}" not in offered:
                qualities = sorted({t.split("/")[2] for t in offered if t.startswith(f"{IMAGE}/{size}/")})
                raise UnpricedTier(
                    f"`quality` {quality!r} is not offered at size {size} (qualities: {', '.join(qualities)})"
                )
            unit = f"{IMAGE}/{size}/{quality}"
        else:
            unit = f"{IMAGE}/{size}"
    else:
        unit = IMAGE
        if quality not in (None, "auto") and not any(t.endswith(f"/{quality}") for t in offered):
            raise UnpricedTier(f"`quality` {quality!r} is not offered by this model")
    return ImageHold(per_image=True, unit=unit, units=n, input_bound=0, max_output=0, sent=sent)
