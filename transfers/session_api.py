"""REST views for live gateway sessions: list them, ask for one to be disconnected."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api_auth import origin_of
from accounts.permissions import limit_to_partner
from mft.viewsets import PortsideViewSet, validated
from transfers import sessions
from transfers.models import GatewaySession
from transfers.session_filters import GatewaySessionFilter
from transfers.session_serializers import DisconnectSerializer, GatewaySessionSerializer


@extend_schema_view(list=extend_schema(summary="List live FTPS sessions and their transfers"),
                    retrieve=extend_schema(summary="Show a live FTPS session"))
@extend_schema(tags=["sessions"])
class GatewaySessionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin,
                            PortsideViewSet):
    """Sessions on live gateway processes. A partner-scoped token sees its partner's only;
    disconnecting needs the transfer scope (admins, operators) and is install-wide."""

    serializer_class = GatewaySessionSerializer
    filterset_class = GatewaySessionFilter
    lookup_field = "session_id"
    lookup_url_kwarg = "pk"
    lookup_value_regex = "[0-9a-f]{1,32}"
    action_scopes = {"disconnect": "transfer"}
    install_wide_actions = ("disconnect",)

    def get_queryset(self) -> QuerySet[GatewaySession]:
        return limit_to_partner(sessions.live_sessions(), self.request)

    @extend_schema(summary="Disconnect a session: its gateway ends it with 421 within seconds",
                   request=DisconnectSerializer, responses={202: GatewaySessionSerializer})
    @action(detail=True, methods=["post"])
    def disconnect(self, request: Request, pk: str) -> Response:
        reason = validated(DisconnectSerializer, request)["reason"]
        session = sessions.request_disconnect(self.get_object(), reason=reason,
                                              origin=origin_of(request))
        return Response(GatewaySessionSerializer(session).data,
                        status=status.HTTP_202_ACCEPTED)
