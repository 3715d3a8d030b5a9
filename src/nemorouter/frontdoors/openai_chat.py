"""The front door of OpenAI's Chat Completions and Embeddings: a body -> the canonical request.

Clear 400s for what the gateway must understand (model ids, messages, stream, output limits,
`n`, tools, OpenRouter's `provider` preferences, embeddings `input`); every other field passes
through untouched for the provider to judge. The canonical answer is already this format (our
OpenAI JSON or SSE stream), so it goes back as it is.
"""

from __future__ import annotations

from typing import Any

from nemorouter.errors import InvalidRequest
from nemorouter.frontdoors.door import FrontDoor
from nemorouter.frontdoors.json_body import json_object
from nemorouter.frontdoors.service_tier import check_service_tier
from nemorouter.money import parse_per_million
from nemorouter.money.amounts import MoneyFormatError
from nemorouter.providers.canonical import ChatRequest, EmbeddingsRequest, ProviderPrefs
from nemorouter.providers.output_limit import OUTPUT_LIMIT_FIELDS, requested_limit
from nemorouter.service.gateway import Gateway, JsonReply, StreamReply
from nemorouter.store.records import ApiKey

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def _positive_int(body: dict[str, Any], name: str, maximum: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidRequest(f"`{name}` must be a positive integer")
    if maximum is not None and value > maximum:
        raise InvalidRequest(f"`{name}` must be at most {maximum}")
    return value


def model_ids(body: dict[str, Any]) -> list[str]:
    model = body.get("model")
    fallbacks = body.get("models")
    if fallbacks is not None and (
        not isinstance(fallbacks, list) or not all(isinstance(m, str) and m for m in fallbacks)
    ):
        raise InvalidRequest("`models` must be a list of model ids")
    if model is None and not fallbacks:
        raise InvalidRequest("`model` is required")
    if model is not None and (not isinstance(model, str) or not model):
        raise InvalidRequest("`model` must be a non-empty string")
    ids = ([model] if model else []) + [m for m in fallbacks or [] if m != model]
    return list(dict.fromkeys(ids))


def _stop_sequences(value: Any) -> tuple[str, ...]:
    """OpenAI's `stop`: a string or a list of strings. Not validated here (the provider judges
    it); what is not text is simply not reported as a stop sequence."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(s for s in value if isinstance(s, str))
    return ()


def parse_chat(raw: bytes) -> ChatRequest:
    """A Chat Completions body as the canonical chat request."""
    body = json_object(raw)
    ids = model_ids(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("`messages` must be a non-empty list")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"`messages[{i}]` must be an object")
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:  # a list or object is unhashable
            raise InvalidRequest(f"`messages[{i}].role` must be one of {', '.join(sorted(ROLES))}")
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise InvalidRequest(f"`messages[{i}].content` must be a string, a list of parts, or null")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise InvalidRequest("`stream` must be a boolean")
    if body.get("stream_options") is not None and not isinstance(body["stream_options"], dict):
        raise InvalidRequest("`stream_options` must be an object")
    for name in OUTPUT_LIMIT_FIELDS:
        _positive_int(body, name)
    n = _positive_int(body, "n", maximum=128)
    if body.get("tools") is not None and not isinstance(body["tools"], list):
        raise InvalidRequest("`tools` must be a list")
    check_service_tier(body)
    return ChatRequest(
        body,
        ids,
        stream=body.get("stream") is True,
        n=n or 1,
        max_output=requested_limit(body),
        prefs=provider_prefs(body),
        stop=_stop_sequences(body.get("stop")),
    )


def parse_embeddings(raw: bytes) -> EmbeddingsRequest:
    """An Embeddings body as the canonical embeddings request."""
    body = json_object(raw)
    ids = model_ids(body)
    value = body.get("input")
    ok = isinstance(value, str) and value != ""
    if isinstance(value, list) and value:
        ok = (
            all(isinstance(v, str) and v for v in value)
            or all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            or all(isinstance(v, list) and v and all(isinstance(t, int) for t in v) for v in value)
        )
    if not ok:
        raise InvalidRequest("`input` must be a non-empty string, list of strings, or token arrays")
    if body.get("dimensions") is not None:
        _positive_int(body, "dimensions")
    return EmbeddingsRequest(body, ids, prefs=provider_prefs(body))


def _names(value: Any, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"`provider.{field}` must be a list of provider names")
    return tuple(value)


def _max_price(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidRequest(f"`provider.max_price.{field}` must be a number (USD per 1M tokens)")
    try:
        return parse_per_million(str(value))
    except MoneyFormatError as exc:
        raise InvalidRequest(f"`provider.max_price.{field}`: {exc}") from None


def provider_prefs(body: dict[str, Any]) -> ProviderPrefs | None:
    """OpenRouter's `provider` object, checked field by field (an unknown one is refused)."""
    raw = body.get("provider")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidRequest("`provider` must be an object")
    unknown = set(raw) - {"order", "allow_fallbacks", "only", "ignore", "sort", "max_price"}
    if unknown:
        raise InvalidRequest(f"unknown `provider` field(s): {', '.join(sorted(unknown))}")
    fallbacks = raw.get("allow_fallbacks", True)
    if not isinstance(fallbacks, bool):
        raise InvalidRequest("`provider.allow_fallbacks` must be a boolean")
    sort = raw.get("sort")
    if sort not in (None, "price", "latency"):
        raise InvalidRequest("`provider.sort` must be price or latency")
    price = raw.get("max_price") or {}
    if not isinstance(price, dict):
        raise InvalidRequest("`provider.max_price` must be an object {prompt, completion}")
    return ProviderPrefs(
        order=_names(raw["order"], "order") if "order" in raw else (),
        allow_fallbacks=fallbacks,
        only=frozenset(_names(raw["only"], "only")) if "only" in raw else None,
        ignore=frozenset(_names(raw["ignore"], "ignore")) if "ignore" in raw else frozenset(),
        sort=sort,
        max_prompt=_max_price(price.get("prompt"), "prompt"),
        max_completion=_max_price(price.get("completion"), "completion"),
    )


async def chat(gateway: Gateway, key: ApiKey, raw: bytes) -> JsonReply | StreamReply:
    return await gateway.chat(key, parse_chat(raw))


async def embeddings(gateway: Gateway, key: ApiKey, raw: bytes) -> JsonReply | StreamReply:
    return await gateway.embeddings(key, parse_embeddings(raw))


CHAT = FrontDoor("/v1/chat/completions", chat)
EMBEDDINGS = FrontDoor("/v1/embeddings", embeddings)
