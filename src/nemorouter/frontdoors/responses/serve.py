"""The front door `POST /v1/responses`: OpenAI's Responses API around the canonical chat request.

Routing, holds, limits, failover and settlement stay in the one gateway flow, so every model in
the catalog answers here whatever its upstream's wire format; this door translates the request in
(`request`), the answer (`reply`) or the stream (`stream`) out. Errors keep the contract's
(OpenAI's) shape. What the door left out of the request is named in `x-nemo-omitted`.
"""

from __future__ import annotations

import re
import time

from nemorouter import jsonx
from nemorouter.frontdoors.door import FrontDoor
from nemorouter.frontdoors.event_stream import converted_events
from nemorouter.frontdoors.json_body import json_object
from nemorouter.frontdoors.responses.reply import response_from_completion
from nemorouter.frontdoors.responses.request import ResponsesRequest, translate
from nemorouter.frontdoors.responses.stream import ResponsesStream
from nemorouter.providers.canonical import ChatRequest
from nemorouter.providers.output_limit import requested_limit
from nemorouter.service.gateway import Gateway, JsonReply, StreamReply
from nemorouter.store.records import ApiKey

__all__ = ["OMITTED_HEADER", "RESPONSES", "chat_request", "omitted_header", "responses"]

OMITTED_HEADER = "x-nemo-omitted"
# A name the client chose (a field, a custom tool) goes into a header only when it is a plain
# identifier: anything else (CR/LF, non-ASCII) could split or break the header.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,80}")
_MAX_NAMES = 32


def omitted_header(names: list[str]) -> str:
    """The header's value: the left-out names, comma-separated; a name that is not a plain
    identifier appears as `?`."""
    shown = [n if _PLAIN_NAME.fullmatch(n) else "?" for n in names[:_MAX_NAMES]]
    if len(names) > _MAX_NAMES:
        shown.append("...")
    return ", ".join(dict.fromkeys(shown))


def chat_request(raw: bytes) -> tuple[ResponsesRequest, ChatRequest]:
    """A Responses body as the canonical chat request (400 for what is malformed or needs state)."""
    request = translate(json_object(raw))
    body = request.chat
    canonical = ChatRequest(
        body, [body["model"]], stream=body.get("stream") is True, max_output=requested_limit(body)
    )
    return request, canonical


async def responses(gateway: Gateway, key: ApiKey, raw: bytes) -> JsonReply | StreamReply:
    """Answer a Responses request: a Response as JSON, or the Responses event stream."""
    request, canonical = chat_request(raw)
    reply = await gateway.chat(key, canonical)
    headers = dict(reply.headers)
    if request.omitted:
        headers[OMITTED_HEADER] = omitted_header(request.omitted)
    request_id = headers.get("x-nemo-request-id", "")
    if isinstance(reply, JsonReply):
        response = response_from_completion(jsonx.loads_exact(reply.body), request, request_id)
        return JsonReply(jsonx.dumps(response), headers, reply.status)
    converter = ResponsesStream(request, request_id, int(time.time()))
    return StreamReply(headers, converted_events(reply.chunks, converter))


RESPONSES = FrontDoor("/v1/responses", responses)
