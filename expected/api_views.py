"""REST views for expected files: admins configure them; readers (partner-limited callers:
their own partner's) see them and their deadlines. Thin translation onto expected.services."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api_auth import origin_of
from accounts.permissions import limit_to_partner
from expected import serializers as s
from expected import services
from expected.filters import ExpectedFileFilter
from expected.models import ExpectedFile
from mft.errors import InvalidInput
from mft.viewsets import PortsideViewSet, validated


@extend_schema(tags=["expected-files"])
@extend_schema_view(list=extend_schema(summary="List expected files"),
                    retrieve=extend_schema(summary="Show an expected file"))
class ExpectedFileViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, PortsideViewSet):
    """Files a partner must deliver by a time of day on given weekdays."""

    serializer_class = s.ExpectedFileSerializer
    filterset_class = ExpectedFileFilter
    install_wide_actions = ("create", "partial_update", "destroy")
    action_scopes = {"deadlines": "read"}

    def get_queryset(self) -> QuerySet[ExpectedFile]:
        rows = ExpectedFile.objects.select_related("partner").order_by("name")
        return limit_to_partner(rows, self.request)

    @extend_schema(summary="Expect a partner's file", request=s.ExpectedFileSerializer,
                   responses={201: s.ExpectedFileSerializer})
    def create(self, request: Request) -> Response:
        fields = s.write_fields(validated(s.ExpectedFileSerializer, request))
        expected = services.create_expected(origin=origin_of(request), **fields)
        return Response(s.ExpectedFileSerializer(expected).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Change an expected file", request=s.ExpectedFileSerializer,
                   responses={200: s.ExpectedFileSerializer})
    def partial_update(self, request: Request, pk: str) -> Response:
        expected = self.get_object()
        fields = s.write_fields(validated(s.ExpectedFileSerializer, request, partial=True))
        if fields.pop("partner", expected.partner) != expected.partner:
            raise InvalidInput("an expected file cannot move to another partner")
        expected = services.update_expected(expected, origin=origin_of(request), **fields)
        return Response(s.ExpectedFileSerializer(expected).data)

    @extend_schema(summary="Stop expecting a file",
                   responses={204: OpenApiResponse(description="deleted; no body")})
    def destroy(self, request: Request, pk: str) -> Response:
        services.delete_expected(self.get_object(), origin=origin_of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(summary="List an expected file's checked deadlines, newest first",
                   responses={200: s.DeadlineSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def deadlines(self, request: Request, pk: str) -> Response:
        rows = self.get_object().deadlines.order_by("-due_at")[:200]
        return Response(s.DeadlineSerializer(rows, many=True).data)
