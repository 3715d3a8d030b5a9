"""Normalized usage: one shape for every provider, in OpenAI's conventions."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, init=False)
class Usage:
    """Token counts of one request.

    `prompt_tokens` counts every input token; `cached_tokens` (cache reads) and
    `cache_write_tokens` are parts of it, and `cache_write_1h_tokens` is the part of the
    writes made with a one-hour lifetime. `completion_tokens` counts every output token;
    `reasoning_tokens` is part of it. `units` counts what a model priced per unit used (images,
    characters, seconds, searches: docs/money-trail.md, "Units"), in the unit named by `unit`
    (a path, its kind first: "image/1024x1024/hd"); "" while the request has not named it yet.
    A value: never changed once made.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    unit: str = ""
    units: int = 0

    # A hand-written __init__: compiled, a direct constructor (docs/architecture.md, "Speed").
    # It takes `object`s because the counts come from providers: anything that is not an exact,
    # non-negative int (a float, a bool, a string) is refused with a ValueError naming the field,
    # where a compiled int parameter would raise a TypeError instead.
    def __init__(
        self,
        prompt_tokens: object = 0,
        completion_tokens: object = 0,
        cached_tokens: object = 0,
        cache_write_tokens: object = 0,
        cache_write_1h_tokens: object = 0,
        reasoning_tokens: object = 0,
        unit: str = "",
        units: object = 0,
    ) -> None:
        p, c, cr = (
            _count("prompt_tokens", prompt_tokens),
            _count("completion_tokens", completion_tokens),
            _count("cached_tokens", cached_tokens),
        )
        cw, cw1 = (
            _count("cache_write_tokens", cache_write_tokens),
            _count("cache_write_1h_tokens", cache_write_1h_tokens),
        )
        r = _count("reasoning_tokens", reasoning_tokens)
        u = _count("units", units)
        if cr + cw > p:
            raise ValueError("cached and cache-write tokens cannot exceed prompt tokens")
        if cw1 > cw:
            raise ValueError("one-hour cache writes are part of cache writes")
        if r > c:
            raise ValueError("reasoning tokens are part of completion tokens")
        self.prompt_tokens = p
        self.completion_tokens = c
        self.cached_tokens = cr
        self.cache_write_tokens = cw
        self.cache_write_1h_tokens = cw1
        self.reasoning_tokens = r
        self.unit = unit
        self.units = u

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _count(name: str, value: object) -> int:
    """`value` as a token count: an exact int (not a bool), not negative."""
    if type(value) is not int or value < 0:
        raise ValueError(f"usage field {name} must be a non-negative integer, got {value!r}")
    return value


# More tokens than any request can hold by orders of magnitude: a count above it is a provider's
# fault, and is recorded cut to the request's limits so that it fits a 64-bit column.
PLAUSIBLE_TOKENS = 10**12


def named(usage: Usage, unit: str) -> Usage:
    """`usage` of a request priced per `unit`, its units named so: an adapter counts what the
    answer shows (images returned, seconds transcribed), the request names the tier it held for.
    A unit the adapter named itself is kept."""
    if usage.unit or not unit:
        return usage
    return Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_tokens=usage.cached_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        unit=unit,
        units=usage.units,
    )


def within_output_limit(usage: Usage, max_output: int) -> Usage:
    """`usage` with at most `max_output` completion tokens, the limit sent upstream: output
    beyond it cannot have been generated, so a report of more is the provider's fault and is
    not billed. Returns `usage` itself when it is within the limit."""
    if usage.completion_tokens <= max_output:
        return usage
    return Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=max_output,
        cached_tokens=usage.cached_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens,
        reasoning_tokens=min(usage.reasoning_tokens, max_output),
        unit=usage.unit,
        units=usage.units,
    )


def within_limits(usage: Usage, input_bound: int, max_output: int, max_units: int = 0) -> Usage:
    """`usage` cut to the request's limits: at most `input_bound` prompt tokens (the bound the
    hold was sized from), `max_output` completion tokens (the limit sent upstream) and
    `max_units` units (the count held). Its cost never exceeds the hold. Returns `usage` itself
    when it is within all three."""
    if (
        usage.prompt_tokens <= input_bound
        and usage.completion_tokens <= max_output
        and usage.units <= max_units
    ):
        return usage
    prompt = min(usage.prompt_tokens, input_bound)
    cached = min(usage.cached_tokens, prompt)
    writes = min(usage.cache_write_tokens, prompt - cached)
    completion = min(usage.completion_tokens, max_output)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        cache_write_tokens=writes,
        cache_write_1h_tokens=min(usage.cache_write_1h_tokens, writes),
        reasoning_tokens=min(usage.reasoning_tokens, completion),
        unit=usage.unit,
        units=min(usage.units, max_units),
    )


def overrun_reason(usage: Usage, input_bound: int, max_output: int, max_units: int = 0) -> str:
    """Why a report cost more than the request's hold allowed, for the operator."""
    reasons = []
    if usage.units > max_units:
        reasons.append(f"{usage.units} units ({usage.unit}) reported for a hold of {max_units}")
    if usage.completion_tokens > max_output:
        reasons.append(f"{usage.completion_tokens} output tokens reported for a limit of {max_output}")
    if usage.prompt_tokens > input_bound:
        reasons.append(f"{usage.prompt_tokens} prompt tokens reported for a bound of {input_bound}")
    return "; ".join(reasons) or "reported cost above the hold"
