"""The one output limit of a request: the number the hold is sized from and the number sent upstream.

A client may put several output-limit fields in an OpenAI-shaped body (`max_completion_tokens`,
the deprecated `max_tokens`, the Responses API's `max_output_tokens`, Hugging Face's
`max_new_tokens`). Upstreams obey different ones, so the smallest wins: every extra field can
only lower the limit, never raise it past what was held. Without any, the limit is the model's
catalog `max_output`, and it is still sent: an upstream told nothing may write up to its own
maximum, which the hold never covered. Every adapter strips all these fields and writes the
limit once, in the field its provider honours (see docs/providers.md, "Output limit").
"""

from __future__ import annotations

from typing import Any

# Every output-limit field a client may send in an OpenAI-shaped body; all are validated
# (frontdoors/openai_chat.py), the smallest is the limit, and none is forwarded as the client sent it.
OUTPUT_LIMIT_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens", "max_new_tokens")


def requested_limit(body: dict[str, Any]) -> int | None:
    """The smallest positive integer among the body's output-limit fields, or None."""
    smallest: int | None = None
    for name in OUTPUT_LIMIT_FIELDS:
        value = body.get(name)
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and value > 0
            and (smallest is None or value < smallest)
        ):
            smallest = value
    return smallest


def output_limit(body: dict[str, Any], model_max: int) -> int:
    """The limit to send upstream: the client's smallest, else the model's maximum output."""
    requested = requested_limit(body)
    return requested if requested is not None else model_max


def without_limits(body: dict[str, Any]) -> dict[str, Any]:
    """A copy of `body` with none of the client's output-limit fields (the adapter writes its own)."""
    return {k: v for k, v in body.items() if k not in OUTPUT_LIMIT_FIELDS}
