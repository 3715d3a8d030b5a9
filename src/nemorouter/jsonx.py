"""JSON in and out: orjson for speed, money written as exact number literals.

A `Usd` is written as an `orjson.Fragment` of its exact decimal text: orjson copies a fragment
into the output as it is, so money never passes through float and no text is rewritten after
serialization (a client's string can never turn into a number). Money in request bodies is
parsed with Decimal, never float.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson

from nemorouter.money import Usd, format_usd


def _default(obj: Any) -> Any:
    if isinstance(obj, Usd):
        return orjson.Fragment(format_usd(obj.pico))
    if isinstance(obj, Decimal):
        return str(obj)
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def dumps(obj: Any) -> bytes:
    """Serialize to JSON bytes; `Usd` values become exact number literals."""
    return orjson.dumps(obj, default=_default)


def loads(data: bytes | str) -> Any:
    """Fast parse for bodies without money (inference requests, upstream responses)."""
    return orjson.loads(data)


def loads_exact(data: bytes | str) -> Any:
    """Parse a body that may carry money: number literals with a fraction become Decimal."""
    return json.loads(data, parse_float=Decimal)
