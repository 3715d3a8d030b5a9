"""The front door `POST /v1/messages`: Anthropic's Messages API around the canonical chat request.

Routing, holds, billing and settlement stay in the one gateway flow, so every model in the
catalog answers here whatever its upstream's wire format; this door only translates the request
in (`request`) and the answer (`reply`) or the stream (`stream`) out, and shapes its errors as
Anthropic's.
"""

from __future__ import annotations

import re
from typing import Any

from nemorouter import jsonx
from nemorouter.errors import InvalidRequest, NemoError
from nemorouter.frontdoors.anthropic_messages.reply import message_from_completion
from nemorouter.frontdoors.anthropic_messages.request import MalformedRequest, chat_body
from nemorouter.frontdoors.anthropic_messages.stream import MessagesStream
from nemorouter.frontdoors.door import FrontDoor
from nemorouter.frontdoors.event_stream import converted_events
from nemorouter.frontdoors.json_body import json_object
from nemorouter.providers.anthropic_passthrough import allowed_beta
from nemorouter.providers.canonical import ANTHROPIC_PASSTHROUGH, ChatRequest
from nemorouter.providers.types import UnsupportedContent
from nemorouter.service.gateway import Gateway, JsonReply, StreamReply
from nemorouter.store.records import ApiKey

BETA = b"anthropic-beta"
BETA_PREFIX = "anthropic-beta:"  # how a dropped beta is named in x-nemo-ignored-fields
IGNORED_HEADER = "x-nemo-ignored-fields"
MAX_NAMED = 20
_PLAIN = re.compile(r"(?:anthropic-beta:)?[A-Za-z0-9_.-]{1,64}")

__all__ = ["ANTHROPIC_ERROR_TYPES", "MESSAGES", "anthropic_error_body", "chat_request", "messages"]

# Our HTTP status -> Anthropic's error.type (docs.claude.com/en/api/errors). Anthropic has no
# 502/503: an upstream failure is its api_error, no capacity its overloaded_error.
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}


def anthropic_error_body(error: NemoError) -> dict[str, Any]:
    """Anthropic's error shape, readable by our contract's clients too: `code` is the status,
    `nemo_type` our stable type, and extras (`needed`, `available`, `max_tokens_affordable`) stay."""
    status = error.status
    kind = ANTHROPIC_ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    detail = {**error.extra, "type": kind, "message": error.message, "code": status, "nemo_type": error.type}
    return {"type": "error", "error": detail}


def ignored_header(names: list[str]) -> str:
    """`x-nemo-ignored-fields`: the left-out field names that are plain tokens (a client's key
    may hold anything, and a header value may not), at most 20, `...` when any is not shown."""
    shown = [n for n in names if _PLAIN.fullmatch(n)][:MAX_NAMED]
    return ",".join(shown + ["..."] * (len(shown) < len(names)))


def chat_request(raw: bytes, ignored: list[str] | None = None, betas: bytes | None = None) -> ChatRequest:
    """A Messages body as the canonical chat request (400 for what is malformed or cannot be
    carried). `chat_body` has checked what the gateway reads: one model, `max_tokens` (the
    output limit), `stream`; Messages has no `n` and no provider preferences. Unknown fields
    are named in `ignored`; `betas` is the `anthropic-beta` header, for Anthropic upstreams (those
    not known to be price-neutral are named in `ignored` as `anthropic-beta:NAME` instead)."""
    try:
        body = chat_body(json_object(raw), ignored)
    except (MalformedRequest, UnsupportedContent) as exc:
        raise InvalidRequest(str(exc)) from None
    if betas:
        names = list(dict.fromkeys(b.strip() for b in betas.decode("latin-1").split(",") if b.strip()))
        kept = [name for name in names if allowed_beta(name)]
        if kept:
            body.setdefault(ANTHROPIC_PASSTHROUGH, {})["betas"] = kept
        if ignored is not None:
            # A beta that may change what Anthropic bills is left out, never refused: the client
            # (Claude Code sends several) keeps working without it (providers/anthropic_passthrough).
            ignored += [f"{BETA_PREFIX}{name}" for name in names if name not in kept]
    stops = body.get("stop") or []
    return ChatRequest(
        body,
        [body["model"]],
        stream=body.get("stream") is True,
        max_output=body["max_tokens"],
        stop=tuple(stops),
    )


async def messages(
    gateway: Gateway, key: ApiKey, raw: bytes, headers: dict[bytes, bytes] | None = None
) -> JsonReply | StreamReply:
    """Answer a Messages request: JSON, or a stream of Anthropic events. Fields left out are
    named in `x-nemo-ignored-fields`."""
    ignored: list[str] = []
    request = chat_request(raw, ignored, headers.get(BETA) if headers else None)
    reply = await gateway.chat(key, request)
    if ignored:
        reply.headers[IGNORED_HEADER] = ignored_header(ignored)
    if isinstance(reply, JsonReply):
        message = message_from_completion(jsonx.loads_exact(reply.body), request.stop)
        return JsonReply(jsonx.dumps(message), reply.headers, reply.status)
    request_id = reply.headers.get("x-nemo-request-id", "")
    converter = MessagesStream(request_id, request.body["model"], request.stop)
    return StreamReply(reply.headers, converted_events(reply.chunks, converter))


MESSAGES = FrontDoor(
    "/v1/messages",
    messages,
    anthropic_error_body,
    key_header=b"x-api-key",
    reads=frozenset({BETA}),
    serve_with_headers=messages,
)
