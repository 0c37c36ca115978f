"""Delivery windows: the hours of the day (in a route's time zone) when sending may start."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, time, timedelta


def is_open(start: time | None, end: time | None, tz: str, now: datetime) -> bool:
    """Return True when no window is set or now falls inside it (it may span midnight)."""
    if start is None or end is None or start == end:
        return True
    local = now.astimezone(zoneinfo.ZoneInfo(tz)).time()
    if start < end:
        return start <= local < end
    return local >= start or local < end


def next_opening(start: time | None, end: time | None, tz: str, now: datetime) -> datetime | None:
    """Return when a closed window next opens (UTC), or None when it is open now."""
    if start is None or is_open(start, end, tz, now):
        return None
    local = now.astimezone(zoneinfo.ZoneInfo(tz))
    opening = local.replace(hour=start.hour, minute=start.minute, second=start.second,
                            microsecond=0)
    if opening <= local:
        opening = (opening + timedelta(days=1)).replace(hour=start.hour, minute=start.minute)
    return opening.astimezone(UTC)
