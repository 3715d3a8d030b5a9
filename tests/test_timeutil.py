"""The storage timestamps and ids: fixed width, sortable as text, exact."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta, timezone

from nemorouter.timeutil import iso, parse_iso, time_ordered_id


def _reference(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_iso_matches_the_reference_across_seconds_days_and_zones() -> None:
    rng = random.Random(7)
    start = datetime(1999, 12, 31, 23, 59, 58, tzinfo=UTC)
    moments = [start + timedelta(microseconds=rng.randrange(4_000_000)) for _ in range(2_000)]
    moments += [
        datetime(2026, 12, 6, 16, 0, 0, 0, tzinfo=UTC),
        datetime(2026, 12, 6, 16, 0, 0, 999_999, tzinfo=UTC),
    ]
    moments += [datetime(2026, 3, 1, 1, 2, 3, 4, tzinfo=timezone(timedelta(hours=-5)))]
    for moment in moments:  # in and out of order: the cached second must never leak into another
        assert iso(moment) == _reference(moment)
    for moment in sorted(moments, reverse=True):
        assert iso(moment) == _reference(moment)
        assert parse_iso(iso(moment)) == moment


def test_iso_text_sorts_like_time() -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    moments = [
        base + timedelta(microseconds=m) for m in (0, 1, 999_999, 1_000_000, 59_000_001, 86_400_000_000)
    ]
    assert sorted(iso(m) for m in moments) == [iso(m) for m in sorted(moments)]
    assert len({len(iso(m)) for m in moments}) == 1


def test_iso_from_many_threads_never_mixes_two_seconds() -> None:
    seconds = [datetime(2026, 5, 5, 5, 5, s, 123, tzinfo=UTC) for s in range(60)]
    wrong: list[str] = []

    def run(offset: int) -> None:
        for i in range(3_000):
            moment = seconds[(i + offset) % 60]
            if iso(moment) != _reference(moment):
                wrong.append(iso(moment))

    threads = [threading.Thread(target=run, args=(n * 7,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_time_ordered_ids_are_unique_fixed_width_and_ordered() -> None:
    ids = [time_ordered_id("gen-") for _ in range(5_000)]
    assert len(set(ids)) == len(ids)
    assert {len(i) for i in ids} == {len("gen-") + 16 + 6 + 4}
    assert all(i.startswith("gen-") and int(i[4:], 16) >= 0 for i in ids)
    stamps = [i[4:20] for i in ids]
    assert stamps == sorted(stamps)
