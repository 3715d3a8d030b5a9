"""What a settle or release writes on SQLite: the completed record (COMPLETE and its parameters)
and, for a charge, the seal digest of the row it leaves, computed from the values the row is
written with. Apart from the mirror so each module keeps one job; compiled with it
(tools/build_native.py): both run on every request.
"""

from __future__ import annotations

import orjson

from nemorouter.store import rows
from nemorouter.store.records import Generation
from nemorouter.store.seals import GENERATION_FIELDS, UNCHARGED, digest

# Everything a settle or release fills in on the pending row: every column but the four set at
# reserve, in the order of `rows.GENERATION_COLUMNS`, which `outcome_row` gives
# (tests/store/test_money_mirror.py checks both).
OUTCOME_COLUMNS = tuple(
    c for c in rows.GENERATION_COLUMNS if c not in ("id", "account_id", "key_id", "created_at")
)
COMPLETE = (
    f"UPDATE generations SET {', '.join(f'{c} = ?' for c in OUTCOME_COLUMNS)}"
    " WHERE id = ? AND status = 'pending'"
)


def outcome_row(g: Generation) -> tuple[object, ...]:
    """The parameters of COMPLETE for `g`: its OUTCOME_COLUMNS, then its id."""
    return (
        g.model,
        g.provider,
        g.upstream_model,
        g.deployment_id,
        g.provider_key_id,
        g.endpoint,
        int(g.streamed),
        int(g.cancelled),
        g.finish_reason,
        g.status,
        g.prompt_tokens,
        g.completion_tokens,
        g.cached_tokens,
        g.cache_write_tokens,
        g.cache_write_1h_tokens,
        g.reasoning_tokens,
        g.cost,
        g.hold,
        g.price_version_id,
        g.latency_ms,
        g.error,
        g.raw_usage,
        g.unit,
        g.units,
        g.id,
    )


# Where each of `seals.GENERATION_FIELDS` is in an outcome row followed by what the pending row
# already holds (the account, the key and the time), and the type SQLite gives it back as.
_AFTER_OUTCOME = ("id", "account_id", "key_id", "created_at")  # `outcome_row` ends with the id
_SEALED_AT = tuple((*OUTCOME_COLUMNS, *_AFTER_OUTCOME).index(name) for name in GENERATION_FIELDS)
_INTEGER_COLUMNS = {
    "streamed",
    "cancelled",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "cost",
    "hold",
    "price_version_id",
    "units",
}
_SEALED_TYPES = tuple(int if name in _INTEGER_COLUMNS else str for name in GENERATION_FIELDS)
_STATUS = OUTCOME_COLUMNS.index("status")


def sealed_digest(row: tuple[object, ...], account_id: str, key_id: str, created_at: str) -> str | None:
    """The seal digest of the row COMPLETE leaves, given its parameters (`outcome_row`) and what
    the pending row holds, or None when it is not sealed (no charge) or a value is not of the
    type SQLite gives back (a bool for a count, say: the row would read 1, not true); the sealer
    then hashes the committed row itself."""
    if row[_STATUS] in UNCHARGED:
        return None
    full = (*row, account_id, key_id, created_at)
    values = tuple(full[i] for i in _SEALED_AT)
    for value, kind in zip(values, _SEALED_TYPES, strict=True):
        if value is not None and type(value) is not kind:
            return None
    try:
        return digest("generation", values)
    except orjson.JSONEncodeError:  # text SQLite cannot bind either: the write fails on its own
        return None
