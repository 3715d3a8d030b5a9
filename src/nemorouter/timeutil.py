"""UTC timestamps as fixed-width ISO 8601 text (sortable as strings in every store)."""

from __future__ import annotations

import itertools
import secrets
import time
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


# The text of the last second `iso` formatted, as one tuple (replaced whole, so a reader in another
# thread sees a matching pair): timestamps on the request path come many per second.
_last_second: tuple[int, str] = (-1, "")


def iso(moment: datetime) -> str:
    """Fixed-width text form used in storage: `2026-12-01T00:00:00.000000Z`."""
    global _last_second
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # Formatting seven numbers cost ~11k instructions (compiled) on every request; the part up to
    # the second is made once a second and the microseconds appended (~4k; bench/instructions.py).
    year, month, day = moment.year, moment.month, moment.day
    hour, minute, second = moment.hour, moment.minute, moment.second
    key = ((year * 16 + month) * 32 + day) * 86400 + hour * 3600 + minute * 60 + second
    last = _last_second
    if last[0] == key:
        prefix = last[1]
    else:
        prefix = "%04d-%02d-%02dT%02d:%02d:%02d." % (year, month, day, hour, minute, second)  # noqa: UP031
        _last_second = (key, prefix)
    return prefix + str(moment.microsecond + 1_000_000)[1:] + "Z"


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
    # %-formatting: half the instructions of the same f-string once compiled (format specs).
    return "%s%016x%s%04x" % (prefix, time.time_ns(), _PROCESS_TAG, next(_sequence) & 0xFFFF)  # noqa: UP031
