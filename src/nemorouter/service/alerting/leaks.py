"""Leaked-key reports from secret scanners: revoke at once, reveal nothing.

Every string is checked against the key format and checksum first; only a well-formed key
costs a database lookup. The answer never depends on what was found.

The endpoint is public, so the work one report can cause is bounded (app/public.py admits it):
at most MAX_ITEMS items, each distinct well-formed token looked up once, and the lookups of a
report are paid for up front from per-address and all-addresses budgets. Lookups give the
event loop back every LOOKUP_SLICE, so inference is never held up behind a report; the store's
write path sees one short transaction per report, whose size is bounded by the real keys found.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nemorouter.errors import InvalidRequest
from nemorouter.service import audit
from nemorouter.service.alerting import alerts
from nemorouter.service.keyformat import hash_key, key_scope
from nemorouter.store.base import Store
from nemorouter.store.records import ApiKey
from nemorouter.timeutil import iso

MAX_ITEMS = 2_000  # app/public.py's per-address lookup budget pays for a whole report
LOOKUP_SLICE = 32  # database lookups between two yields to the event loop
_MAX_TEXT = 2_000

Item = tuple[str, str | None, str | None]  # token, url, source


@dataclass(frozen=True, slots=True)
class Report:
    received: int  # items in the report (the only thing the reporter is told)
    candidates: list[Item]  # distinct well-formed keys among them: each costs one lookup


def _optional_text(item: dict[str, Any], name: str, index: int) -> str | None:
    value = item.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"`items[{index}].{name}` must be a string")
    return value[:_MAX_TEXT]


def parse_report(body: Any) -> Report:
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise InvalidRequest(
            'the body must be a JSON object with an `items` list: {"items": [{"token": ...}]}'
        )
    items = body["items"]
    if len(items) > MAX_ITEMS:
        raise InvalidRequest(f"at most {MAX_ITEMS} items per report")
    candidates: dict[str, Item] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("token"), str):
            raise InvalidRequest(f"`items[{index}]` must be an object with a string `token`")
        url, source = _optional_text(item, "url", index), _optional_text(item, "source", index)
        token = item["token"].strip()
        if token not in candidates and key_scope(token) is not None:
            candidates[token] = (token, url, source)
    return Report(len(items), list(candidates.values()))


async def report_leaks(
    store: Store, report: Report, reporter: str | None, clock: Callable[[], datetime]
) -> int:
    """Revoke every live key among the report's candidates; returns how many were revoked (never
    shown to the reporter)."""
    found: list[tuple[str, str | None, str | None]] = []
    live: list[tuple[ApiKey, str | None, str | None]] = []
    for index, (token, url, source) in enumerate(report.candidates):
        if index and index % LOOKUP_SLICE == 0:
            await asyncio.sleep(0)  # let requests waiting on the loop run between slices
        match = await store.find_key(hash_key(token))
        if match is not None:
            found.append((match[0].id, url, source))
            if match[0].revoked_at is None:
                live.append((match[0], url, source))
    now = clock()
    revoked = await store.record_leaks(found, report.received, reporter, iso(now))
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
    return revoked
