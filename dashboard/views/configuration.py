"""Settings: a read-only view of the running configuration (it changes in the environment)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from dashboard import connection
from dashboard.access import requires
from mft import configuration


@requires("view_settings")
def settings_page(request: HttpRequest) -> HttpResponse:
    """Show TLS policy, listeners, scanner, storage, database and broker."""
    context = {"sections": configuration.describe(), "scanner": configuration.scanner(),
               "sheet": connection.sheet()}
    return render(request, "dashboard/settings.html", context)
