"""REST views for the compliance posture: list the findings, accept one with a reason."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api_auth import origin_of
from accounts.permissions import ALL_ACTIONS
from mft import posture
from mft.viewsets import PortsideViewSet, validated


class FindingSerializer(serializers.Serializer[Any]):
    id = serializers.CharField()
    severity = serializers.ChoiceField(choices=posture.SEVERITIES)
    title = serializers.CharField()
    detail = serializers.CharField()
    controls = serializers.ListField(child=serializers.CharField(),
                                     help_text="PCI DSS requirements, HIPAA safeguards")
    accepted = serializers.DictField(child=serializers.CharField(), allow_null=True,
                                     help_text="by, justification, at; null when open")


class AcceptanceSerializer(serializers.Serializer[Any]):
    justification = serializers.CharField(min_length=10, max_length=2000)


@extend_schema(tags=["posture"])
class PostureViewSet(PortsideViewSet):
    """The running configuration's compliance findings (install-wide)."""

    install_wide_actions = (ALL_ACTIONS,)
    # Not a model's rows: no paging or filtering (nor a queryset for the schema to inspect).
    pagination_class = None
    filter_backends: list[type] = []
    action_scopes = {"list": "read", "accept": "admin"}
    lookup_value_regex = r"[a-z0-9][a-z0-9.\-]*"
    serializer_class = FindingSerializer

    @extend_schema(summary="List current findings, most severe first",
                   responses={200: FindingSerializer(many=True)})
    def list(self, request: Request) -> Response:
        return Response([asdict(f) for f in posture.findings()])

    @extend_schema(summary="Accept a finding with a written justification (audited)",
                   request=AcceptanceSerializer, responses={200: FindingSerializer})
    @action(detail=True, methods=["post"])
    def accept(self, request: Request, pk: str) -> Response:
        body = validated(AcceptanceSerializer, request)
        posture.accept(pk, justification=body["justification"], origin=origin_of(request))
        found = {f.id: f for f in posture.findings(verify_audit=pk == "audit.chain-broken")}
        return Response(asdict(found[pk]))
