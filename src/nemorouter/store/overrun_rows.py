"""The `overruns` table's rows, shared by both backends: amounts that may exceed 64 bits are
kept as exact decimal text of pico-USD."""

from __future__ import annotations

from typing import Any

from nemorouter.store.records import Overrun

OVERRUN_COLUMNS = (
    "request_id",
    "account_id",
    "key_id",
    "model",
    "provider",
    "provider_key_id",
    "deployment_id",
    "hold",
    "charged",
    "reported_cost",
    "overrun",
    "reason",
    "raw_usage",
    "created_at",
)


def overrun_params(o: Overrun) -> tuple[Any, ...]:
    return (
        o.request_id,
        o.account_id,
        o.key_id,
        o.model,
        o.provider,
        o.provider_key_id,
        o.deployment_id,
        o.hold,
        o.charged,
        str(o.reported_cost),
        str(o.overrun),
        o.reason,
        o.raw_usage,
        o.created_at,
    )


def overrun(row: Any) -> Overrun:
    values = {name: row[name] for name in OVERRUN_COLUMNS}
    values["reported_cost"] = int(values["reported_cost"])
    values["overrun"] = int(values["overrun"])
    return Overrun(**values)
