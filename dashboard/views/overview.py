"""The overview: what happened in the last day, what waits for a person, what is unwell."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts import expiring
from dashboard import charts
from dashboard.access import can, requires
from dashboard.views.sessions import panel_context
from deliveries import stats as delivery_stats
from mft import health
from transfers import stats
from transfers.models import FileState, StoredFile

_REVIEW_STATES = (FileState.HELD, FileState.INFECTED)


@requires("view_overview")
def overview(request: HttpRequest) -> HttpResponse:
    """Show the counts, the components' health, expiring credentials and the volume chart."""
    series = stats.volume_by_hour(24)
    context = {
        "counts": stats.counts(24),
        "failing": delivery_stats.failing(24),
        "health": health.report(),
        "expiring": expiring.within(expiring.WARNING_DAYS),
        "warning_days": expiring.WARNING_DAYS,
        "bars": charts.volume_bars(series),
        "chart": {"width": charts.WIDTH, "height": charts.HEIGHT,
                  "files": sum(p.files for p in series), "bytes": sum(p.bytes for p in series)},
        "awaiting": StoredFile.objects.filter(state__in=_REVIEW_STATES)
        .select_related("partner").order_by("state_changed_at")[:5],
    }
    if can(request.user, "view_sessions"):
        context.update(panel_context())
    return render(request, "dashboard/overview.html", context)


@requires("view_overview")
def health_panel(request: HttpRequest) -> HttpResponse:
    """Return the health panel alone (htmx refreshes it every 30 seconds)."""
    return render(request, "dashboard/_health.html", {"health": health.report()})
