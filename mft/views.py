"""Health endpoint: one readiness signal for scripts and load balancers."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from mft import health


def healthz(request: HttpRequest) -> JsonResponse:
    """Return each component's status; 200 when all required ones are up, else 503."""
    report = health.report()
    return JsonResponse(report, status=200 if report["status"] == "ok" else 503)
