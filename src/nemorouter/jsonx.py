"""JSON in and out: orjson for speed, money written as exact number literals.

orjson cannot emit a raw number literal, so a `Usd` is first written as a marker string
carrying a per-process random nonce (no client text can forge it) and the marker is then
replaced by the exact decimal. Money in request bodies is parsed with Decimal, never float.
"""

from __future__ import annotations

import json
import secrets
from decimal import Decimal
from typing import Any

import orjson

from nemorouter.money import Usd, format_usd

_NONCE = secrets.token_hex(8)
_MARK = f"\x02{_NONCE}:"
_MARK_BYTES = b'"\\u0002' + _NONCE.encode() + b":"  # how orjson writes the start of a marker


def _default(obj: Any) -> Any:
    if isinstance(obj, Usd):
        return f"{_MARK}{obj.pico}"
    if isinstance(obj, Decimal):
        return str(obj)
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def dumps(obj: Any) -> bytes:
    """Serialize to JSON bytes; `Usd` values become exact number literals."""
    out = orjson.dumps(obj, default=_default)
    start = out.find(_MARK_BYTES)
    if start < 0:
        return out
    parts: list[bytes] = []
    done, skip = 0, len(_MARK_BYTES)
    while start >= 0:  # a marker is a whole string `"<\u0002>NONCE:<pico>"`; other text stays
        end = out.find(b'"', start + skip)
        digits = out[start + skip : end]
        if end > 0 and digits.removeprefix(b"-").isdigit():
            parts += (out[done:start], format_usd(int(digits)).encode())
            done = end + 1
        start = out.find(_MARK_BYTES, start + skip)
    parts.append(out[done:])
    return b"".join(parts)


def loads(data: bytes | str) -> Any:
    """Fast parse for bodies without money (inference requests, upstream responses)."""
    return orjson.loads(data)


def loads_exact(data: bytes | str) -> Any:
    """Parse a body that may carry money: number literals with a fraction become Decimal."""
    return json.loads(data, parse_float=Decimal)
