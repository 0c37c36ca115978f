"""Live FTPS sessions and their transfers; admins and operators may disconnect one."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from dashboard.access import is_htmx, origin_of, requires
from mft.errors import PortsideError
from transfers import sessions

LIMIT = 500
PANEL_ROWS = 8


def panel_context() -> dict[str, Any]:
    """Return the overview panel's figures: live sessions, and the transfers running."""
    live = sessions.live_sessions()
    running = live.exclude(transfer_direction="").order_by("transfer_started_at", "id")
    return {"live_count": live.count(), "running_count": running.count(),
            "running": list(running[:PANEL_ROWS])}


@requires("view_sessions")
def session_list(request: HttpRequest) -> HttpResponse:
    """Show live sessions with their transfers' progress (htmx refreshes the table)."""
    rows = list(sessions.live_sessions()[:LIMIT])
    context = {"sessions": rows, "limit": LIMIT}
    if is_htmx(request):
        return render(request, "dashboard/_session_table.html", context)
    return render(request, "dashboard/sessions.html", context)


@requires("view_sessions")
def overview_panel(request: HttpRequest) -> HttpResponse:
    """Return the overview's live sessions panel alone (htmx refreshes it)."""
    return render(request, "dashboard/_live_sessions.html", panel_context())


@requires("disconnect_sessions")
def session_disconnect(request: HttpRequest, session_id: str) -> HttpResponse:
    """Ask for a reason, then have the session's gateway end it (audited)."""
    session = get_object_or_404(sessions.live_sessions(), session_id=session_id)
    error = None
    if request.method == "POST":
        try:
            sessions.request_disconnect(session, reason=request.POST.get("reason", ""),
                                        origin=origin_of(request))
        except PortsideError as exc:
            error = str(exc)
        else:
            messages.success(request, f"{session.username}'s session will be disconnected "
                                      f"within seconds.")
            return redirect("dashboard:sessions")
    return render(request, "dashboard/session_disconnect.html",
                  {"session": session, "error": error}, status=400 if error else 200)
