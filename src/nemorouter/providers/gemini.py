"""The Gemini API adapter (kind `gemini`, generativelanguage REST API pinned to `v1beta`).

`base_url` is the official SDK's, `https://generativelanguage.googleapis.com`. The key travels in
the `x-goog-api-key` header, never as `?key=`: URLs end up in logs. Request mapping lives in
`gemini_request`, response and stream mapping in `gemini_response`; errors are classified here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import orjson

from nemorouter.providers.adapter import Adapter
from nemorouter.providers.gemini_request import gemini_body
from nemorouter.providers.gemini_response import StreamDecoder, chat_response
from nemorouter.providers.types import Failure, FailureKind, SseEvent, StreamStep, Upstream, UpstreamRequest

API_VERSION = "v1beta"
_RETRY_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")
# ErrorInfo reasons (google/api/error_reason.proto) that say the API key itself cannot be used:
# invalid or deleted, or restricted (by API, caller IP or referrer) so that no request passes.
_KEY_REASONS = frozenset(
    {
        "API_KEY_INVALID",
        "API_KEY_SERVICE_BLOCKED",
        "API_KEY_IP_ADDRESS_BLOCKED",
        "API_KEY_HTTP_REFERRER_BLOCKED",
    }
)
_SERVER_STATUSES = frozenset({"INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED", "UNKNOWN"})


def chat_url(upstream: Upstream, stream: bool) -> str:
    model = upstream.model if "/" in upstream.model else f"models/{upstream.model}"
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"{upstream.base_url.rstrip('/')}/{API_VERSION}/{quote(model, safe='/')}:{action}"


def chat_request(body: dict[str, Any], upstream: Upstream) -> UpstreamRequest:
    stream = bool(body.get("stream"))
    headers = {"x-goog-api-key": upstream.secret, "Content-Type": "application/json"}
    return UpstreamRequest(
        chat_url(upstream, stream), headers, orjson.dumps(gemini_body(body, upstream.max_output)), stream
    )


def _details(error: dict[str, Any]) -> tuple[set[str], int | None]:
    """The ErrorInfo reasons and the RetryInfo delay (whole seconds, rounded up) of a Google error."""
    reasons: set[str] = set()
    delay = None
    for detail in error.get("details") or []:
        if not isinstance(detail, dict):
            continue
        if isinstance(detail.get("reason"), str):
            reasons.add(detail["reason"])
        found = _RETRY_DELAY.match(str(detail.get("retryDelay") or ""))
        if found:
            delay = math.ceil(float(found.group(1)))
    return reasons, delay


def error_from_body(status: int, body: Any, retry_after: int | None = None) -> Failure:
    """Classify a Google RPC error `{"error": {code, message, status, details}}`."""
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    message = str(error.get("message") or "upstream error")[:500]
    rpc = error.get("status")
    reasons, delay = _details(error)
    # Google answers an invalid key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID, not 401;
    # only that (or 401 UNAUTHENTICATED) is evidence against the key.
    if reasons & _KEY_REASONS or rpc == "UNAUTHENTICATED" or status == 401:
        return Failure(FailureKind.AUTH, status, message, retryable=True)
    # PERMISSION_DENIED (403) is this request's: a file or cached content it may not read. And
    # FAILED_PRECONDITION (400) is a refusal of where or how it is asked (free tier not offered in
    # the caller's region, billing off): neither blames the key nor lifts on another try.
    if rpc in ("PERMISSION_DENIED", "FAILED_PRECONDITION") or status == 403:
        return Failure(FailureKind.FORBIDDEN, status, message, retryable=False)
    if status == 429 or rpc == "RESOURCE_EXHAUSTED":
        return Failure(
            FailureKind.RATE_LIMITED, 429, message, retryable=True, retry_after=delay or retry_after
        )
    if status >= 500 or status == 408 or rpc in _SERVER_STATUSES:
        return Failure(FailureKind.SERVER, status, message, retryable=True, retry_after=delay or retry_after)
    return Failure(FailureKind.INVALID, status, message, retryable=False)


def error_from_response(status: int, body: bytes, retry_after: int | None) -> Failure:
    try:
        parsed: Any = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        parsed = None
    return error_from_body(status, parsed, retry_after)


def stream_decoder() -> Callable[[SseEvent], StreamStep]:
    return StreamDecoder(error_from_body)


ADAPTER = Adapter(
    chat_request=chat_request,
    chat_response=chat_response,
    stream_decoder=stream_decoder,
    error_from_response=error_from_response,
)
