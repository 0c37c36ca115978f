"""Figures about deliveries for the overview: the ones failing now or lately."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, Q
from django.utils import timezone

from deliveries.models import Delivery


@dataclass(frozen=True)
class Failing:
    """Deliveries that gave up lately, and those waiting to retry after a failed attempt."""

    failed: int
    retrying: int

    @property
    def total(self) -> int:
        return self.failed + self.retrying


def failing(hours: int = 24) -> Failing:
    """Return the deliveries that failed in the last `hours` hours and those retrying now."""
    since = timezone.now() - timedelta(hours=hours)
    found = Delivery.objects.aggregate(
        failed=Count("id", filter=Q(status=Delivery.Status.FAILED, finished_at__gte=since)),
        retrying=Count("id", filter=Q(status=Delivery.Status.WAITING)))
    return Failing(failed=found["failed"], retrying=found["retrying"])
