"""When an expected file's deadlines fall, in UTC, from its local time and weekdays."""

from __future__ import annotations

import zoneinfo
from datetime import date, datetime, timedelta

from expected.models import ExpectedFile

# A file for a deadline may arrive any time after the previous deadline, at most this early.
MAX_WINDOW = timedelta(days=7)


def due_on(expected: ExpectedFile, day: date) -> datetime | None:
    """Return the deadline on a local date (aware, UTC), or None when that day has none."""
    if day.weekday() not in expected.weekdays:
        return None
    zone = zoneinfo.ZoneInfo(expected.time_zone)
    local = datetime.combine(day, expected.deadline, tzinfo=zone)
    return local.astimezone(zoneinfo.ZoneInfo("UTC"))


def between(expected: ExpectedFile, start: datetime, end: datetime) -> list[datetime]:
    """Return the deadlines after `start` and up to `end`, oldest first."""
    zone = zoneinfo.ZoneInfo(expected.time_zone)
    day, last = start.astimezone(zone).date(), end.astimezone(zone).date()
    found = []
    while day <= last:
        due = due_on(expected, day)
        if due is not None and start < due <= end:
            found.append(due)
        day += timedelta(days=1)
    return found


def previous(expected: ExpectedFile, due: datetime) -> datetime:
    """Return when the window for a deadline opens: the deadline before it (a week at most)."""
    earlier = between(expected, due - MAX_WINDOW, due - timedelta(microseconds=1))
    return earlier[-1] if earlier else due - MAX_WINDOW
