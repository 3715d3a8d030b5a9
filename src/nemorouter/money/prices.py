"""Prices as integer pico-USD per token, parsed exactly from USD-per-million decimal strings,
and per unit (an image, a character, a second of audio, a search) from USD-per-unit strings."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import InvalidOperation
from typing import Any

from nemorouter.money.amounts import MoneyFormatError, format_usd, parse_usd

_PER_MILLION = 10**6
# A unit's name: a path of lower-case words, its kind first ("image/1024x1024/hd", "second").
UNIT_NAME = re.compile(r"[a-z0-9_.-]{1,40}(/[a-z0-9_.-]{1,40}){0,3}")


def parse_per_million(value: object) -> int:
    """USD per 1M tokens (at most 6 decimals) -> exact pico-USD per token."""
    pico_per_million = parse_usd(value)
    if pico_per_million < 0:
        raise MoneyFormatError("a price cannot be negative")
    rate, rest = divmod(pico_per_million, _PER_MILLION)
    if rest:
        raise MoneyFormatError(f"price {value!r} has more than 6 decimal places per 1M tokens")
    return rate


def parse_per_request(value: object) -> int:
    """USD per request -> exact pico-USD."""
    fee = parse_usd(value)
    if fee < 0:
        raise MoneyFormatError("a price cannot be negative")
    return fee


def parse_units(value: object) -> tuple[tuple[str, int], ...]:
    """`{unit name: USD per one unit}` -> ((name, pico-USD per unit), ...), sorted by name."""
    if not isinstance(value, Mapping):
        raise MoneyFormatError("units must be an object of unit name -> USD per unit")
    out = []
    for name, price in value.items():
        if not isinstance(name, str) or UNIT_NAME.fullmatch(name) is None:
            raise MoneyFormatError(
                f"unit name {str(name)[:60]!r} must be lower-case words joined by '/', its kind first"
                " (e.g. image/1024x1024/hd, character, second)"
            )
        out.append((name, parse_per_request(price)))
    return tuple(sorted(out))


def per_million_text(rate: int) -> str:
    """Pico-USD per token -> USD per 1M tokens, as exact text."""
    return _trim(format_usd(rate * _PER_MILLION))


def per_token_text(rate: int) -> str:
    """Pico-USD per token -> USD per token, as exact text (OpenRouter's /models convention)."""
    return _trim(format_usd(rate))


def _trim(text: str) -> str:
    return text[:-2] if text.endswith(".0") else text


@dataclass(frozen=True, slots=True)
class Prices:
    """Per-token rates in pico-USD. A missing cache rate means those tokens cost the input rate.

    `long_context` holds the rates that apply to the whole request when its prompt exceeds
    `long_context_threshold` tokens (Gemini 2.5 Pro above 200k, GPT-5.5 above 272k, ...).
    """

    input: int
    output: int
    cache_read: int | None = None
    cache_write: int | None = None
    cache_write_1h: int | None = None
    request: int = 0
    long_context_threshold: int | None = None
    long_context: Prices | None = field(default=None)
    units: tuple[tuple[str, int], ...] = ()  # (unit name, pico-USD per unit), sorted by name

    def unit_rate(self, unit: str) -> int:
        """What one `unit` costs: its own rate; else the dearest of the names under it (a hold for
        "image" when the request named no size); else the dearest of its kind (a tier this price
        list does not name costs no less than any it does); else 0 (an unpriced unit is free)."""
        under = unit + "/"
        kind = unit.split("/", 1)[0]
        of_kind = kind + "/"
        exact = below = same_kind = None
        for name, rate in self.units:
            if name == unit:
                exact = rate
            elif name.startswith(under):
                below = rate if below is None else max(below, rate)
            if name == kind or name.startswith(of_kind):
                same_kind = rate if same_kind is None else max(same_kind, rate)
        for found in (exact, below, same_kind):
            if found is not None:
                return found
        return 0

    def for_prompt(self, prompt_tokens: int) -> Prices:
        """The rates that apply to a request with this many prompt tokens."""
        if (
            self.long_context is not None
            and self.long_context_threshold is not None
            and prompt_tokens > self.long_context_threshold
        ):
            return self.long_context
        return self

    @property
    def cache_read_rate(self) -> int:
        return self.input if self.cache_read is None else self.cache_read

    @property
    def cache_write_rate(self) -> int:
        return self.input if self.cache_write is None else self.cache_write

    @property
    def cache_write_1h_rate(self) -> int:
        return self.cache_write_rate if self.cache_write_1h is None else self.cache_write_1h

    @property
    def max_input_rate(self) -> int:
        """The dearest rate any prompt token can be billed at (used to size holds)."""
        rates = [self.input, self.cache_read_rate, self.cache_write_rate, self.cache_write_1h_rate]
        if self.long_context is not None:
            rates.append(self.long_context.max_input_rate)
        return max(rates)

    @property
    def max_output_rate(self) -> int:
        if self.long_context is not None:
            return max(self.output, self.long_context.output)
        return self.output

    @property
    def max_request_fee(self) -> int:
        if self.long_context is not None:
            return max(self.request, self.long_context.request)
        return self.request

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Prices:
        """Parse `{input, output, cache_read?, cache_write?, cache_write_1h?, request?,
        long_context?: {threshold, input, output, ...}}` (USD per 1M tokens, decimal strings)."""
        try:
            long_context = data.get("long_context")
            tier = None
            threshold = None
            if long_context is not None:
                threshold = int(long_context["threshold"])
                tier = cls.from_json({k: v for k, v in long_context.items() if k != "threshold"})
            return cls(
                input=parse_per_million(data["input"]),
                output=parse_per_million(data.get("output", "0")),
                cache_read=_optional_rate(data.get("cache_read")),
                cache_write=_optional_rate(data.get("cache_write")),
                cache_write_1h=_optional_rate(data.get("cache_write_1h")),
                request=parse_per_request(data["request"]) if data.get("request") is not None else 0,
                long_context_threshold=threshold,
                long_context=tier,
                units=parse_units(data["units"]) if data.get("units") else (),
            )
        except KeyError as missing:
            raise MoneyFormatError(f"pricing is missing {missing}") from None
        except (InvalidOperation, TypeError, ValueError) as exc:
            raise MoneyFormatError(f"invalid pricing: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        """Inverse of `from_json`: exact decimal strings in USD per 1M tokens."""
        out: dict[str, Any] = {"input": per_million_text(self.input), "output": per_million_text(self.output)}
        for name in ("cache_read", "cache_write", "cache_write_1h"):
            value = getattr(self, name)
            if value is not None:
                out[name] = per_million_text(value)
        if self.request:
            out["request"] = _trim(format_usd(self.request))
        if self.long_context is not None:
            out["long_context"] = {"threshold": self.long_context_threshold, **self.long_context.to_json()}
        if self.units:
            out["units"] = {name: _trim(format_usd(rate)) for name, rate in self.units}
        return out


def _optional_rate(value: object) -> int | None:
    if value is None or value == "":
        return None
    return parse_per_million(value)


__all__ = [
    "UNIT_NAME",
    "Prices",
    "parse_per_million",
    "parse_per_request",
    "parse_units",
    "per_million_text",
    "per_token_text",
]
