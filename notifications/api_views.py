"""REST feed of outbound events (file.ready, delivery.failed…) read with a cursor, so internal
systems catch up on what they missed instead of polling the files. Thin translation onto
notifications.services.events_after."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import ActionScope, is_partner_limited
from mft.errors import InvalidInput
from notifications import serializers as s
from notifications import services

DEFAULT_PAGE = 100


def _limit(raw: str | None) -> int:
    """Return the page size asked for (the service caps it)."""
    if raw is None:
        return DEFAULT_PAGE
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput("limit must be a number") from None


@extend_schema(tags=["events"])
class EventFeedView(APIView):
    """The event feed; partner-limited callers read only their own partner's events.

    A plain view, not a list viewset: a page is one object (events, next_cursor, has_more)
    that the cursor service builds, never the paginated list of a queryset.
    """

    permission_classes = [ActionScope]  # GET: the `read` scope

    @extend_schema(
        summary="List events after a cursor, oldest first",
        parameters=[
            OpenApiParameter("cursor", OpenApiTypes.STR, description="the last event id read "
                             "(`next_cursor` of the previous page); omit to start at the oldest"),
            OpenApiParameter("limit", OpenApiTypes.INT, description="events per page (1 to 1000)")],
        responses={200: s.EventPageSerializer})
    def get(self, request: Request) -> Response:
        partner_id = None
        if is_partner_limited(request):
            # A partner-limited caller without a partner has no events to read.
            partner_id = getattr(request.user, "partner_id", None) or -1
        page = services.events_after(request.query_params.get("cursor"),
                                     _limit(request.query_params.get("limit")),
                                     partner_id=partner_id)
        return Response({"events": [services.payload(e) for e in page.events],
                         "next_cursor": str(page.next_cursor), "has_more": page.has_more})
