"""Map errors to HTTP problem documents (RFC 9457 style), once for the whole API.

Every 4xx the API sends has the same shape: `type`, `title`, `status`, `detail`, a stable
`code`, and for invalid input `errors` (field name → messages).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from mft import errors

PROBLEM_CONTENT_TYPE = "application/problem+json"

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


def problem(code_status: int, *, code: str, detail: str,
            field_errors: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None) -> Response:
    """Return a problem-document response."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(code_status).phrase,
        "status": code_status,
        "detail": detail,
        "code": code,
    }
    if field_errors is not None:
        body["errors"] = field_errors
    return Response(body, status=code_status, headers=headers,
                    content_type=PROBLEM_CONTENT_TYPE)


def _service_problem(exc: errors.PortsideError) -> Response:
    """Return the problem for an error a service raised on purpose."""
    code = next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), 400)
    message = "Login incorrect." if isinstance(exc, errors.LoginRefused) else str(exc)
    message = _printable(message)
    return problem(code, code=exc.code, detail=message)


def _printable(value: Any) -> Any:
    """Return messages with lone surrogates replaced: DRF echoes some input (an invalid
    choice), and a surrogate cannot be encoded as UTF-8 in the reply."""
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable(item) for item in value]
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


def _field_errors(detail: Any) -> dict[str, Any]:
    """Return validation messages keyed by field; errors not tied to a field go under
    `non_field_errors`, as DRF names them."""
    if isinstance(detail, dict):
        return _printable(detail)
    return {"non_field_errors": _printable(detail if isinstance(detail, list) else [detail])}


def _drf_problem(exc: APIException, response: Response) -> Response:
    """Return DRF's own error reply reshaped as a problem document, its headers kept."""
    headers = {k: v for k, v in response.items() if k in ("WWW-Authenticate", "Retry-After")}
    if isinstance(exc, ValidationError):
        return problem(response.status_code, code="invalid", detail="Invalid input.",
                       field_errors=_field_errors(response.data), headers=headers)
    codes = exc.get_codes()
    return problem(response.status_code, code=codes if isinstance(codes, str) else "error",
                   detail=_printable(str(exc.detail)), headers=headers)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Return a problem reply for service and DRF errors; anything else stays a 500."""
    if isinstance(exc, errors.PortsideError):
        return _service_problem(exc)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, APIException):
        return response
    return _drf_problem(exc, response)
