"""Compliance posture: the running configuration's findings; an admin accepts one."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from dashboard.access import can, origin_of, requires
from mft import posture
from mft.errors import PortsideError


@requires("view_settings")
def posture_page(request: HttpRequest) -> HttpResponse:
    """List findings with severity, controls and any acceptance."""
    context = {"findings": posture.findings(),
               "may_accept": can(request.user, "accept_findings")}
    return render(request, "dashboard/posture.html", context)


@require_POST
@requires("accept_findings")
def posture_accept(request: HttpRequest, finding: str) -> HttpResponse:
    """Accept a finding with the written justification (audited)."""
    try:
        posture.accept(finding, justification=request.POST.get("justification", ""),
                       origin=origin_of(request))
    except PortsideError as exc:
        messages.error(request, f"{finding}: {exc}")
    else:
        messages.success(request, f"Finding {finding} accepted.")
    return redirect("dashboard:posture")
