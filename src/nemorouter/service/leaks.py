"""Leaked-key reports from secret scanners: revoke at once, reveal nothing.

Every string is checked against the key format and checksum first; only a well-formed key
costs a database lookup. The answer never depends on what was found.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from nemorouter.errors import InvalidRequest
from nemorouter.service import alerts, audit
from nemorouter.service.keyformat import hash_key, key_scope
from nemorouter.store.base import Store
from nemorouter.store.records import ApiKey
from nemorouter.timeutil import iso

MAX_ITEMS = 10_000
_MAX_TEXT = 2_000


def _optional_text(item: dict[str, Any], name: str, index: int) -> str | None:
    value = item.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"`items[{index}].{name}` must be a string")
    return value[:_MAX_TEXT]


def parse_report(body: Any) -> list[tuple[str, str | None, str | None]]:
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise InvalidRequest(
            'the body must be a JSON object with an `items` list: {"items": [{"token": ...}]}'
        )
    items = body["items"]
    if len(items) > MAX_ITEMS:
        raise InvalidRequest(f"at most {MAX_ITEMS} items per report")
    parsed = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("token"), str):
            raise InvalidRequest(f"`items[{index}]` must be an object with a string `token`")
        parsed.append(
            (item["token"], _optional_text(item, "url", index), _optional_text(item, "source", index))
        )
    return parsed


async def report_leaks(
    store: Store, body: Any, reporter: str | None, clock: Callable[[], datetime]
) -> tuple[int, int]:
    """Revoke every live key among the reported tokens. Returns (items received, keys revoked);
    only the first may be shown to the reporter."""
    items = parse_report(body)
    found: list[tuple[str, str | None, str | None]] = []
    live: list[tuple[ApiKey, str | None, str | None]] = []
    for token, url, source in items:
        candidate = token.strip()
        if key_scope(candidate) is None:
            continue
        match = await store.find_key(hash_key(candidate))
        if match is not None:
            found.append((match[0].id, url, source))
            if match[0].revoked_at is None:
                live.append((match[0], url, source))
    now = clock()
    revoked = await store.record_leaks(found, len(items), reporter, iso(now))
    for key, _, source in live:
        with audit.acting_as("leak_report"):
            await audit.record(
                store,
                now,
                "key.revoke_leaked",
                account_id=key.account_id,
                targets={"key_id": key.id},
                params={"source": source},
            )
    for key, url, source in live:  # alerts out: revoked because it leaked
        await alerts.key_revoked(store, key, now, "leak")
        await alerts.key_leaked(store, key, now, url, source)
    return len(items), revoked
