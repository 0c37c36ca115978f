"""REST views for partner deliveries: endpoints, routes, pulls, and delivery receipts with
their attempts. Thin translation onto deliveries.services; configuration is install-wide
(admin scope), receipts are readable per partner."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api_auth import origin_of
from accounts.permissions import limit_to_partner
from deliveries import filters, receipts, services
from deliveries import serializers as s
from deliveries.models import Delivery, PartnerEndpoint, Pull, Route
from mft.errors import InvalidInput
from mft.viewsets import FirstRenderer, PortsideViewSet, validated

_NO_BODY = OpenApiResponse(description="deleted; no body")
_CONFIG_WRITES = ("create", "partial_update", "destroy")


def _removed(kept: Any, serializer: Any) -> Response:
    """Answer a removal: 204 when deleted, 200 with the row when it was only disabled."""
    if kept is None:
        return Response(status=status.HTTP_204_NO_CONTENT)
    return Response(serializer(kept).data)


@extend_schema(tags=["endpoints"])
@extend_schema_view(list=extend_schema(summary="List partner endpoints (never a secret)"),
                    retrieve=extend_schema(summary="Show a partner endpoint"))
class PartnerEndpointViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin,
                             PortsideViewSet):
    """Partners' FTPS servers; TLS is always verified (CA bundle and/or pinned SHA-256)."""

    serializer_class = s.PartnerEndpointSerializer
    filterset_class = filters.PartnerEndpointFilter
    install_wide_actions = _CONFIG_WRITES

    def get_queryset(self) -> QuerySet[PartnerEndpoint]:
        rows = PartnerEndpoint.objects.select_related("partner")
        return limit_to_partner(rows, self.request)

    @extend_schema(summary="Create a partner endpoint", request=s.PartnerEndpointWriteSerializer,
                   responses={201: s.PartnerEndpointSerializer})
    def create(self, request: Request) -> Response:
        fields = validated(s.PartnerEndpointWriteSerializer, request)
        endpoint = services.create_endpoint(origin=origin_of(request), **fields)
        return Response(s.PartnerEndpointSerializer(endpoint).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(summary="Change a partner endpoint (a password or key given replaces it)",
                   request=s.PartnerEndpointWriteSerializer,
                   responses={200: s.PartnerEndpointSerializer})
    def partial_update(self, request: Request, pk: str) -> Response:
        endpoint = self.get_object()
        fields = validated(s.PartnerEndpointWriteSerializer, request, partial=True)
        if fields.pop("partner", endpoint.partner) != endpoint.partner:
            raise InvalidInput("an endpoint cannot move to another partner")
        endpoint = services.update_endpoint(endpoint, origin=origin_of(request), **fields)
        return Response(s.PartnerEndpointSerializer(endpoint).data)

    @extend_schema(summary="Delete an endpoint, or disable it when routes or deliveries use it",
                   responses={200: s.PartnerEndpointSerializer, 204: _NO_BODY})
    def destroy(self, request: Request, pk: str) -> Response:
        kept = services.remove_endpoint(self.get_object(), origin=origin_of(request))
        return _removed(kept, s.PartnerEndpointSerializer)


@extend_schema(tags=["routes"])
@extend_schema_view(list=extend_schema(summary="List push routes"),
                    retrieve=extend_schema(summary="Show a push route"))
class RouteViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, PortsideViewSet):
    """Which ready files go to which endpoint, when, and whether PGP-encrypted."""

    serializer_class = s.RouteSerializer
    filterset_class = filters.RouteFilter
    install_wide_actions = _CONFIG_WRITES

    def get_queryset(self) -> QuerySet[Route]:
        return limit_to_partner(Route.objects.all(), self.request, "endpoint__partner_id")

    @extend_schema(summary="Create a push route", request=s.RouteSerializer,
                   responses={201: s.RouteSerializer})
    def create(self, request: Request) -> Response:
        fields = validated(s.RouteSerializer, request)
        route = services.create_route(name=fields.pop("name"), endpoint=fields.pop("endpoint"),
                                      origin=origin_of(request), **fields)
        return Response(s.RouteSerializer(route).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Change a push route", request=s.RouteSerializer,
                   responses={200: s.RouteSerializer})
    def partial_update(self, request: Request, pk: str) -> Response:
        route = self.get_object()
        fields = validated(s.RouteSerializer, request, partial=True)
        route = services.update_route(route, origin=origin_of(request), **fields)
        return Response(s.RouteSerializer(route).data)

    @extend_schema(summary="Delete a route, or disable it when it has deliveries",
                   responses={200: s.RouteSerializer, 204: _NO_BODY})
    def destroy(self, request: Request, pk: str) -> Response:
        return _removed(services.remove_route(self.get_object(), origin=origin_of(request)),
                        s.RouteSerializer)


@extend_schema(tags=["pulls"])
@extend_schema_view(list=extend_schema(summary="List scheduled pulls"),
                    retrieve=extend_schema(summary="Show a scheduled pull"))
class PullViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, PortsideViewSet):
    """Scheduled fetches from partners' endpoints into a local user's folder."""

    serializer_class = s.PullSerializer
    filterset_class = filters.PullFilter
    install_wide_actions = _CONFIG_WRITES

    def get_queryset(self) -> QuerySet[Pull]:
        return limit_to_partner(Pull.objects.all(), self.request, "endpoint__partner_id")

    @extend_schema(summary="Create a scheduled pull", request=s.PullSerializer,
                   responses={201: s.PullSerializer})
    def create(self, request: Request) -> Response:
        fields = validated(s.PullSerializer, request)
        pull = services.create_pull(name=fields.pop("name"), endpoint=fields.pop("endpoint"),
                                    local_user=fields.pop("local_user"),
                                    cron=fields.pop("cron"), origin=origin_of(request),
                                    **fields)
        return Response(s.PullSerializer(pull).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Change a scheduled pull", request=s.PullSerializer,
                   responses={200: s.PullSerializer})
    def partial_update(self, request: Request, pk: str) -> Response:
        pull = self.get_object()
        fields = validated(s.PullSerializer, request, partial=True)
        pull = services.update_pull(pull, origin=origin_of(request), **fields)
        return Response(s.PullSerializer(pull).data)

    @extend_schema(summary="Delete a pull, or disable it when it has deliveries",
                   responses={200: s.PullSerializer, 204: _NO_BODY})
    def destroy(self, request: Request, pk: str) -> Response:
        return _removed(services.remove_pull(self.get_object(), origin=origin_of(request)),
                        s.PullSerializer)


def _export_schema(media_type: str) -> Any:
    """Return the schema decorator of a receipts export in a media type."""
    return extend_schema(summary=f"Export the matching receipts as {media_type}, streamed",
                         filters=True, responses={(200, media_type): OpenApiTypes.STR})


@extend_schema(tags=["deliveries"])
@extend_schema_view(list=extend_schema(summary="List delivery receipts"),
                    retrieve=extend_schema(summary="Show a delivery receipt"))
class DeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, PortsideViewSet):
    """Deliveries (receipts) and their attempts; re-send, cancel or retry them (admin)."""

    serializer_class = s.DeliveryReceiptSerializer
    filterset_class = filters.DeliveryFilter
    install_wide_actions = ("resend", "cancel", "retry")

    def get_queryset(self) -> QuerySet[Delivery]:
        rows = Delivery.objects.select_related("endpoint__partner", "route", "pull")
        rows = rows.order_by("-created_at", "-id")
        return limit_to_partner(rows, self.request, "endpoint__partner_id")

    @extend_schema(summary="List a delivery's attempts", responses=s.DeliveryAttemptSerializer(
        many=True), filters=False)
    @action(detail=True, methods=["get"], pagination_class=None, filterset_class=None)
    def attempts(self, request: Request, pk: str) -> Response:
        return Response(receipts.attempts(self.get_object()))

    @extend_schema(summary="Send a finished push again, as a new delivery", request=None,
                   responses={201: s.DeliveryReceiptSerializer})
    @action(detail=True, methods=["post"])
    def resend(self, request: Request, pk: str) -> Response:
        again = services.resend(self.get_object(), origin=origin_of(request))
        return Response(s.DeliveryReceiptSerializer(again).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(summary="Cancel a pending or waiting delivery", request=None,
                   responses={200: s.DeliveryReceiptSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        stopped = services.cancel(self.get_object(), origin=origin_of(request))
        return Response(s.DeliveryReceiptSerializer(stopped).data)

    @extend_schema(summary="Try a waiting delivery now", request=None,
                   responses={200: s.DeliveryReceiptSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str) -> Response:
        moved = services.retry_now(self.get_object(), origin=origin_of(request))
        return Response(s.DeliveryReceiptSerializer(moved).data)

    def _export(self, file_format: str) -> StreamingHttpResponse:
        """Stream the receipts matching the query's filters."""
        rows = self.filter_queryset(self.get_queryset()).iterator(chunk_size=500)
        chunks = (chunk.encode() for chunk in receipts.export(rows, fmt=file_format))
        media = "text/csv; charset=utf-8" if file_format == "csv" else "application/jsonl"
        response = StreamingHttpResponse(chunks, content_type=media)
        response["Content-Disposition"] = f'attachment; filename="deliveries.{file_format}"'
        return response

    @_export_schema("text/csv")
    @action(detail=False, methods=["get"], url_path="export/csv",
            content_negotiation_class=FirstRenderer)
    def export_csv(self, request: Request) -> StreamingHttpResponse:
        return self._export("csv")

    @_export_schema("application/jsonl")
    @action(detail=False, methods=["get"], url_path="export/jsonl",
            content_negotiation_class=FirstRenderer)
    def export_jsonl(self, request: Request) -> StreamingHttpResponse:
        return self._export("jsonl")
