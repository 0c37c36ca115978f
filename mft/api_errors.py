"""Map service errors to HTTP problem replies, once for the whole API."""

from __future__ import annotations

from typing import Any

from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from mft import errors

_STATUS = {
    errors.NotFound: status.HTTP_404_NOT_FOUND,
    errors.PermissionDenied: status.HTTP_403_FORBIDDEN,
    errors.InvalidInput: status.HTTP_400_BAD_REQUEST,
    errors.Conflict: status.HTTP_409_CONFLICT,
    errors.LoginRefused: status.HTTP_401_UNAUTHORIZED,
    errors.QuotaExceeded: status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    errors.TransferRejected: status.HTTP_422_UNPROCESSABLE_ENTITY,
    errors.FileNotReady: status.HTTP_409_CONFLICT,
    errors.TemporarilyUnavailable: status.HTTP_503_SERVICE_UNAVAILABLE,
}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Return a problem reply for service errors; defer everything else to DRF."""
    if isinstance(exc, errors.PortsideError):
        code = next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), 400)
        message = "Login incorrect." if isinstance(exc, errors.LoginRefused) else str(exc)
        return Response({"error": exc.code, "detail": message}, status=code)
    return drf_exception_handler(exc, context)
