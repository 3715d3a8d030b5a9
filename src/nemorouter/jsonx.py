"""JSON in and out: orjson for speed, money written as exact number literals.

A `Usd` is written as an `orjson.Fragment` of its exact decimal text: orjson copies a fragment
into the output as it is, so money never passes through float and no text is rewritten after
serialization (a client's string can never turn into a number). Money in request bodies is
parsed with Decimal, never float.
"""

from __future__ import annotations

import json
import operator
import re
from decimal import Decimal
from itertools import accumulate, count
from typing import Any

import orjson

from nemorouter.money import Usd, format_usd


def _default(obj: Any) -> Any:
    if isinstance(obj, Usd):
        return orjson.Fragment(format_usd(obj.pico))
    if isinstance(obj, Decimal):
        return str(obj)
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def usd_literal(text: str) -> Any:
    """An amount already written by `format_usd`, as the number literal a `Usd` would be: for a
    caller that needs the text anyway (a header) and so formats it once, not twice."""
    return orjson.Fragment(text)


def dumps(obj: Any) -> bytes:
    """Serialize to JSON bytes; `Usd` values become exact number literals."""
    return orjson.dumps(obj, default=_default)


def loads(data: bytes | str) -> Any:
    """Fast parse of a client's body without money (inference requests, leak reports); raises
    `TooDeep` (a ValueError) past MAX_DEPTH."""
    check_depth(data)
    return orjson.loads(data)


def loads_exact(data: bytes | str, *, int64: bool = False) -> Any:
    """Parse a body that may carry money: number literals with a fraction become Decimal. Raises
    `TooDeep` (a ValueError) past MAX_DEPTH, before the parser could recurse that far; with
    `int64` (a client's body), `OutOfRange` for an integer no store column can hold."""
    check_depth(data)
    return json.loads(data, parse_float=Decimal, parse_int=_int64 if int64 else None)


INT64_MAX = 2**63 - 1


class OutOfRange(ValueError):
    """An integer literal outside the signed 64-bit range (the message is shown to the client)."""


def _int64(text: str) -> int:
    value = int(text) if len(text) <= 20 else INT64_MAX + 1
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise OutOfRange(f"the number {text[:30]}{'...' if len(text) > 30 else ''} is out of range")
    return value


# -- nesting depth ---------------------------------------------------------------------------------
# orjson serializes at most 254 levels (it parses 1024) and the standard library's parser recurses
# per level: a client body nested deeper than we can write again (forwarded upstream, translated
# for /v1/messages, audited) must be refused when it is read, with a 400, not fail later as a 500.
# The limit leaves room for the levels a translation adds around a client's value.

MAX_DEPTH = 128


class TooDeep(ValueError):
    """A JSON body nested deeper than MAX_DEPTH (the message is shown to the client)."""

    def __init__(self) -> None:
        super().__init__(f"the JSON body is nested deeper than {MAX_DEPTH} levels")


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = bytes(c for c in range(256) if c not in b"[]{}")
_SIGNS = bytes.maketrans(b"[]{}", b"\x02\x00\x02\x00")  # an opener 2, a closer 0: each is 1 +/- 1


def check_depth(data: bytes | str) -> None:
    """Raise TooDeep if `data` nests more than MAX_DEPTH arrays/objects.

    Almost every body has fewer brackets than MAX_DEPTH in all: two counts (C speed) settle it.
    Otherwise strings are cut out (brackets inside them do not nest), the brackets kept, and the
    deepest prefix found with C iterators: linear in the body, no Python step per byte.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKET)
    if len(brackets) <= MAX_DEPTH:
        return
    # prefix sum of (sign + 1) minus position = depth after each bracket
    depths = map(operator.sub, accumulate(brackets.translate(_SIGNS)), count(1))
    if max(depths) > MAX_DEPTH:
        raise TooDeep
