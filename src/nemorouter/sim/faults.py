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

``bad_key=1``
    Answer as the provider answers a key it does not know (OpenAI and Anthropic: 401; Gemini:
    400 ``INVALID_ARGUMENT`` with reason ``API_KEY_INVALID``), whatever key was sent: the
    evidence that the operator's key itself is bad.

A misbehaving provider's usage report (every wire format, stream and not; applied to every
usage the response carries, running totals and Anthropic's ``message_start`` included; the
content generated is unchanged and still obeys the output limit sent):

``usage_scale=K``
    Report K times the output tokens generated (``usage_scale=10``: ten times over the limit).
``report_output=N`` / ``report_prompt=N``
    Report exactly N output / prompt tokens whatever was generated or sent. N is any integer:
    negative, or far beyond 64 bits (``report_output=1000000000000000000000000000000``).
``bad_usage=negative|float|string|huge`` / ``bad_prompt=...``
    Spoil the output / prompt count after the above: ``negative`` its negation (``-1`` for 0),
    ``float`` plus one half (``10.5``), ``string`` the number as a JSON string (``"10"``),
    ``huge`` plus ``2**64`` (above every 64-bit integer). A total that cannot be summed
    (a string) stays the honest total.

Which tool a chat answer calls (every wire format; applies only where the sim would call a tool,
i.e. tools are offered and the last turn is not a tool result):

``tool=none``
    Answer with text instead of calling a tool.
``tool=NAME``
    Call the offered tool NAME (case kept) instead of the first one; an unknown NAME changes nothing.

A misbehaving provider's stream (OpenAI format):

``bad_chunk=SHAPE``
    One extra chunk, valid JSON but malformed in one field (``choices`` a string, ``delta`` null,
    a tool call without ``function``, usage of the wrong types, ...: sim/bad_chunks.py names
    them), after the first content chunk; the stream then continues normally.

Embeddings honour ``status``, ``retry_after``, ``latency_ms``, ``malformed`` and ``bad_key``.

The token-count endpoints (Anthropic ``count_tokens``, Gemini ``countTokens``; sim/counting.py)
honour only their own two, so one prompt can be counted badly and then answered well:

``count_status=CODE``
    Answer the count with HTTP ``CODE`` (400..599) in the provider's error shape
    (``retry_after`` applies).
``count_latency_ms=N``
    Sleep N ms before answering the count.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, fields
from typing import Any

import orjson

from nemorouter.sim.bad_chunks import BAD_CHUNKS
from nemorouter.sim.content import inband_directives, parse_pairs

_MAX_DELAY_MS = 600_000
SPOILERS = frozenset({"negative", "float", "string", "huge"})
HUGE_COUNT = 2**64
_SIGNED = frozenset({"report_output", "report_prompt"})  # directives that may be negative
_WORDS = frozenset({"bad_usage", "bad_prompt"})  # directives whose value is a word


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
    bad_key: bool = False
    usage_scale: int = 1
    report_output: int | None = None
    report_prompt: int | None = None
    bad_usage: str | None = None
    bad_prompt: str | None = None
    tool: str | None = None
    count_status: int | None = None
    count_latency_ms: int = 0
    bad_chunk: str | None = None

    @classmethod
    def from_directives(cls, directives: dict[str, str]) -> Faults:
        values: dict[str, int] = {}
        for f in fields(cls):
            raw = directives.get(f.name)
            if raw is None or f.name in _WORDS or f.name in ("tool", "bad_chunk"):
                continue
            try:
                number = int(raw)  # Python refuses past 4300 digits: ignored like any non-integer
            except ValueError:
                continue
            if number >= 0 or f.name in _SIGNED:
                values[f.name] = number
        words = {name: directives.get(name, "").lower() for name in _WORDS}
        bad_chunk = directives.get("bad_chunk", "").lower()
        status, count_status = values.get("status"), values.get("count_status")
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
            bad_key=values.get("bad_key", 0) > 0,
            usage_scale=values.get("usage_scale", 1),
            report_output=values.get("report_output"),
            report_prompt=values.get("report_prompt"),
            bad_usage=words["bad_usage"] if words["bad_usage"] in SPOILERS else None,
            bad_prompt=words["bad_prompt"] if words["bad_prompt"] in SPOILERS else None,
            tool=directives.get("tool") or None,
            count_status=count_status if count_status is not None and 400 <= count_status <= 599 else None,
            count_latency_ms=min(values.get("count_latency_ms", 0), _MAX_DELAY_MS),
            bad_chunk=bad_chunk if bad_chunk in BAD_CHUNKS else None,
        )

    def output_count(self, generated: int) -> Any:
        """The output count this provider reports for ``generated`` tokens (see the module doc)."""
        value = self.report_output if self.report_output is not None else generated * self.usage_scale
        return spoil(value, self.bad_usage)

    def prompt_count(self, sent: int) -> Any:
        """The prompt count this provider reports for ``sent`` tokens."""
        return spoil(self.report_prompt if self.report_prompt is not None else sent, self.bad_prompt)


def spoil(value: int, how: str | None) -> Any:
    """An impossible count made from ``value``: what a broken usage report looks like."""
    if how == "negative":
        return -abs(value) or -1
    if how == "float":
        return value + 0.5
    if how == "string":
        return str(value)
    if how == "huge":
        return value + HUGE_COUNT
    return value


def total_count(parts: list[Any], honest: int) -> Any:
    """The sum of reported counts, or the honest total when one of them cannot be added (a string)."""
    if all(isinstance(p, int | float) for p in parts):
        return sum(parts)
    return honest


def dumps(payload: Any) -> bytes:
    """orjson, falling back to ``json`` for integers past 64 bits (a lying usage report)."""
    try:
        return orjson.dumps(payload)
    except orjson.JSONEncodeError:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


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
