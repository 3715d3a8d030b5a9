"""`POST /v1/messages/count_tokens`: a Messages prompt's input tokens, free of charge.

The count comes from the first upstream that can count (Anthropic's count_tokens, Gemini's
countTokens: exact, as the provider will bill it), else from the model family's offline
tokenizer, else the hold's prompt bound (never less than the prompt). The header
`x-nemo-token-count` says which: `upstream`, `tokenizer` or `bound`.

Free means no hold and no charge; the request still passes authentication and counts against
the key's requests per minute like any other (tokens per minute: none are generated). Counting
upstream spends the operator's quota at the provider, so it is a courtesy with limits: one
upstream call per request at most (no second provider, no retry), within `COUNT_TIMEOUTS`, and
at most NEMO_COUNT_TOKENS_UPSTREAM_PER_MINUTE per key (`Gateway.count_budget`). Whatever goes
wrong upstream (429, 5xx, a timeout, an answer without a count) or past the budget, the count is
made here instead: counting never fails because a provider would not count.
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
from nemorouter.settings import Timeouts
from nemorouter.store.records import ApiKey

__all__ = ["COUNT_TOKENS", "count_tokens"]

SOURCE_HEADER = "x-nemo-token-count"
# An upstream count that takes longer is abandoned and counted here (the client is waiting).
COUNT_TIMEOUTS = Timeouts(connect=5.0, first_byte=10.0, idle=10.0, total=10.0)


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


async def _from_upstream(
    gateway: Gateway, key: ApiKey, targets: list[Target], body: dict[str, Any]
) -> int | None:
    """The count of the first candidate that has a count endpoint, or None (counted here then)."""
    for target in targets:
        try:
            request = count_request(target.provider.kind, body, target.upstream())
        except (UnsupportedContent, ValueError):
            continue
        if request is None:
            continue
        if not gateway.count_budget.take(key.id):
            return None
        try:
            answer = await gateway.dispatcher.client.send(request, _count_timeouts(target.timeouts))
        except TransportFailure:
            return None
        return read_count(target.provider.kind, answer.body) if answer.status == 200 else None
    return None


def _count_timeouts(own: Timeouts | None) -> Timeouts:
    """The deployment's timeouts, none above `COUNT_TIMEOUTS`: a slow count is counted here."""
    base = own or COUNT_TIMEOUTS
    return Timeouts(
        connect=min(base.connect, COUNT_TIMEOUTS.connect),
        first_byte=min(base.first_byte, COUNT_TIMEOUTS.first_byte),
        idle=min(base.idle, COUNT_TIMEOUTS.idle),
        total=min(base.total, COUNT_TIMEOUTS.total),
    )


async def count_tokens(gateway: Gateway, key: ApiKey, raw: bytes) -> JsonReply:
    """Answer `{"input_tokens": n}` for a Messages body (`max_tokens` optional)."""
    ignored: list[str] = []
    body = _body(raw, ignored)
    admission = gateway.admission
    routes = await admission.resolve(key, [body["model"]], "chat")
    targets = [attempt.origin for attempt in admission.candidates(routes, None)]
    ticket = await admission.pass_limits(key, 0)
    try:
        source, counted = "upstream", await _from_upstream(gateway, key, targets, body)
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
