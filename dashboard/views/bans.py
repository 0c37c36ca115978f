"""Bans: addresses refused on every protocol after repeated failed logins; lift them."""

from __future__ import annotations

from django.contrib import messages
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts import bans
from accounts.models import Ban
from dashboard.access import is_htmx, origin_of, requires
from mft.errors import PortsideError

RECENT = 50


@requires("manage_bans")
def ban_list(request: HttpRequest) -> HttpResponse:
    """Show bans in force, and the latest ones that expired or were lifted."""
    now = timezone.now()
    in_force = Q(lifted_at__isnull=True, expires_at__gt=now)
    context = {"active": Ban.objects.filter(in_force).order_by("-created_at"),
               "past": Ban.objects.exclude(in_force).order_by("-created_at")[:RECENT]}
    return render(request, "dashboard/bans.html", context)


@require_POST
@requires("manage_bans")
def ban_lift(request: HttpRequest, pk: int) -> HttpResponse:
    """Lift a ban (audited); htmx swaps the row, a plain form comes back to the list."""
    ban = get_object_or_404(Ban, pk=pk)
    error = None
    try:
        bans.lift_ban(ban, origin=origin_of(request))
    except PortsideError as exc:
        error = str(exc)
    if is_htmx(request):
        ban.refresh_from_db()
        return render(request, "dashboard/_ban_row.html", {"ban": ban, "error": error})
    if error:
        messages.error(request, error)
    else:
        messages.success(request, f"Ban on {ban.address} lifted.")
    return redirect("dashboard:bans")
