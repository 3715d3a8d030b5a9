"""Normalized usage: one shape for every provider, in OpenAI's conventions."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one request.

    `prompt_tokens` counts every input token; `cached_tokens` (cache reads) and
    `cache_write_tokens` are parts of it, and `cache_write_1h_tokens` is the part of the
    writes made with a one-hour lifetime. `completion_tokens` counts every output token;
    `reasoning_tokens` is part of it.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        p, c, r = self.prompt_tokens, self.completion_tokens, self.reasoning_tokens
        cr, cw, cw1 = self.cached_tokens, self.cache_write_tokens, self.cache_write_1h_tokens
        # The usual case in one expression (exact ints, none negative); `_reject_fields` names the culprit.
        if not (
            type(p) is int
            and type(c) is int
            and type(r) is int
            and type(cr) is int
            and type(cw) is int
            and type(cw1) is int
            and p >= 0
            and c >= 0
            and r >= 0
            and cr >= 0
            and cw >= 0
            and cw1 >= 0
        ):
            self._reject_fields()
        if self.cached_tokens + self.cache_write_tokens > self.prompt_tokens:
            raise ValueError("cached and cache-write tokens cannot exceed prompt tokens")
        if self.cache_write_1h_tokens > self.cache_write_tokens:
            raise ValueError("one-hour cache writes are part of cache writes")
        if self.reasoning_tokens > self.completion_tokens:
            raise ValueError("reasoning tokens are part of completion tokens")

    def _reject_fields(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"usage field {name} must be a non-negative integer, got {value!r}")

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens
