"""REST views for retention policies: admins set them; readers (partner-limited callers:
their own partner's) see them and a dry-run report. Thin translation onto
retention.services."""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api_auth import origin_of
from accounts.permissions import limit_to_partner
from mft.errors import InvalidInput
from mft.viewsets import PortsideViewSet, validated
from retention import serializers as s
from retention import services
from retention.filters import RetentionPolicyFilter
from retention.models import RetentionPolicy


@extend_schema(tags=["retention"])
@extend_schema_view(list=extend_schema(summary="List retention policies"),
                    retrieve=extend_schema(summary="Show a retention policy"))
class RetentionPolicyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin,
                             PortsideViewSet):
    """How long each partner's files and delivery records are kept."""

    serializer_class = s.RetentionPolicySerializer
    filterset_class = RetentionPolicyFilter
    install_wide_actions = ("create", "partial_update", "destroy")
    action_scopes = {"preview": "read"}

    def get_queryset(self) -> QuerySet[RetentionPolicy]:
        rows = RetentionPolicy.objects.select_related("partner").order_by("partner__name")
        return limit_to_partner(rows, self.request)

    @extend_schema(summary="Set a partner's retention policy (replacing any it had)",
                   request=s.RetentionPolicySerializer,
                   responses={201: s.RetentionPolicySerializer})
    def create(self, request: Request) -> Response:
        fields = validated(s.RetentionPolicySerializer, request)
        policy = services.set_policy(fields.pop("partner"), origin=origin_of(request),
                                     files_after_days=fields.get("files_after_days"),
                                     files_action=fields.get("files_action", "delete"),
                                     deliveries_after_days=fields.get("deliveries_after_days"))
        return Response(s.RetentionPolicySerializer(policy).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Change a retention policy", request=s.RetentionPolicySerializer,
                   responses={200: s.RetentionPolicySerializer})
    def partial_update(self, request: Request, pk: str) -> Response:
        policy = self.get_object()
        fields = validated(s.RetentionPolicySerializer, request, partial=True)
        if fields.pop("partner", policy.partner) != policy.partner:
            raise InvalidInput("a policy cannot move to another partner")
        current = s.RetentionPolicySerializer(policy).data
        merged = {key: fields.get(key, current[key]) for key in
                  ("files_after_days", "files_action", "deliveries_after_days")}
        policy = services.set_policy(policy.partner, origin=origin_of(request), **merged)
        return Response(s.RetentionPolicySerializer(policy).data)

    @extend_schema(summary="Remove a policy (keep everything forever)",
                   responses={204: OpenApiResponse(description="deleted; no body")})
    def destroy(self, request: Request, pk: str) -> Response:
        services.remove_policy(self.get_object(), origin=origin_of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(summary="Report what the policy would retire now (changes nothing)",
                   responses={200: s.RetentionReportSerializer})
    @action(detail=True, methods=["get"])
    def preview(self, request: Request, pk: str) -> Response:
        report = services.apply_policy(self.get_object(), now=timezone.now(), dry_run=True)
        files = [{"id": f.pk, "owner": f.owner_username, "path": f.path, "state": f.state,
                  "size": f.size} for f in report.files]
        return Response(s.RetentionReportSerializer({**vars(report), "files": files}).data)
