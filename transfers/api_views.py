"""REST views for stored files: thin translation onto transfers services."""

from __future__ import annotations

from urllib.parse import quote

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api_auth import origin_of
from accounts.models import User
from accounts.permissions import holds, is_partner_limited, limit_to_partner
from mft.errors import NotFound, PermissionDenied
from mft.viewsets import FirstRenderer, PortsideViewSet, validated
from transfers import downloads, review, uploads
from transfers.filters import StoredFileFilter
from transfers.models import FileState, StoredFile
from transfers.serializers import ReviewDecisionSerializer, StoredFileSerializer

_UPLOAD_READ = 256 * 1024


def visible_files(request: Request) -> QuerySet[StoredFile]:
    """Return the files the caller may see: all, unless it is partner-limited; then its own
    and, once ready, its partner's."""
    files = StoredFile.objects.exclude(state=FileState.DELETED)
    if not is_partner_limited(request):
        return files
    own = files.filter(owner=request.user.pk)
    partner_id = getattr(request.user, "partner_id", None)
    if partner_id is None:
        return own
    return own | files.filter(partner_id=partner_id, state=FileState.READY)


def _upload_owner(request: Request) -> User:
    """Return whose home an upload goes to: the caller's, or a named user's for admins."""
    username = request.query_params.get("user")
    if not username or username == request.user.get_username():
        return request.user  # type: ignore[return-value]
    if not holds(request, "admin"):
        raise PermissionDenied("only the admin scope may upload into another user's folder")
    if "\x00" in username or len(username) > 150:
        raise NotFound("no such user")
    owner = limit_to_partner(User.objects.filter(username=username), request).first()
    if owner is None:
        raise NotFound(f"no user {username[:150]!r}")
    return owner


_RAW_BODY = {"application/octet-stream": {"type": "string", "format": "binary"}}


@extend_schema(tags=["files"])
class StoredFileViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, PortsideViewSet):
    """Stored files: list and filter, metadata, download, upload, admin review."""

    serializer_class = StoredFileSerializer
    filterset_class = StoredFileFilter
    action_scopes = {"create": "transfer"}
    install_wide_actions = ("release", "discard", "retry")

    def get_queryset(self) -> QuerySet[StoredFile]:
        return visible_files(self.request).select_related("partner")

    @extend_schema(
        summary="Upload a file (the raw body) into a folder; it enters the pipeline",
        request=_RAW_BODY,
        parameters=[OpenApiParameter("path", str, required=True,
                                     description="where in the home, e.g. /in/orders.csv"),
                    OpenApiParameter("user", str, required=False,
                                     description="whose home (admin scope); the caller's "
                                                 "by default")],
        responses={201: StoredFileSerializer},
    )
    def create(self, request: Request) -> Response:
        """Stream the request body into a new stored file."""
        path = request.query_params.get("path", "")
        owner = _upload_owner(request)
        upload = uploads.begin_upload(owner, path, origin=origin_of(request),
                                      make_parents=True)
        stream = request.stream
        try:
            while stream is not None and (block := stream.read(_UPLOAD_READ)):
                upload.write(block)
        except BaseException as exc:
            upload.abort(f"{type(exc).__name__}: {exc}"[:200])
            raise
        stored = upload.finish()
        return Response(StoredFileSerializer(stored).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Download the file's plaintext (ready files; the owner's once clean)",
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY,
                   409: OpenApiResponse(description="the file may not be read yet")},
    )
    @action(detail=True, methods=["get"], content_negotiation_class=FirstRenderer)
    def content(self, request: Request, pk: str) -> StreamingHttpResponse:
        origin = origin_of(request)
        download = downloads.open_stored(request.user,  # type: ignore[arg-type]
                                         self.get_object(), origin=origin)
        response = StreamingHttpResponse(downloads.stream(download, origin=origin),
                                         content_type="application/octet-stream")
        name = download.stored.path.rsplit("/", 1)[-1]
        response["Content-Length"] = str(download.size)
        response["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(name)}"
        response["X-Content-SHA256"] = download.stored.sha256
        return response

    @extend_schema(summary="Release a quarantined (false positive) or held file",
                   request=ReviewDecisionSerializer, responses={200: StoredFileSerializer})
    @action(detail=True, methods=["post"])
    def release(self, request: Request, pk: str) -> Response:
        reason = validated(ReviewDecisionSerializer, request)["reason"]
        stored = self.get_object()
        if stored.state == FileState.HELD:
            review.release_held(stored, reason=reason, origin=origin_of(request))
        else:
            review.release_quarantined(stored, reason=reason, origin=origin_of(request))
        stored.refresh_from_db()
        return Response(StoredFileSerializer(stored).data)

    @extend_schema(summary="Delete a quarantined, held or rejected file and its bytes",
                   request=ReviewDecisionSerializer, responses={200: StoredFileSerializer})
    @action(detail=True, methods=["post"])
    def discard(self, request: Request, pk: str) -> Response:
        reason = validated(ReviewDecisionSerializer, request)["reason"]
        stored = self.get_object()
        review.delete_stopped(stored, reason=reason, origin=origin_of(request))
        stored.refresh_from_db()
        return Response(StoredFileSerializer(stored).data)

    @extend_schema(summary="Retry a held file's waiting pipeline step now", request=None,
                   responses={200: StoredFileSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str) -> Response:
        stored = self.get_object()
        review.retry_now(stored, origin=origin_of(request))
        return Response(StoredFileSerializer(stored).data)
