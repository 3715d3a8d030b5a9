"""Row -> record conversion shared by the SQL stores."""

from __future__ import annotations

from typing import Any

import orjson

from nemorouter.money import Prices
from nemorouter.store.records import (
    Account,
    ApiKey,
    CatalogEntry,
    Credit,
    Generation,
    Hold,
    Provider,
    ProviderKey,
)

Row = Any


def account(row: Row) -> Account:
    return Account(
        id=row["id"],
        name=row["name"],
        email=row["email"],
        total_credits=row["total_credits"],
        total_usage=row["total_usage"],
        held=row["held"],
        created_at=row["created_at"],
        rpm=row["rpm"],
        tpm=row["tpm"],
    )


def credit(row: Row) -> Credit:
    return Credit(
        id=row["id"],
        account_id=row["account_id"],
        amount=row["amount"],
        reason=row["reason"],
        idempotency_key=row["idempotency_key"],
        created_at=row["created_at"],
    )


def api_key(row: Row) -> ApiKey:
    allowed = row["allowed_models"]
    return ApiKey(
        id=row["id"],
        account_id=row["account_id"],
        scope=row["scope"],
        name=row["name"],
        hint=row["hint"],
        limit=row["limit_pico"],
        limit_reset=row["limit_reset"],
        window_start=row["window_start"],
        window_usage=row["window_usage"],
        usage=row["usage"],
        held=row["held"],
        expires_at=row["expires_at"],
        disabled=bool(row["disabled"]),
        revoked_at=row["revoked_at"],
        rpm=row["rpm"],
        tpm=row["tpm"],
        max_concurrency=row["max_concurrency"],
        allowed_models=tuple(orjson.loads(allowed)) if allowed is not None else None,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        # sqlite3.Row's `in` looks at values, so ask its keys (only find_key joins these in).
        account_rpm=row["account_rpm"] if "account_rpm" in row.keys() else None,  # noqa: SIM118
        account_tpm=row["account_tpm"] if "account_tpm" in row.keys() else None,  # noqa: SIM118
    )


def provider(row: Row) -> Provider:
    return Provider(
        id=row["id"],
        name=row["name"],
        kind=row["kind"],
        base_url=row["base_url"],
        config=orjson.loads(row["config"]),
        disabled=bool(row["disabled"]),
        created_at=row["created_at"],
    )


def provider_key(row: Row) -> ProviderKey:
    return ProviderKey(
        id=row["id"],
        provider_id=row["provider_id"],
        label=row["label"],
        weight=row["weight"],
        fingerprint=row["fingerprint"],
        envelope=row["envelope"],
        disabled=bool(row["disabled"]),
        quarantined_at=row["quarantined_at"],
        created_at=row["created_at"],
    )


def hold(row: Row) -> Hold:
    """An open hold is a pending generation row."""
    return Hold(
        request_id=row["id"],
        account_id=row["account_id"],
        key_id=row["key_id"],
        amount=row["hold"],
        window="",
        owner=row["owner"],
        created_at=row["created_at"],
        model=row["model"],
        endpoint=row["endpoint"],
        streamed=bool(row["streamed"]),
    )


GENERATION_COLUMNS = [
    "id",
    "account_id",
    "key_id",
    "model",
    "provider",
    "upstream_model",
    "deployment_id",
    "provider_key_id",
    "endpoint",
    "streamed",
    "cancelled",
    "finish_reason",
    "status",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "cost",
    "hold",
    "price_version_id",
    "latency_ms",
    "error",
    "raw_usage",
    "unit",
    "units",
    "created_at",
]


def generation(row: Row) -> Generation:
    values = {name: row[name] for name in GENERATION_COLUMNS}
    values["streamed"] = bool(values["streamed"])
    values["cancelled"] = bool(values["cancelled"])
    return Generation(**values)


def generation_params(gen: Generation) -> tuple[Any, ...]:
    return tuple(getattr(gen, name) for name in GENERATION_COLUMNS)


def prices(text: str) -> Prices:
    return Prices.from_json(orjson.loads(text))


def prices_text(value: Prices) -> str:
    return orjson.dumps(value.to_json(), option=orjson.OPT_SORT_KEYS).decode()


def catalog_params(e: CatalogEntry) -> tuple[Any, ...]:
    """A catalog entry as its row's values, in the table's column order (both stores)."""
    return (
        e.vendor,
        e.model_id,
        e.mode,
        orjson.dumps(e.pricing).decode(),
        e.context_length,
        e.max_output,
        e.source,
    )
