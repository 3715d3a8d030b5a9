"""Per-request fault and latency injection for the simulator.

The gateway's tests need failing, slow and misbehaving upstreams on demand,
per request, without restarting anything. Directives come from two places:

* the request header ``x-sim: key=value;key=value`` (for direct callers), and
* in-band text ``[sim:key=value,key=value]`` inside the last ``user`` message
  (string content or any ``text`` part), or inside any string of an
  embeddings ``input``. This is how a test reaches the sim *through* the
  gateway, which does not forward client headers. The directive text is
  ordinary prompt text: it is counted in ``prompt_tokens`` and it changes the
  deterministic reply seed, but it never appears in generated content.

Separators ``;`` and ``,`` are interchangeable in both forms; keys are
case-insensitive; several in-band blocks merge (later wins) and the header wins
over in-band. Unknown keys and non-integer values are ignored. Keys (all
integers; ``1`` means on for the flags):

``status=CODE``
    Answer with HTTP ``CODE`` (400..599) and an OpenAI-shaped error body
    (``server_error`` for 5xx; ``rate_limit_exceeded`` type and code for 429;
    ``invalid_request_error`` for other 4xx, with code ``invalid_api_key`` for
    401 and ``model_not_found`` for 404). Applies to streaming requests too
    (the error comes instead of the stream).
``retry_after=S``
    Add a ``retry-after: S`` header to the ``status`` error response.
``latency_ms=N``
    Sleep N ms before the first byte (the response headers).
``chunk_delay_ms=N``
    Stream: sleep N ms before every chunk after the first.
``tokens=N``
    Generate exactly N words (still capped by ``max_completion_tokens`` /
    ``max_tokens``); in ``json_object`` mode, N words in the ``answer`` value.
``cut_after=N``
    Stream: after N content chunks, drop the TCP connection mid-body (no
    finish chunk, no usage, no ``[DONE]``, no chunked-encoding terminator).
    N at or past the end of the content cuts just before the finish chunk.
``error_after=N``
    Stream: after N content chunks send
    ``data: {"error": {"message": ..., "type": "server_error", "param": null, "code": 500}}``
    and end the body cleanly (no ``[DONE]``). N past the end: before the finish chunk.
``malformed=1``
    Non-stream: a 200 ``application/json`` response whose body is not valid
    JSON. Stream: one event ``data: {"id": ...`` (invalid JSON) right after
    the role chunk; the stream then continues normally.
``no_usage=1``
    Stream: omit the usage chunk even when ``stream_options.include_usage``.
``reasoning=N``
    Report N reasoning tokens: included in ``completion_tokens`` and in
    ``completion_tokens_details.reasoning_tokens``; visible content unchanged.
    Reasoning counts against the token cap first (cap C: reasoning ``min(N, C)``,
    visible text at most ``C - that``).
``cached=N``
    ``prompt_tokens_details.cached_tokens = min(N, prompt_tokens)``.
``cache_write=N``
    ``prompt_tokens_details.cache_write_tokens = min(N, prompt_tokens - cached)``
    (the field is present only when this directive is given).

Embeddings honour ``status``, ``retry_after``, ``latency_ms`` and ``malformed``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, fields

from nemorouter.sim.content import inband_directives, parse_pairs

_MAX_DELAY_MS = 600_000


@dataclass(frozen=True)
class Faults:
    """The directives of one request, validated; the defaults mean "behave"."""

    status: int | None = None
    retry_after: int | None = None
    latency_ms: int = 0
    chunk_delay_ms: int = 0
    tokens: int | None = None
    cut_after: int | None = None
    error_after: int | None = None
    malformed: bool = False
    no_usage: bool = False
    reasoning: int = 0
    cached: int = 0
    cache_write: int | None = None

    @classmethod
    def from_directives(cls, directives: dict[str, str]) -> Faults:
        values: dict[str, int] = {}
        for f in fields(cls):
            raw = directives.get(f.name)
            if raw is None:
                continue
            try:
                number = int(raw)
            except ValueError:
                continue
            if number >= 0:
                values[f.name] = number
        status = values.get("status")
        return cls(
            status=status if status is not None and 400 <= status <= 599 else None,
            retry_after=values.get("retry_after"),
            latency_ms=min(values.get("latency_ms", 0), _MAX_DELAY_MS),
            chunk_delay_ms=min(values.get("chunk_delay_ms", 0), _MAX_DELAY_MS),
            tokens=values.get("tokens"),
            cut_after=values.get("cut_after"),
            error_after=values.get("error_after"),
            malformed=values.get("malformed", 0) > 0,
            no_usage=values.get("no_usage", 0) > 0,
            reasoning=values.get("reasoning", 0),
            cached=values.get("cached", 0),
            cache_write=values.get("cache_write"),
        )


def collect_faults(header: str | None, inband_texts: list[str]) -> Faults:
    """Merge in-band blocks, then the ``x-sim`` header on top."""
    directives = inband_directives(inband_texts)
    if header:
        directives.update(parse_pairs(header))
    return Faults.from_directives(directives) if directives else NO_FAULTS


NO_FAULTS = Faults()


async def sleep_ms(ms: int) -> None:
    if ms > 0:
        await asyncio.sleep(ms / 1000)
