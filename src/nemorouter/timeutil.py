"""UTC timestamps as fixed-width ISO 8601 text (sortable as strings in every store)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """Fixed-width text form used in storage: `2026-12-01T00:00:00.000000Z`."""
    return moment.astimezone(UTC).strftime(_FORMAT)


def parse_iso(text: str) -> datetime:
    """Parse ISO 8601 (with `Z` or an offset; a naive time is taken as UTC)."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def to_api(stored: str | None) -> str | None:
    """Stored text -> the contract's form (`...:00Z` when there is no fraction of a second)."""
    if stored is None:
        return None
    return stored.replace(".000000Z", "Z")


def new_id(prefix: str, nbytes: int = 12) -> str:
    return f"{prefix}{secrets.token_hex(nbytes)}"
