"""`/metrics`: Prometheus exposition for admins, or for the scraper's allowed addresses.

Open to a request from an address in `MFT_METRICS_ALLOW` (CIDRs; the address the web
server saw, so behind a proxy list the proxy), or to an admin: a dashboard session or a
bearer token with the admin scope.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.api_auth import BearerTokenAuthentication, client_ip
from accounts.permissions import holds
from mft.viewsets import FirstRenderer
from monitoring.exposition import exposition


def address_allowed(address: str | None) -> bool:
    """Return True when the address is inside one of MFT_METRICS_ALLOW's networks."""
    if not address or not settings.METRICS_ALLOW:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in settings.METRICS_ALLOW)


class MetricsAccess(BasePermission):
    """Allow listed scraper addresses, and admins (session or admin-scope token)."""

    message = "metrics need an admin session, an admin-scope token or an allowed address"

    def has_permission(self, request: Request, view: Any) -> bool:
        """Return True for an allowed address or an admin."""
        if address_allowed(client_ip(request)):
            return True
        return bool(request.user and request.user.is_authenticated
                    and holds(request, "admin"))


class MetricsView(APIView):
    """Serve Prometheus metrics."""

    authentication_classes = [BearerTokenAuthentication, SessionAuthentication]
    permission_classes = [MetricsAccess]
    renderer_classes = [JSONRenderer]
    # The view picks the exposition format itself; only refusals are rendered (JSON).
    content_negotiation_class = FirstRenderer

    @extend_schema(summary="Prometheus metrics (text exposition format)", tags=["monitoring"],
                   responses={
                       (200, "text/plain"): OpenApiResponse(
                           OpenApiTypes.STR, description="Prometheus text format"),
                       (200, "application/openmetrics-text"): OpenApiResponse(
                           OpenApiTypes.STR, description="OpenMetrics, when asked for")})
    def get(self, request: Request) -> HttpResponse:
        """Return the metrics in the format the scraper asked for."""
        body, content_type = exposition(request.META.get("HTTP_ACCEPT", ""))
        return HttpResponse(body, content_type=content_type)


metrics_view = MetricsView.as_view()
