"""Records -> the contract's JSON shapes (money as Usd, times in the contract's form)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nemorouter.money import Prices, Usd
from nemorouter.money.prices import per_token_text
from nemorouter.store.records import Account, ApiKey, Credit, Generation, Model, Provider, ProviderKey
from nemorouter.timeutil import iso, parse_iso, to_api


def key_view(key: ApiKey, window_spend: dict[str, int], current_window_usage: int) -> dict[str, Any]:
    return {
        "id": key.id,
        "label": key.hint,
        "name": key.name,
        "scope": key.scope,
        "account_id": key.account_id,
        "limit": Usd(key.limit) if key.limit is not None else None,
        "limit_reset": key.limit_reset,
        "limit_remaining": Usd(max(0, key.limit - current_window_usage - key.held))
        if key.limit is not None
        else None,
        "usage": Usd(key.usage),
        "usage_daily": Usd(window_spend.get("daily", 0)),
        "usage_weekly": Usd(window_spend.get("weekly", 0)),
        "usage_monthly": Usd(window_spend.get("monthly", 0)),
        "held": Usd(key.held),
        "expires_at": to_api(key.expires_at),
        "disabled": key.disabled,
        "revoked": key.revoked_at is not None,
        "revoked_at": to_api(key.revoked_at),
        "rate_limit": {"rpm": key.rpm, "tpm": key.tpm, "max_concurrency": key.max_concurrency},
        "allowed_models": list(key.allowed_models) if key.allowed_models is not None else None,
        "created_at": to_api(key.created_at),
        "updated_at": to_api(key.updated_at),
    }


def account_view(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "name": account.name,
        "email": account.email,
        "balance": Usd(account.balance),
        "held": Usd(account.held),
        "total_credits": Usd(account.total_credits),
        "total_usage": Usd(account.total_usage),
        "rate_limit": {"rpm": account.rpm, "tpm": account.tpm},
        "created_at": to_api(account.created_at),
    }


def credits_view(account: Account) -> dict[str, Any]:
    return {
        "total_credits": Usd(account.total_credits),
        "total_usage": Usd(account.total_usage),
        "balance": Usd(account.balance),
        "held": Usd(account.held),
    }


def credit_view(credit: Credit) -> dict[str, Any]:
    return {
        "id": credit.id,
        "account_id": credit.account_id,
        "amount": Usd(credit.amount),
        "reason": credit.reason,
        "idempotency_key": credit.idempotency_key,
        "created_at": to_api(credit.created_at),
    }


def generation_view(gen: Generation) -> dict[str, Any]:
    return {
        "id": gen.id,
        "model": gen.model,
        "provider": gen.provider,
        "upstream_model": gen.upstream_model,
        "endpoint": gen.endpoint,
        "streamed": gen.streamed,
        "cancelled": gen.cancelled,
        "finish_reason": gen.finish_reason,
        "status": gen.status,
        "tokens": {
            "prompt": gen.prompt_tokens,
            "completion": gen.completion_tokens,
            "cached": gen.cached_tokens,
            "cache_write": gen.cache_write_tokens,
            "reasoning": gen.reasoning_tokens,
        },
        "unit": gen.unit,  # a model priced per unit: what `units` counts (images, characters, seconds...)
        "units": gen.units,
        "total_cost": Usd(gen.cost),
        "latency_ms": gen.latency_ms,
        "created_at": to_api(gen.created_at),
        "key_id": gen.key_id,
    }


def provider_view(
    provider: Provider, keys: list[ProviderKey], health: Callable[[str], dict[str, object]] | None = None
) -> dict[str, Any]:
    """`health`, when the server has one, reports each vault key's breaker (`key:<id>`)."""
    return {
        "id": provider.id,
        "name": provider.name,
        "kind": provider.kind,
        "base_url": provider.base_url,
        "disabled": provider.disabled,
        "created_at": to_api(provider.created_at),
        "keys": [
            {**provider_key_view(k), **({"health": health(f"key:{k.id}")} if health else {})} for k in keys
        ],
    }


def provider_key_view(key: ProviderKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "label": key.label,
        "weight": key.weight,
        "fingerprint": key.fingerprint,
        "disabled": key.disabled,
        "quarantined_at": to_api(key.quarantined_at),
        "created_at": to_api(key.created_at),
    }


def model_admin_view(model: Model, provider_names: dict[str, str]) -> dict[str, Any]:
    return {
        "id": model.id,
        "name": model.name,
        "mode": model.mode,
        "context_length": model.context_length,
        "max_output": model.max_output,
        "aliases": list(model.aliases),
        "pricing": model.prices.to_json(),
        "deployments": [
            {
                "id": d.id,
                "provider": provider_names.get(d.provider_id, d.provider_id),
                "upstream_model": d.upstream_model,
                "priority": d.priority,
                "weight": d.weight,
                "pricing": d.prices.to_json() if d.prices else None,
                "disabled": d.disabled,
            }
            for d in model.deployments
        ],
    }


SUPPORTED_PARAMETERS = [
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "n",
    "seed",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "stream",
    "stream_options",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "user",
]


def public_model_view(model: Model) -> dict[str, Any]:
    """OpenRouter's /models shape (a superset of OpenAI's `Model`): prices in USD per token, as
    decimal strings; `created` is when the model was first added to this gateway (unix seconds)."""
    prices = model.prices
    return {
        "id": model.id,
        "object": "model",
        "created": int(parse_iso(model.created_at).timestamp()),
        "owned_by": model.id.split("/", 1)[0],
        "name": model.name,
        "aliases": list(model.aliases),  # other names it answers to (not listed as items of their own)
        "context_length": model.context_length,
        "pricing": _public_pricing(prices),
        "top_provider": {"max_completion_tokens": model.max_output, "context_length": model.context_length},
        "supported_parameters": _PARAMETERS.get(model.mode, SUPPORTED_PARAMETERS),
        "architecture": {"modality": _MODALITIES.get(model.mode, "text->text")},
    }


def _public_pricing(prices: Prices) -> dict[str, Any]:
    """USD per token in OpenRouter's names; a model priced per unit adds `units` (USD per one of
    each unit it names) and, where OpenRouter has a name for it, `image`: USD per image at the
    cheapest tier (OpenRouter's "from" price; the tier a request names is in `units`)."""
    out: dict[str, Any] = {
        "prompt": per_token_text(prices.input),
        "completion": per_token_text(prices.output),
        "input_cache_read": per_token_text(prices.cache_read_rate),
        "input_cache_write": per_token_text(prices.cache_write_rate),
        "request": per_token_text(prices.request) if prices.request else "0",
    }
    if prices.units:
        out["units"] = {name: per_token_text(rate) for name, rate in prices.units}
        images = [rate for name, rate in prices.units if name == "image" or name.startswith("image/")]
        if images:
            out["image"] = per_token_text(min(images))
    return out


# What each mode's model takes and gives, in OpenRouter's `/models` terms.
_PARAMETERS = {
    "embedding": ["input", "dimensions", "encoding_format"],
    "moderation": ["input"],
    "rerank": ["query", "documents", "top_n", "return_documents"],
    "image": ["prompt", "n", "size", "quality", "response_format"],
    "speech": ["input", "voice", "response_format", "speed"],
    "transcription": ["file", "language", "prompt", "response_format", "temperature"],
}
_MODALITIES = {
    "embedding": "text->embedding",
    "moderation": "text+image->moderation",
    "rerank": "text->rerank",
    "image": "text+image->image",
    "speech": "text->audio",
    "transcription": "audio->text",
}


def anthropic_model_view(model: Model) -> dict[str, Any]:
    """Anthropic's `ModelInfo`: `created_at` is RFC 3339, the time the model was added here."""
    return {
        "type": "model",
        "id": model.id,
        "display_name": model.name,
        "created_at": iso(parse_iso(model.created_at)).replace(".000000Z", "Z"),
    }
