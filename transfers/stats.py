"""Figures about stored files for the overview: recent counts and volume per hour."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from accounts.models import LoginFailure
from transfers import pipeline
from transfers.models import FileState, StoredFile


@dataclass(frozen=True)
class Counts:
    """Uploads and failures since a moment; files stopped for review now."""

    since: datetime
    uploads: int
    upload_bytes: int
    rejected: int
    failed_logins: int
    quarantined: int
    held: int
    stuck: int


def counts(hours: int = 24) -> Counts:
    """Return the overview's counts for the last `hours` hours and the files stopped now."""
    since = timezone.now() - timedelta(hours=hours)
    recent = StoredFile.objects.filter(created_at__gte=since).exclude(state=FileState.PARTIAL)
    totals = recent.aggregate(n=Count("id"), size=Sum("size"),
                              rejected=Count("id", filter=Q(state=FileState.REJECTED)))
    stopped = StoredFile.objects.aggregate(
        infected=Count("id", filter=Q(state=FileState.INFECTED)),
        held=Count("id", filter=Q(state=FileState.HELD)))
    return Counts(
        since=since,
        uploads=totals["n"],
        upload_bytes=totals["size"] or 0,
        rejected=totals["rejected"],
        failed_logins=LoginFailure.objects.filter(at__gte=since).count(),
        quarantined=stopped["infected"],
        held=stopped["held"],
        stuck=len(pipeline.stuck_files(settings.PIPELINE_STUCK_SECONDS)),
    )


@dataclass(frozen=True)
class HourVolume:
    """Files and bytes received in one hour."""

    hour: datetime
    files: int
    bytes: int


def volume_by_hour(hours: int = 24) -> list[HourVolume]:
    """Return one entry per hour for the last `hours` hours (oldest first), gaps as zero."""
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(hours=hours - 1)
    rows = (StoredFile.objects.filter(created_at__gte=start).exclude(state=FileState.PARTIAL)
            .annotate(hour=TruncHour("created_at")).values("hour")
            .annotate(files=Count("id"), size=Sum("size")))
    found: dict[datetime, dict[str, Any]] = {row["hour"]: dict(row) for row in rows}
    series = []
    for step in range(hours):
        hour = start + timedelta(hours=step)
        row: dict[str, Any] = found.get(hour, {})
        series.append(HourVolume(hour, row.get("files", 0), row.get("size") or 0))
    return series
