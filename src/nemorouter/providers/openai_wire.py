"""The OpenAI wire format (kinds `openai` and `openai-compatible`): pure translation.

Requests pass through with every field the client sent, minus the gateway's own routing
fields and the client's output-limit fields, replaced by the request's one limit in the field
the vendor obeys (`providers.output_limit`); streams always ask upstream for usage
(`stream_options.include_usage`, OpenAI's only way to get usage on a stream).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from nemorouter.money import Usage
from nemorouter.providers.canonical import ANTHROPIC_PASSTHROUGH, RESPONSES_PASSTHROUGH, RESPONSES_REASONING
from nemorouter.providers.counts import count, lenient
from nemorouter.providers.output_limit import OUTPUT_LIMIT_FIELDS, output_limit
from nemorouter.providers.types import (
    Completion,
    Failure,
    FailureKind,
    SseEvent,
    StreamStep,
    Upstream,
    UpstreamRequest,
)
from nemorouter.providers.vendors import apply_quirks, limit_field

# Fields that steer NemoRouter (OpenRouter's conventions); never sent upstream.
GATEWAY_FIELDS = frozenset(
    {
        "models",
        "provider",
        "route",
        "transforms",
        "usage",
        "plugins",
        ANTHROPIC_PASSTHROUGH,
        RESPONSES_PASSTHROUGH,
    }
)


def _url(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + path


def _headers(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}


# Fields other formats round-trip through the OpenAI shape (Anthropic thinking blocks and cache
# breakpoints, Responses reasoning items): meaningful to those providers, refused by OpenAI's
# strict message schema.
_FOREIGN_MESSAGE_FIELDS = frozenset({"thinking_blocks", RESPONSES_REASONING})


def _has_cache_control(message: Any) -> bool:
    content = message.get("content") if isinstance(message, dict) else None
    return isinstance(content, list) and any(isinstance(p, dict) and "cache_control" in p for p in content)


def _openai_message(message: Any) -> Any:
    if not isinstance(message, dict):
        return message
    clean = {k: v for k, v in message.items() if k not in _FOREIGN_MESSAGE_FIELDS}
    content = clean.get("content")
    if isinstance(content, list):
        clean["content"] = [
            {k: v for k, v in p.items() if k != "cache_control"} if isinstance(p, dict) else p
            for p in content
        ]
    return clean


def chat_request(body: dict[str, Any], upstream: Upstream) -> UpstreamRequest:
    out = {k: v for k, v in body.items() if k not in GATEWAY_FIELDS and k not in OUTPUT_LIMIT_FIELDS}
    out["model"] = upstream.model
    vendor = upstream.config.get("vendor")
    # The request's one limit (the hold's), in the one field this vendor obeys; always sent.
    out[limit_field(vendor)] = output_limit(body, upstream.max_output)
    out = apply_quirks(out, vendor)
    if any(
        (isinstance(m, dict) and not _FOREIGN_MESSAGE_FIELDS.isdisjoint(m)) or _has_cache_control(m)
        for m in out.get("messages") or ()
    ):
        out["messages"] = [_openai_message(m) for m in out["messages"]]
    stream = bool(out.get("stream"))
    if stream:
        options = out.get("stream_options")
        out["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    url = _url(upstream.base_url, "/chat/completions")
    return UpstreamRequest(url, _headers(upstream.secret), orjson.dumps(out), stream)


def embeddings_request(body: dict[str, Any], upstream: Upstream) -> UpstreamRequest:
    out = {k: v for k, v in body.items() if k not in GATEWAY_FIELDS}
    out["model"] = upstream.model
    return UpstreamRequest(
        _url(upstream.base_url, "/embeddings"), _headers(upstream.secret), orjson.dumps(out)
    )


@lenient
def parse_usage(raw: dict[str, Any]) -> Usage:
    """OpenAI-style usage -> normalized Usage (OpenAI's conventions: cached and reasoning tokens
    are parts of prompt and completion tokens). Two vendor conventions are recognised from the
    usage itself, so vendors stay data rows:

    - DeepSeek reports `prompt_cache_hit_tokens` (+ `_miss_`) instead of `cached_tokens`.
    - xAI counts `reasoning_tokens` outside `completion_tokens`; its `total_tokens` is then
      prompt + completion + reasoning (LiteLLM's check), and reasoning is added to completion.
    """
    prompt = count(raw.get("prompt_tokens"))
    completion = count(raw.get("completion_tokens"))
    pdet = raw.get("prompt_tokens_details") or {}
    cdet = raw.get("completion_tokens_details") or {}
    outside = count(cdet.get("reasoning_tokens"))
    if outside and count(raw.get("total_tokens")) == prompt + completion + outside:
        completion += outside
    hits = pdet.get("cached_tokens") if "cached_tokens" in pdet else raw.get("prompt_cache_hit_tokens")
    cached = min(count(hits), prompt)
    writes = min(count(pdet.get("cache_write_tokens")), prompt - cached)
    reasoning = min(count(cdet.get("reasoning_tokens")), completion)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        cache_write_tokens=writes,
        reasoning_tokens=reasoning,
    )


def chat_response(data: Any) -> Completion:
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise ValueError("upstream answered 200 without a chat completion")
    raw = data.get("usage")
    usage = parse_usage(raw) if isinstance(raw, dict) else None
    choices = data["choices"]
    finish = choices[0].get("finish_reason") if choices and isinstance(choices[0], dict) else None
    return Completion(
        body=data, usage=usage, finish_reason=finish, raw_usage=raw if isinstance(raw, dict) else None
    )


def embeddings_response(data: Any) -> Completion:
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError("upstream answered 200 without embeddings")
    raw = data.get("usage")
    usage = _embeddings_usage(raw) if isinstance(raw, dict) else None
    return Completion(
        body=data, usage=usage, finish_reason=None, raw_usage=raw if isinstance(raw, dict) else None
    )


def moderations_request(body: dict[str, Any], upstream: Upstream) -> UpstreamRequest:
    out = {k: v for k, v in body.items() if k not in GATEWAY_FIELDS}
    out["model"] = upstream.model
    return UpstreamRequest(
        _url(upstream.base_url, "/moderations"), _headers(upstream.secret), orjson.dumps(out)
    )


def moderations_response(data: Any) -> Completion:
    """OpenAI's moderation answer carries no usage (its moderation models are free): the
    gateway records the prompt it counted, at the model's price (service/settlement.py)."""
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ValueError("upstream answered 200 without moderation results")
    raw = data.get("usage")
    usage = _embeddings_usage(raw) if isinstance(raw, dict) else None
    return Completion(
        body=data, usage=usage, finish_reason=None, raw_usage=raw if isinstance(raw, dict) else None
    )


@lenient
def _embeddings_usage(raw: dict[str, Any]) -> Usage:
    return Usage(prompt_tokens=count(raw.get("prompt_tokens")) or count(raw.get("total_tokens")))


def stream_decoder() -> Callable[[SseEvent], StreamStep]:
    """OpenAI's stream needs no state between events."""
    return stream_event


def stream_event(event: SseEvent) -> StreamStep:
    """One SSE event -> what to forward and what it tells about usage."""
    data = event.data
    step = StreamStep()
    if data.strip() == b"[DONE]":
        step.done = True
        return step
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        step.error = Failure(
            FailureKind.PROTOCOL, 502, "upstream sent a malformed stream event", retryable=True
        )
        return step
    if not isinstance(chunk, dict):
        step.error = Failure(
            FailureKind.PROTOCOL, 502, "upstream sent a malformed stream event", retryable=True
        )
        return step
    if "error" in chunk:
        step.error = error_from_body(500, chunk)
        return step
    raw = chunk.get("usage")
    if isinstance(raw, dict):
        step.usage = parse_usage(raw)
        step.raw_usage = raw
    choices = chunk.get("choices")
    if choices is not None and not isinstance(choices, list):
        # A provider's chunk is untrusted: `choices` that is not a list says nothing we can
        # read, and is not passed on (a client's SDK would choke on it); its usage still counts.
        return step
    if choices:
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict) and (
                delta.get("content") or delta.get("tool_calls") or delta.get("refusal")
            ):
                step.output_tokens_seen += 1
            if isinstance(choice.get("finish_reason"), str) and choice["finish_reason"]:
                step.finish_reason = choice["finish_reason"]
        step.chunks.append(chunk)
    elif not isinstance(raw, dict):
        step.chunks.append(chunk)
    return step


def usage_to_openai(usage: Usage) -> dict[str, Any]:
    """Normalized usage in the contract's OpenAI shape (without cost)."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def _message(body: Any) -> str:
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])[:500]
        if isinstance(err, str):
            return err[:500]
        if isinstance(body.get("message"), str):
            return str(body["message"])[:500]
    return "upstream error"


def error_from_body(status: int, body: Any, retry_after: int | None = None) -> Failure:
    """Classify an upstream error (status + parsed body) by OpenAI's status conventions."""
    message = _message(body)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        if isinstance(code, int) and status == 500 and 400 <= code < 600:
            status = code
    if status == 429:
        return Failure(FailureKind.RATE_LIMITED, status, message, retryable=True, retry_after=retry_after)
    if status == 401:
        # OpenAI's AuthenticationError (`invalid_api_key`): the key itself is bad.
        return Failure(FailureKind.AUTH, status, message, retryable=True)
    if status == 403:
        # PermissionDeniedError: this request may not do this (a file, a model, a policy, a
        # region). The request's failure, not the key's; another key would be refused alike.
        return Failure(FailureKind.FORBIDDEN, status, message, retryable=False)
    if status == 529:
        return Failure(FailureKind.OVERLOADED, status, message, retryable=True, retry_after=retry_after)
    if status == 408 or status >= 500:
        return Failure(FailureKind.SERVER, status, message, retryable=True, retry_after=retry_after)
    return Failure(FailureKind.INVALID, status, message, retryable=False)


def error_from_response(status: int, body: bytes, retry_after: int | None) -> Failure:
    try:
        parsed: Any = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        parsed = None
    return error_from_body(status, parsed, retry_after)
