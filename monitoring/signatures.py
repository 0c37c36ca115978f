"""Read the age of clamd's signature database from its VERSION reply."""

from __future__ import annotations

from datetime import UTC, datetime


def signature_date(version: str) -> datetime | None:
    """Return the signature database's date from clamd's VERSION reply, when it has one.

    `ClamAV 1.0.7/27000/Mon Jan  1 09:30:00 2024`: engine, database version, build time
    (clamd's local time, UTC in the usual container). A home-made database gives only the
    engine.
    """
    parts = version.split("/", 2)
    if len(parts) < 3:
        return None
    try:
        return datetime.strptime(" ".join(parts[2].split()), "%a %b %d %H:%M:%S %Y").replace(
            tzinfo=UTC)
    except ValueError:
        return None


def signature_age_seconds(version: str, now: datetime) -> float | None:
    """Return how old the signature database is at `now`, or None when clamd gives no date."""
    built = signature_date(version)
    return None if built is None else max(0.0, (now - built).total_seconds())
