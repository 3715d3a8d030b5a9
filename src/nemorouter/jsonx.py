"""JSON in and out: orjson for speed, money written as exact number literals.

orjson cannot emit a raw number literal, so a `Usd` is first written as a marker string
carrying a per-process random nonce (no client text can forge it) and the marker is then
replaced by the exact decimal. Money in request bodies is parsed with Decimal, never float.
"""

from __future__ import annotations

import json
import re
import secrets
from decimal import Decimal
from typing import Any

import orjson

from nemorouter.money import Usd, format_usd

_NONCE = secrets.token_hex(8)
_MARK = f"\x02{_NONCE}:"
_MARK_RE = re.compile(rb'"\\u0002' + _NONCE.encode() + rb':(-?\d+)"')


def _default(obj: Any) -> Any:
    if isinstance(obj, Usd):
        return f"{_MARK}{obj.pico}"
    if isinstance(obj, Decimal):
        return str(obj)
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def _literal(match: re.Match[bytes]) -> bytes:
    return format_usd(int(match.group(1))).encode()


def dumps(obj: Any) -> bytes:
    """Serialize to JSON bytes; `Usd` values become exact number literals."""
    out = orjson.dumps(obj, default=_default)
    if b"\\u0002" in out:
        out = _MARK_RE.sub(_literal, out)
    return out


def loads(data: bytes | str) -> Any:
    """Fast parse for bodies without money (inference requests, upstream responses)."""
    return orjson.loads(data)


def loads_exact(data: bytes | str) -> Any:
    """Parse a body that may carry money: number literals with a fraction become Decimal."""
    return json.loads(data, parse_float=Decimal)
