"""REST views for stored files: thin translation onto transfers services."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api_auth import client_ip
from accounts.models import User
from accounts.permissions import scope_required, scopes_of
from audit.events import Origin
from mft.errors import NotFound, PermissionDenied
from transfers import uploads
from transfers.models import FileState, StoredFile

_UPLOAD_READ = 256 * 1024


class StoredFileSerializer(serializers.ModelSerializer[StoredFile]):
    class Meta:
        model = StoredFile
        fields = ["id", "owner_username", "partner", "path", "size", "sha256", "state",
                  "state_reason", "scan_signature", "scan_engine", "protocol", "created_at",
                  "received_at", "ready_at"]
        read_only_fields = fields


def visible_files(request: Request) -> QuerySet[StoredFile]:
    """Return the files the caller may see: all for staff roles, own or partner's otherwise."""
    user = request.user
    files = StoredFile.objects.exclude(state=FileState.DELETED)
    if getattr(user, "is_dashboard_role", False) or "admin" in scopes_of(request):
        return files
    if getattr(user, "partner_id", None):
        own = files.filter(owner=user)
        return own | files.filter(partner_id=user.partner_id, state=FileState.READY)
    return files.filter(owner=user)


def _upload_owner(request: Request) -> User:
    """Return whose home an upload goes to: the caller's, or a named user's for admins."""
    username = request.query_params.get("user")
    if not username or username == request.user.get_username():
        return request.user  # type: ignore[return-value]
    if "admin" not in scopes_of(request):
        raise PermissionDenied("only the admin scope may upload into another user's folder")
    owner = User.objects.filter(username=username).first()
    if owner is None:
        raise NotFound(f"no user {username!r}")
    return owner


class FileListCreate(generics.ListAPIView[StoredFile]):
    """List visible files; POST a raw body to upload into a folder (the FTPS pipeline)."""

    serializer_class = StoredFileSerializer

    def get_permissions(self) -> list[Any]:
        scope = "transfer" if self.request.method == "POST" else "read"
        return [scope_required(scope)()]

    def get_queryset(self) -> QuerySet[StoredFile]:
        files = visible_files(self.request)
        state = self.request.query_params.get("state")
        return files.filter(state=state) if state else files

    @extend_schema(
        request={"application/octet-stream": {"type": "string", "format": "binary"}},
        parameters=[OpenApiParameter("path", str, required=True),
                    OpenApiParameter("user", str, required=False)],
        responses={201: StoredFileSerializer},
    )
    def post(self, request: Request) -> Response:
        """Stream the request body into a new stored file."""
        path = request.query_params.get("path", "")
        owner = _upload_owner(request)
        origin = Origin(source_ip=client_ip(request), protocol="https").as_user(request.user)
        upload = uploads.begin_upload(owner, path, origin=origin, make_parents=True)
        stream = request.stream
        try:
            while stream is not None and (block := stream.read(_UPLOAD_READ)):
                upload.write(block)
        except BaseException as exc:
            upload.abort(f"{type(exc).__name__}: {exc}"[:200])
            raise
        stored = upload.finish()
        return Response(StoredFileSerializer(stored).data, status=201)


class FileDetail(generics.RetrieveAPIView[StoredFile]):
    """Show one file's metadata, SHA-256 and scan result."""

    serializer_class = StoredFileSerializer
    permission_classes = [scope_required("read")]

    def get_queryset(self) -> QuerySet[StoredFile]:
        return visible_files(self.request)
