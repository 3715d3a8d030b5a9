"""Budget windows for key limits: daily, weekly (Monday) or monthly, in UTC."""

from __future__ import annotations

from datetime import UTC, datetime

LIMIT_RESETS = ("daily", "weekly", "monthly")


def window_start(limit_reset: str | None, now: datetime) -> str:
    """A stable label of the window that `now` falls in: the window's start date, or `all`."""
    now = now.astimezone(UTC)
    day = now.date()
    if limit_reset is None:
        return "all"
    if limit_reset == "daily":
        return day.isoformat()
    if limit_reset == "weekly":
        return day.fromordinal(day.toordinal() - day.weekday()).isoformat()
    if limit_reset == "monthly":
        return day.replace(day=1).isoformat()
    raise ValueError(f"unknown limit_reset {limit_reset!r}")
