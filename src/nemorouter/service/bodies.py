"""Validation of inference request bodies: clear 400s for what we must understand; every other
field passes through untouched for the provider to judge."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nemorouter import jsonx
from nemorouter.errors import InvalidRequest
from nemorouter.money import parse_per_million
from nemorouter.money.amounts import MoneyFormatError
from nemorouter.providers.bounds import PromptRules, prompt_rules
from nemorouter.providers.output_limit import OUTPUT_LIMIT_FIELDS, requested_limit

if TYPE_CHECKING:
    from nemorouter.service.routing import Target

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def _object(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise InvalidRequest("the request body is empty; send a JSON object")
    try:
        body = jsonx.loads(raw)
    except jsonx.TooDeep as exc:
        raise InvalidRequest(str(exc)) from None
    except ValueError:
        raise InvalidRequest("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


def _positive_int(body: dict[str, Any], name: str, maximum: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidRequest(f"`{name}` must be a positive integer")
    if maximum is not None and value > maximum:
        raise InvalidRequest(f"`{name}` must be at most {maximum}")
    return value


def _model_ids(body: dict[str, Any]) -> list[str]:
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


def parse_chat(raw: bytes) -> tuple[dict[str, Any], list[str]]:
    """The chat body and the model ids to try, in order."""
    body = _object(raw)
    ids = _model_ids(body)
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
    _positive_int(body, "n", maximum=128)
    if body.get("tools") is not None and not isinstance(body["tools"], list):
        raise InvalidRequest("`tools` must be a list")
    return body, ids


@dataclass(frozen=True, slots=True)
class ProviderPrefs:
    """OpenRouter's `provider` object: which providers, in what order, at what price."""

    order: tuple[str, ...] = ()
    allow_fallbacks: bool = True
    only: frozenset[str] | None = None
    ignore: frozenset[str] = frozenset()
    sort: str | None = None  # "price" | "latency"
    max_prompt: int | None = None  # pico-USD per token
    max_completion: int | None = None


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


def requested_output(body: dict[str, Any]) -> int | None:
    """The client's output limit: the smallest of its limit fields (each can only lower it; the
    adapters send exactly this, `providers.output_limit`), or None when it sent none."""
    return requested_limit(body)


def held_output(requested: int | None, model_maxes: list[int], n: int) -> int:
    """Output tokens the hold covers: n choices of the client's limit, else of the largest
    `max_output` among the models that may serve (each upstream is sent its own, never more)."""
    limit = requested if requested is not None else max(model_maxes, default=0)
    if limit < 1:
        raise InvalidRequest("this model has no known output limit; send `max_completion_tokens`")
    return limit * n


def prompt_rules_of(targets: Iterable[Target]) -> PromptRules:
    """The prompt-bound rules of the deployments that may serve: worst image, largest window."""
    return prompt_rules(
        (t.provider.kind, t.deployment.upstream_model, t.model.context_length) for t in targets
    )


def parse_embeddings(raw: bytes) -> tuple[dict[str, Any], list[str]]:
    body = _object(raw)
    ids = _model_ids(body)
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
    return body, ids
