"""REST views for the audit log: filter, and export as CSV or JSON lines, streamed."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.request import Request

from accounts.api_auth import origin_of
from accounts.permissions import ALL_ACTIONS
from audit import exporters
from audit.filters import AuditEventFilter
from audit.models import AuditEvent
from audit.serializers import AuditEventSerializer
from mft.viewsets import FirstRenderer, PortsideViewSet


def _export_schema(media_type: str) -> Any:
    """Return the schema decorator of an export in a media type."""
    return extend_schema(summary=f"Export the matching events as {media_type}, streamed",
                         filters=True, responses={(200, media_type): OpenApiTypes.STR})


@extend_schema_view(list=extend_schema(summary="List audit events"),
                    retrieve=extend_schema(summary="Show an audit event"))
@extend_schema(tags=["audit"])
class AuditEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, PortsideViewSet):
    """The hash-chained audit log (install-wide: closed to partner-scoped callers)."""

    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    install_wide_actions = (ALL_ACTIONS,)

    def get_queryset(self) -> QuerySet[AuditEvent]:
        return AuditEvent.objects.all()

    def _export(self, request: Request, file_format: str) -> StreamingHttpResponse:
        """Stream the events matching the query's filters."""
        matching = self.filter_queryset(self.get_queryset())
        # Only declared filters, which the filter set has validated: free-form query
        # parameters (NUL bytes and all) never reach the audit record.
        filters = {name: request.query_params[name] for name in AuditEventFilter.base_filters
                   if name in request.query_params and name != "ordering"}
        stream = exporters.export(matching, file_format, origin=origin_of(request),
                                  filters=filters)
        response = StreamingHttpResponse(stream, content_type=exporters.FORMATS[file_format])
        response["Content-Disposition"] = f'attachment; filename="audit.{file_format}"'
        return response

    @_export_schema("text/csv")
    @action(detail=False, methods=["get"], url_path="export/csv",
            content_negotiation_class=FirstRenderer)
    def export_csv(self, request: Request) -> StreamingHttpResponse:
        return self._export(request, "csv")

    @_export_schema("application/jsonl")
    @action(detail=False, methods=["get"], url_path="export/jsonl",
            content_negotiation_class=FirstRenderer)
    def export_jsonl(self, request: Request) -> StreamingHttpResponse:
        return self._export(request, "jsonl")
