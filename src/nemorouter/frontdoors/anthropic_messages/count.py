"""`POST /v1/messages/count_tokens`: a Messages prompt's input tokens, free of charge.

The count comes from the first upstream that can count (Anthropic's count_tokens, Gemini's
countTokens: exact, as the provider will bill it), else from the model family's offline
tokenizer, else the hold's prompt bound (never less than the prompt). The header
`x-nemo-token-count` says which: `upstream`, `tokenizer` or `bound`.

Free means no hold and no charge; the request still passes authentication and counts against
the key's requests per minute like any other (tokens per minute: none are generated).
"""

from __future__ import annotations

from typing import Any

from nemorouter import jsonx
from nemorouter.engine.http import TransportFailure
from nemorouter.errors import InvalidRequest
from nemorouter.frontdoors.anthropic_messages.request import MalformedRequest, chat_body
from nemorouter.frontdoors.anthropic_messages.serve import (
    IGNORED_HEADER,
    anthropic_error_body,
    ignored_header,
)
from nemorouter.frontdoors.door import FrontDoor
from nemorouter.frontdoors.json_body import json_object
from nemorouter.providers.bounds import chat_input_bound
from nemorouter.providers.token_count import count_request, read_count
from nemorouter.providers.tokenizers import count_chat_prompt
from nemorouter.providers.types import UnsupportedContent
from nemorouter.service.bodies import prompt_rules_of
from nemorouter.service.gateway import Gateway, JsonReply
from nemorouter.service.routing import Target
from nemorouter.store.records import ApiKey

__all__ = ["COUNT_TOKENS", "count_tokens"]

SOURCE_HEADER = "x-nemo-token-count"
UPSTREAM_TRIES = 2  # counting is a courtesy: a second provider at most, then count here


def _body(raw: bytes, ignored: list[str]) -> dict[str, Any]:
    request = json_object(raw)
    if isinstance(request, dict) and request.get("max_tokens") is None:
        request = {**request, "max_tokens": 1}  # count_tokens has none; chat_body wants one
    try:
        body = chat_body(request, ignored)
    except (MalformedRequest, UnsupportedContent) as exc:
        raise InvalidRequest(str(exc)) from None
    body.pop("stream", None)
    return body


async def _from_upstream(gateway: Gateway, targets: list[Target], body: dict[str, Any]) -> int | None:
    for target in targets[:UPSTREAM_TRIES]:
        try:
            request = count_request(target.provider.kind, body, target.upstream())
        except (UnsupportedContent, ValueError):
            continue
        if request is None:
            continue
        try:
            answer = await gateway.dispatcher.client.send(request, target.timeouts)
        except TransportFailure:
            continue
        if answer.status == 200:
            counted = read_count(target.provider.kind, answer.body)
            if counted is not None:
                return counted
    return None


async def count_tokens(gateway: Gateway, key: ApiKey, raw: bytes) -> JsonReply:
    """Answer `{"input_tokens": n}` for a Messages body (`max_tokens` optional)."""
    ignored: list[str] = []
    body = _body(raw, ignored)
    admission = gateway.admission
    routes = await admission.resolve(key, [body["model"]], "chat")
    targets = [attempt.origin for attempt in admission.candidates(routes, None)]
    ticket = await admission.pass_limits(key, 0)
    try:
        source, counted = "upstream", await _from_upstream(gateway, targets, body)
        if counted is None:
            bound = chat_input_bound(body, prompt_rules_of(targets))
            names = [body["model"], *(t.deployment.upstream_model for t in targets)]
            source, counted = "tokenizer", count_chat_prompt(body, names, bound)
            if counted is None:
                source, counted = "bound", bound
    finally:
        gateway.limiter.finish(ticket, 0)
    reply_headers = {SOURCE_HEADER: source}
    if ignored:
        reply_headers[IGNORED_HEADER] = ignored_header(ignored)
    return JsonReply(jsonx.dumps({"input_tokens": counted}), reply_headers)


COUNT_TOKENS = FrontDoor(
    "/v1/messages/count_tokens", count_tokens, anthropic_error_body, key_header=b"x-api-key"
)
