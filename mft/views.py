"""Health endpoint: one readiness signal for scripts and load balancers."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mft import health

_REPORT = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description="`status` (ok or degraded) and `components`: database, broker, worker, "
                "gateway, clamd, pipeline, each with its own `status`.")


class HealthView(APIView):
    """Report each component's status; open to anyone, never throttled."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes: list[type] = []
    renderer_classes = [JSONRenderer]

    @extend_schema(summary="Health: 200 when database, broker and a worker are up",
                   tags=["health"], auth=[], responses={200: _REPORT, 503: _REPORT})
    def get(self, request: Request) -> Response:
        """Return each component's status; 200 when all required ones are up, else 503."""
        report = health.report()
        return Response(report, status=200 if report["status"] == "ok" else 503)


healthz = HealthView.as_view()
