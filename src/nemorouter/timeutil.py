"""UTC timestamps as fixed-width ISO 8601 text (sortable as strings in every store)."""

from __future__ import annotations

import itertools
import secrets
import time
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """Fixed-width text form used in storage: `2026-12-01T00:00:00.000000Z`."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # %-formatting from the fields: about twice as fast as replace() + isoformat(), and on the hot path.
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond,
    )


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


_PROCESS_TAG = secrets.token_hex(3)
_sequence = itertools.count()


def time_ordered_id(prefix: str) -> str:
    """A unique id that sorts by creation time, so index inserts land on the last page.

    Nanoseconds, a random tag per process and a per-process counter: unique without a
    system call. (Not a secret: every lookup by id is also scoped to its account.)
    """
    return f"{prefix}{time.time_ns():016x}{_PROCESS_TAG}{next(_sequence) & 0xFFFF:04x}"
