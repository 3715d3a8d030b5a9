"""Normalized usage: one shape for every provider, in OpenAI's conventions."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, init=False)
class Usage:
    """Token counts of one request.

    `prompt_tokens` counts every input token; `cached_tokens` (cache reads) and
    `cache_write_tokens` are parts of it, and `cache_write_1h_tokens` is the part of the
    writes made with a one-hour lifetime. `completion_tokens` counts every output token;
    `reasoning_tokens` is part of it. A value: never changed once made.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0

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

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _count(name: str, value: object) -> int:
    """`value` as a token count: an exact int (not a bool), not negative."""
    if type(value) is not int or value < 0:
        raise ValueError(f"usage field {name} must be a non-negative integer, got {value!r}")
    return value
