"""Deterministic embeddings: the request reading, vectors and body of ``POST /v1/embeddings``.

Vectors are unit length and depend only on the input, so tests can compare
them across calls; ``base64`` is little-endian float32, which the openai SDK
decodes (and asks for by default).
"""

from __future__ import annotations

import base64
import hashlib
import math
import sys
from array import array
from typing import Any

import orjson

from nemorouter.sim.tokens import count_text_tokens

MAX_DIMENSIONS = 8192
MAX_INPUTS = 2048


class EmbeddingsError(Exception):
    """A request OpenAI would refuse with 400."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def input_strings(value: Any) -> list[str]:
    """The string inputs (where in-band directives may hide)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _is_tokens(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)


def normalize_inputs(value: Any) -> list[str | list[int]]:
    """Inputs as a list of strings or token lists; raises on empty or mixed shapes."""
    if isinstance(value, str):
        items: list[Any] = [value]
    elif _is_tokens(value) and value:
        items = [value]
    elif isinstance(value, list) and (
        all(isinstance(v, str) for v in value) or all(_is_tokens(v) for v in value)
    ):
        items = value
    else:
        raise EmbeddingsError(
            "'input' must be a string, an array of strings or an array of token arrays.", "input"
        )
    if not items or any(len(item) == 0 for item in items):
        raise EmbeddingsError("'input' cannot be empty.", "input")
    if len(items) > MAX_INPUTS:
        raise EmbeddingsError(f"'input' holds more than {MAX_INPUTS} items.", "input")
    return items


def dimensions_for(model: str, requested: Any) -> int:
    if requested is not None:
        if (
            isinstance(requested, bool)
            or not isinstance(requested, int)
            or not 1 <= requested <= MAX_DIMENSIONS
        ):
            raise EmbeddingsError(
                f"'dimensions' must be an integer between 1 and {MAX_DIMENSIONS}.", "dimensions"
            )
        return requested
    if "3-small" in model:
        return 1536
    if "3-large" in model:
        return 3072
    return 256


def vector(item: str | list[int], dimensions: int) -> array[float]:
    """A unit-length float32 vector drawn from a hash of the input."""
    seed = hashlib.sha256(orjson.dumps(item)).digest()
    raw = array("I", hashlib.shake_256(seed).digest(4 * dimensions))
    values = [(x / 2147483647.5) - 1.0 for x in raw]
    norm = math.sqrt(math.fsum(v * v for v in values)) or 1.0
    return array("f", [v / norm for v in values])


def encode(vec: array[float], encoding: str) -> Any:
    if encoding == "base64":
        if sys.byteorder != "little":
            vec = array("f", vec)
            vec.byteswap()
        return base64.b64encode(vec.tobytes()).decode("ascii")
    return vec.tolist()


def embeddings_body(body: dict[str, Any]) -> dict[str, Any]:
    """The full OpenAI response body for an embeddings request; raises ``EmbeddingsError``."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise EmbeddingsError("you must provide a model parameter", "model")
    items = normalize_inputs(body.get("input"))
    dims = dimensions_for(model, body.get("dimensions"))
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise EmbeddingsError("'encoding_format' must be 'float' or 'base64'.", "encoding_format")
    tokens = sum(count_text_tokens(i) if isinstance(i, str) else len(i) for i in items)
    data = [
        {"object": "embedding", "index": index, "embedding": encode(vector(item, dims), encoding)}
        for index, item in enumerate(items)
    ]
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
