"""What a settle or release writes on SQLite: the completed record (COMPLETE and its parameters)
and, for a charge, the seal digest of the row it leaves, computed from the values the row is
written with. Apart from the mirror so each module keeps one job; compiled with it
(tools/build_native.py): both run on every request.
"""

from __future__ import annotations

import orjson

from nemorouter.store import rows
from nemorouter.store.records import Generation
from nemorouter.store.seals import UNCHARGED, digest

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
        g.id,
    )


def sealed_digest(g: Generation, account_id: str, key_id: str, created_at: str) -> str | None:
    """The seal digest of `g`'s row as COMPLETE leaves it (`seals.GENERATION_FIELDS`: the ids and
    time as the pending row holds them, the rest from `g`), or None when it is not sealed (no charge) or
    a value is not of the type SQLite gives back (a bool for a count, say: the row would read 1,
    not true); the sealer then hashes the committed row itself."""
    if g.status in UNCHARGED:
        return None
    texts = (
        g.id,
        g.model,
        g.provider,
        g.upstream_model,
        g.deployment_id,
        g.provider_key_id,
        g.endpoint,
        g.status,
    )
    for text in texts:
        if text is not None and type(text) is not str:
            return None
    version = g.price_version_id
    counts = (
        g.prompt_tokens,
        g.completion_tokens,
        g.cached_tokens,
        g.cache_write_tokens,
        g.cache_write_1h_tokens,
        g.reasoning_tokens,
        g.cost,
        g.hold,
    )
    for count in counts:
        if type(count) is not int:
            return None
    if version is not None and type(version) is not int:
        return None
    values = (
        g.id,
        account_id,
        key_id,
        g.model,
        g.provider,
        g.upstream_model,
        g.deployment_id,
        g.provider_key_id,
        g.endpoint,
        int(g.streamed),
        int(g.cancelled),
        g.status,
        *counts,
        version,
        created_at,
    )
    try:
        return digest("generation", values)
    except orjson.JSONEncodeError:  # text SQLite cannot bind either: the write fails on its own
        return None
