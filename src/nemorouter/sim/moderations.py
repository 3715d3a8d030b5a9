"""Deterministic moderation: the body of ``POST /v1/moderations`` in OpenAI's shape.

One result per input (a string, or each string of a list; a list of multi-modal parts is one
input, as OpenAI classifies it). Scores come from a hash of the input, far below any threshold,
except that a text holding the word ``[flag:CATEGORY]`` scores 0.99 in that category and is
flagged: tests choose what is flagged without real classification. No ``usage``: OpenAI's
moderation answers carry none.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

import orjson

# OpenAI's categories, and the input types each applies to (openai SDK `types/moderation.py`).
CATEGORIES = {
    "harassment": ["text"],
    "harassment/threatening": ["text"],
    "hate": ["text"],
    "hate/threatening": ["text"],
    "illicit": ["text"],
    "illicit/violent": ["text"],
    "self-harm": ["text", "image"],
    "self-harm/instructions": ["text", "image"],
    "self-harm/intent": ["text", "image"],
    "sexual": ["text", "image"],
    "sexual/minors": ["text"],
    "violence": ["text", "image"],
    "violence/graphic": ["text", "image"],
}
_FLAG = re.compile(r"\[flag:([a-z/-]+)\]")


class ModerationError(Exception):
    """A request OpenAI would refuse with 400."""


def input_strings(value: Any) -> list[str]:
    """The texts of an input (where in-band directives and flags may hide)."""
    if isinstance(value, str):
        return [value]
    found = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict) and isinstance(item.get("text"), str):
            found.append(item["text"])
    return found


def _inputs(value: Any) -> list[Any]:
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return list(value)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [value]  # multi-modal parts: one input
    raise ModerationError("'input' must be a non-empty string, array of strings, or array of parts.")


def _result(item: Any) -> dict[str, Any]:
    seed = hashlib.sha256(orjson.dumps(item)).digest()
    flagged = set(_FLAG.findall(" ".join(input_strings(item)))) & set(CATEGORIES)
    scores = {name: 0.99 if name in flagged else seed[i] / 255 / 1000 for i, name in enumerate(CATEGORIES)}
    return {
        "flagged": bool(flagged),
        "categories": {name: name in flagged for name in CATEGORIES},
        "category_scores": scores,
        "category_applied_input_types": {name: list(types) for name, types in CATEGORIES.items()},
    }


def moderation_body(body: dict[str, Any]) -> dict[str, Any]:
    """The full OpenAI response body for a moderation request; raises ``ModerationError``."""
    model = body.get("model") or "omni-moderation-latest"
    if not isinstance(model, str):
        raise ModerationError("'model' must be a string.")
    return {
        "id": "modr-" + secrets.token_hex(12),
        "model": model,
        "results": [_result(item) for item in _inputs(body.get("input"))],
    }
